"""The targets of a compute job (``compute.clients``): what each entry says, and whether
one agent matches them.

Entries, each ``KIND:VALUE``, any of them negated with a leading ``!``:

=================  ==========================================================================
``client:ID``      that agent (a bare id means the same)
``site:NAME``      agents at that site (name or id)
``code:GLOB``      agents whose code matches the glob (case-sensitive, as stored)
``tag:NAME``       agents that carry the tag
``ram:>60GB``      physical memory (``mpt``) compared: ``>``, ``>=``, ``<``, ``<=``, ``=``,
                   ``!=``; units ``B``, ``KB``/``MB``/``GB``/``TB`` (decimal: 1 GB = 10⁹ B)
                   and ``KiB``/``MiB``/``GiB``/``TiB`` (binary: 1 GiB = 2³⁰ B), any case
``cores:>=12``     logical cores (``c``) compared; no operator means ``=``
``gpus:>=1``       GPUs the agent found (``len(gpus)``) compared
``os:linux``       operating system family: ``linux``, ``macos`` or ``windows``; several
                   with ``|`` (``os:linux|macos``)
``hostname:GLOB``  the host name the agent reports, case-insensitive
=================  ==========================================================================

How they combine: alternatives of one kind are OR-ed (``os:linux``, ``os:macos``: either),
kinds are AND-ed (``os:linux``, ``gpus:>=1``: both), and each negated entry excludes the
agents it matches (``!tag:slow``, ``!tag:old``: neither). The figures are the agent's
latest check-in; an agent that has not reported one (it never checked in) matches no
filter on it, negated or not.

Jobs stored before these filters hold ``{scope: value}`` entries that any one of matched
(OR); they keep that meaning (``_legacy_match``). Whatever the targets say, they only ever
narrow the agents the job's organization may use (``targets.usable_by``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hub.errors import Invalid

PLACES = ("client", "site", "code", "tag")  # resolved against agents when a job is made
FIGURES = ("ram", "cores", "gpus")  # compared with the agent's latest metrics
KINDS = (*PLACES, *FIGURES, "os", "hostname")
OPERATORS = (">=", "<=", "!=", ">", "<", "=")
UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
# the OS family a filter names, and what agents report for it (agent/identity.os_name)
OS_FAMILIES = {"linux": {"linux", "raspbian"}, "macos": {"mac", "macos", "darwin"},
               "windows": {"windows"}}

_COMPARISON = re.compile(r"^(>=|<=|!=|>|<|=)?\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)$")


@dataclass(frozen=True)
class Target:
    """One parsed entry. ``value``: a name or glob; ``[operator, number]`` for a figure;
    the list of OS families for ``os``."""

    kind: str
    value: Any
    negated: bool
    text: str  # as the user wrote it (said back in ``status_reason``)

    def stored(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "not": self.negated, "text": self.text}


def parse_target(text: str, index: int) -> Target:
    """One entry of ``compute.clients``; ``Invalid`` naming ``compute.clients[index]``."""
    negated = text.startswith("!")
    body = text[1:] if negated else text
    kind, sep, value = body.partition(":")
    if not sep:
        kind, value = "client", body
    if kind not in KINDS:
        raise bad_target(index, f"'{text}': unknown kind '{kind}' (known: "
                         f"{', '.join(KINDS)}; a bare id is a client)")
    if not value:
        raise bad_target(index, f"'{text}': {kind}: needs a value")
    if kind in FIGURES:
        return Target(kind, _comparison(kind, value, text, index), negated, text)
    if kind == "os":
        families = value.lower().split("|")
        unknown = [f for f in families if f not in OS_FAMILIES]
        if unknown:
            raise bad_target(index, f"'{text}': os is one of {', '.join(OS_FAMILIES)} "
                             f"(several with |), not '{unknown[0]}'")
        return Target(kind, sorted(set(families)), negated, text)
    return Target(kind, value, negated, text)


def _comparison(kind: str, value: str, text: str, index: int) -> list[Any]:
    match = _COMPARISON.match(value.strip())
    example = "ram:>60GB or ram:<=512MiB" if kind == "ram" else f"{kind}:>=4"
    if match is None:
        raise bad_target(index, f"'{text}': not a comparison like {example}")
    operator, number, unit = match.group(1) or "=", match.group(2), match.group(3).lower()
    if kind != "ram":
        if unit or "." in number:
            raise bad_target(index, f"'{text}': {kind} is a whole number, like {example}")
        return [operator, int(number)]
    if unit not in UNITS:
        raise bad_target(index, f"'{text}': give a unit ({', '.join(_unit_names())}), like "
                         f"{example}")
    return [operator, int(float(number) * UNITS[unit])]


def _unit_names() -> Iterable[str]:
    return ("B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB")


def bad_target(index: int, why: str) -> Invalid:
    field = f"compute.clients[{index}]"
    return Invalid("invalid_spec", f"{field}: {why}", field=field)


def figure(kind: str, agent: Any) -> Any:
    """What an agent (a row with site_id, code, tags, os, metrics) shows a filter of
    ``kind``; None when it has not said."""
    metrics = agent.metrics
    if kind == "ram":
        return metrics.get("mpt") if metrics else None
    if kind == "cores":
        return metrics.get("c") if metrics else None
    if kind == "gpus":  # an agent reports ``gpus`` only when it has some
        return len(metrics.get("gpus") or []) if metrics else None
    if kind == "os":
        reported = (agent.os or "").lower()
        return next((f for f, names in OS_FAMILIES.items() if reported in names), None)
    return None


def hit(target: dict[str, Any], agent: Any) -> bool | None:
    """Does one stored entry (negation aside) name this agent? None: it cannot say."""
    kind, value = target["kind"], target["value"]
    if kind == "client":
        return bool(agent.id == value)
    if kind == "site":
        return bool(agent.site_id == value)
    if kind == "code":
        return fnmatch.fnmatchcase(agent.code, value)
    if kind == "hostname":
        return fnmatch.fnmatchcase(agent.code.lower(), value.lower())
    if kind == "tag":
        return value in (agent.tags or [])
    shown = figure(kind, agent)
    if shown is None:
        return None
    if kind == "os":
        return bool(shown in value)
    operator, number = value
    return bool(_COMPARE[operator](shown, number))


_COMPARE = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, "=": lambda a, b: a == b, "!=": lambda a, b: a != b}


def targets_match(targets: list[dict[str, Any]], agent: Any) -> bool:
    """May this agent run a job with these stored targets? (Its organization's right to
    use the agent is checked apart, in SQL.) Evaluated per claim on the one claiming
    agent's row: a few comparisons per queued job."""
    if not targets:
        return True
    if "kind" not in targets[0]:
        return _legacy_match(targets, agent)
    kinds: dict[str, bool] = {}
    for target in targets:
        found = hit(target, agent)
        if target["not"]:
            if found is not False:
                return False
        else:
            kinds[target["kind"]] = kinds.get(target["kind"], False) or found is True
    return all(kinds.values())


def _legacy_match(targets: list[dict[str, str]], agent: Any) -> bool:
    for target in targets:
        (scope, value), = target.items()
        if hit({"kind": scope, "value": value}, agent):
            return True
    return False
