"""The compute job spec: what a user submits, checked before anything is stored.

::

    {"code": "shot010 lighting",            # optional; default from the command
     "priority": 500,                        # 1-1000, higher first
     "status": "waiting",                    # or "paused" to hold it at first
     "metadata": {...},
     "compute": {
         "command": ["render", "-f", "{item}", "-o", "/out/{item}.exr"],
         "items": "1-200",                   # "1-200x5" (step), "1,5,9", or a list
         "bucket_size": 1,                   # tasks a lane takes at once, run in turn
         "env": {"OCIO": "/studio/ocio.config"},
         "cwd": "/studio/shots/010",
         "timeout": 3600,                    # seconds per task
         "retries": 2,                       # more attempts after a failure or a lost lease
         "grace": 10,                        # seconds between SIGTERM and SIGKILL
         "clients": ["site:stockholm", "tag:gpu", "code:render*", "<client id>"]}}

``{item}``, ``{task}`` and ``{job}`` in the command are replaced per task.
An empty ``clients`` means any agent the job's organization may use
(``hub/jobs/targets.py``); targets only narrow that.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, Literal

import msgspec

from hub.errors import Invalid

MAX_ITEMS = 100_000

Text = Annotated[str, msgspec.Meta(max_length=4096)]


class ComputeSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    command: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=1024)]
    items: str | list[str | int]
    bucket_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    env: dict[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Text] = {}
    cwd: Text | None = None
    timeout: Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)] | None = None
    retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 2
    grace: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    clients: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=255)]],
                       msgspec.Meta(max_length=256)] = []


class JobCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    compute: ComputeSpec
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    priority: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    status: Literal["waiting", "paused"] = "waiting"
    queue: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "default"
    metadata: dict[str, Any] = {}
    # a collaboration (id or name) the caller's organization is in: the job is shown to
    # its members
    collaboration: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None


_RANGE = re.compile(r"^(-?\d+)(?:-(-?\d+)(?:[x:](\d+))?)?$")


def expand_items(items: str | list[str | int]) -> list[str]:
    """``"1-100"``, ``"1-100x5"`` (or ``:5``), ``"1,5,9-12"``, or a list, as item strings."""
    if isinstance(items, list):
        out = [str(i) for i in items]
        for value in out:
            if not value or len(value) > 1024:
                raise _bad("items", "every item must be 1 to 1024 characters")
            if "\0" in value:
                raise _bad("items", "an item cannot hold a NUL character (it goes into the "
                           "command line)")
    else:
        out = []
        for raw in items.split(","):
            part = raw.strip()
            match = _RANGE.match(part)
            if match is None:
                raise _bad("items", f"'{part}' is not a frame, a range like 1-100 or a stepped "
                           "range like 1-100x5")
            first, last, step = match.groups()
            if last is None:
                out.append(first)
                continue
            start, end, stride = int(first), int(last), int(step or 1)
            if end < start:
                raise _bad("items", f"range '{part}' runs backwards")
            if stride < 1:
                raise _bad("items", f"range '{part}' needs a step of at least 1")
            if (end - start) // stride + 1 + len(out) > MAX_ITEMS:
                raise _bad("items", f"more than {MAX_ITEMS} items")
            out.extend(str(n) for n in range(start, end + 1, stride))
    if not out:
        raise _bad("items", "items is empty: give a range like 1-100 or a list")
    seen: set[str] = set()
    for item in out:
        if item in seen:
            raise _bad("items", f"item '{item}' is listed twice")
        seen.add(item)
    if len(out) > MAX_ITEMS:
        raise _bad("items", f"more than {MAX_ITEMS} items")
    return out


def _bad(field: str, message: str) -> Invalid:
    return Invalid("invalid_spec", f"compute.{field}: {message}", field=f"compute.{field}")


def check_command(spec: ComputeSpec) -> None:
    """What the spec's types cannot say: a program, and no NUL where the OS reads C strings."""
    if not spec.command[0].strip():
        raise _bad("command", "the program (first element) is empty")
    for n, arg in enumerate(spec.command):
        if "\0" in arg:
            raise _bad(f"command[{n}]", "a NUL character cannot be passed to a program")
    for name, value in spec.env.items():
        if "\0" in value:
            raise _bad(f"env.{name}", "a NUL character cannot be put in the environment")
    if spec.cwd is not None and "\0" in spec.cwd:
        raise _bad("cwd", "a NUL character cannot be in a folder name")


def render_argv(command: list[str], *, item: str, task: str, job: str) -> list[str]:
    """The command of one task: placeholders replaced wherever they stand in an argument."""
    return [arg.replace("{item}", item).replace("{task}", task).replace("{job}", job)
            for arg in command]


Target = dict[str, str]  # {"site": id} | {"client": id} | {"code": glob} | {"tag": name}


def parse_target(text: str) -> tuple[str, str]:
    scope, sep, value = text.partition(":")
    if not sep:
        return "client", text
    if scope not in ("site", "client", "code", "tag") or not value:
        raise _bad("clients", f"'{text}' is not site:NAME, client:ID, code:GLOB, tag:NAME or an id")
    return scope, value


def targets_match(targets: list[dict[str, str]], client: Any) -> bool:
    """May this agent (a row with id, site_id, code, tags) run a job with these targets?"""
    if not targets:
        return True
    for target in targets:
        (scope, value), = target.items()
        if scope == "site" and client.site_id == value:
            return True
        if scope == "client" and client.id == value:
            return True
        if scope == "code" and fnmatch.fnmatchcase(client.code, value):
            return True
        if scope == "tag" and value in (client.tags or []):
            return True
    return False
