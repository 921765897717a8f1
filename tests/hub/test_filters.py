"""Compute targets as parsed and matched (hub/jobs/filters.py) and the reasons a job gives
when nothing matches (hub/jobs/reasons.py), on agent rows made here: no hub needed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hub.errors import Invalid
from hub.jobs.filters import parse_target, targets_match
from hub.jobs.reasons import reason

GiB = 2**30


def agent(code: str = "render01", *, os: str = "linux", cores: int | None = 8,
          ram: int = 16 * GiB, gpus: int = 0, tags: tuple[str, ...] = (),
          site: str | None = None) -> Any:
    metrics = None if cores is None else {
        "c": cores, "mpt": ram, **({"gpus": [{"index": n} for n in range(gpus)]} if gpus
                                    else {})}
    return SimpleNamespace(id=code + "-id", code=code, os=os, metrics=metrics,
                           tags=list(tags), site_id=site)


def stored(*entries: str) -> list[dict[str, Any]]:
    return [parse_target(e, n).stored() for n, e in enumerate(entries)]


@pytest.mark.parametrize(("entry", "kind", "value", "negated"), [
    ("ram:>60GB", "ram", [">", 60 * 10**9], False),
    ("ram:>=1.5gib", "ram", [">=", int(1.5 * GiB)], False),
    ("ram:<=512MiB", "ram", ["<=", 512 * 2**20], False),
    ("ram:64GB", "ram", ["=", 64 * 10**9], False),
    ("ram:!=2TB", "ram", ["!=", 2 * 10**12], False),
    ("cores:>=12", "cores", [">=", 12], False),
    ("gpus:>=1", "gpus", [">=", 1], False),
    ("!gpus:0", "gpus", ["=", 0], True),
    ("os:linux", "os", ["linux"], False),
    ("os:Windows|macos", "os", ["macos", "windows"], False),
    ("hostname:render*", "hostname", "render*", False),
    ("!tag:slow", "tag", "slow", True),
    ("abc123", "client", "abc123", False),
    ("!client:abc123", "client", "abc123", True),
])
def test_entries_parse(entry: str, kind: str, value: Any, negated: bool) -> None:
    target = parse_target(entry, 0)
    assert (target.kind, target.value, target.negated, target.text) == (kind, value, negated,
                                                                         entry)


@pytest.mark.parametrize(("entry", "needle"), [
    ("planet:mars", "unknown kind 'planet'"),
    ("!planet:mars", "unknown kind 'planet'"),
    ("ram:>lots", "not a comparison"),
    ("ram:>60", "give a unit"),
    ("ram:>60XB", "give a unit"),
    ("ram:=>60GB", "not a comparison"),
    ("cores:>=1.5", "whole number"),
    ("cores:>=4GB", "whole number"),
    ("gpus:many", "not a comparison"),
    ("os:beos", "os is one of linux, macos, windows"),
    ("os:linux|", "not ''"),
    ("ram:", "needs a value"),
    ("!", "needs a value"),
])
def test_bad_entries_name_their_field(entry: str, needle: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_target(entry, 3)
    assert info.value.field == "compute.clients[3]"
    assert needle in info.value.message and entry in info.value.message


def test_kinds_and_alternatives_combine() -> None:
    big = agent("render-big", cores=32, ram=128 * GiB, gpus=2)
    small = agent("render-small", cores=4, ram=8 * 10**9, tags=("slow",))
    mac = agent("MacStudio", os="mac", cores=10, ram=32 * GiB)
    win = agent("ws-win", os="windows", cores=16, ram=64 * 10**9, gpus=1)
    silent = agent("silent", os="", cores=None)
    every = [big, small, mac, win, silent]

    def who(*entries: str) -> set[str]:
        targets = stored(*entries)
        return {a.code for a in every if targets_match(targets, a)}

    assert who() == {a.code for a in every}
    assert who("ram:>60GB") == {"render-big", "ws-win"}
    assert who("ram:<16GiB") == {"render-small"}
    assert who("cores:>=12") == {"render-big", "ws-win"}
    assert who("cores:4") == {"render-small"}
    assert who("gpus:>=1") == {"render-big", "ws-win"}
    assert who("gpus:0") == {"render-small", "MacStudio"}  # none reported: none there
    assert who("os:macos") == {"MacStudio"}
    assert who("os:linux", "os:windows") == {"render-big", "render-small", "ws-win"}  # OR
    assert who("os:windows|macos") == {"MacStudio", "ws-win"}
    assert who("hostname:RENDER-*") == {"render-big", "render-small"}  # any case
    assert who("code:RENDER-*") == set()  # a code glob is exact, as before
    assert who("os:linux", "cores:>=12") == {"render-big"}  # AND across kinds
    assert who("!tag:slow") == {"render-big", "MacStudio", "ws-win", "silent"}
    assert who("!tag:slow", "!os:windows") == {"render-big", "MacStudio"}  # neither
    # an agent that never reported a figure matches no filter on it, negated or not
    assert who("!ram:>60GB") == {"render-small", "MacStudio"}
    assert who("os:linux", "!gpus:>=1") == {"render-small"}
    assert who("ram:>1TB") == set()


def test_jobs_stored_before_keep_their_or() -> None:
    tagged = agent(tags=("gpu",), site="s1")
    assert targets_match([{"site": "elsewhere"}, {"tag": "gpu"}], tagged)
    assert not targets_match([{"site": "elsewhere"}, {"code": "x*"}], tagged)


def test_reasons_name_the_filter_and_the_best_figure() -> None:
    agents = [agent("a", ram=8 * 10**9, cores=4), agent("b", ram=31_200_000_000, cores=16)]
    assert reason(stored("ram:>16GB"), agents, False) is None
    assert reason(stored("ram:>60GB"), agents, False) == \
        "no agent of this organization matches ram:>60GB (largest: 31.2 GB)"
    assert reason(stored("cores:<2"), agents, True) == \
        "no agent of this organization or its collaboration matches cores:<2 (smallest: 4)"
    assert reason(stored("os:windows", "os:macos"), agents, False) == \
        "no agent of this organization matches os:windows or os:macos (they run: linux)"
    assert reason(stored("ram:>16GB", "cores:<8"), agents, False) == \
        "no agent of this organization matches all of ram:>16GB, cores:<8"
    assert reason(stored("!hostname:*"), agents, False) == \
        "no agent of this organization matches !hostname:*"
    assert reason(stored("gpus:>=1"), [agent(cores=None)], False) == \
        "no agent of this organization matches gpus:>=1 (no agent has reported it yet)"
    assert reason([], [], False) == "no agent of this organization is enrolled"
    assert reason([], agents, False) is None
