"""Frame sequences and speed limits as people write them (issue 19): the parsers the hub,
the agent and the CLI share."""

from __future__ import annotations

import pytest

from protocol.rates import lowest, parse_rate, rate_text
from protocol.sequences import (
    Sequence,
    SequenceError,
    frames_text,
    parse_frames,
    parse_pattern,
    pick,
)


@pytest.mark.parametrize(("text", "rate"), [
    ("50MB/s", 50_000_000), ("500KB/s", 500_000), ("1GB/s", 10**9), ("1.5GB/s", 1_500_000_000),
    ("100MiB/s", 100 << 20), ("20 MB/s", 20_000_000), ("50M", 50_000_000), (4096, 4096),
    ("7", 7)])
def test_rates(text: object, rate: int) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["50Mb/s", "50mb/s", "fast", "", "0MB/s", 0, -5, True,
                                  None, "5000GB/s", "50MB/h", 1.5])
def test_bad_rates_say_what_is_expected(text: object) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_rate(text)


def test_the_lowest_rate_applies() -> None:
    assert lowest(None, 0) == 0
    assert lowest(50, None, 20, 0) == 20
    assert rate_text(50_000_000) == "50MB/s" and rate_text(0) == "unlimited"


def test_patterns() -> None:
    hashes = parse_pattern("shot010_####.exr")
    assert hashes == Sequence("shot010_", ".exr", 4) == parse_pattern("shot010_%04d.exr")
    assert parse_pattern("shot010_%d.exr") == Sequence("shot010_", ".exr", 0)
    assert parse_pattern("edit.mov") is None
    assert hashes is not None
    assert hashes.frame_of("shot010_1001.exr") == 1001
    assert hashes.frame_of("shot010_12345.exr") == 12345  # past the padding: as it is
    for other in ("shot010_101.exr", "shot010_01001.exr", "shot010_1001.exr.bak",
                  "shot020_1001.exr", "shot010_.exr", "shot010_\uff11\uff10\uff10\uff11.exr"):
        assert hashes.frame_of(other) is None, other
    assert Sequence("a.", ".dpx", 0).frame_of("a.007.dpx") is None  # %d: not padded


@pytest.mark.parametrize(("name", "needle"), [
    ("a_##_%04d.exr", "mixes"), ("a_#_#.exr", "2 frame placeholders"),
    ("a_%4d.exr", "pads with spaces"), ("a_" + "#" * 13 + ".exr", "12 digits")])
def test_bad_patterns(name: str, needle: str) -> None:
    with pytest.raises(SequenceError, match=needle):
        parse_pattern(name)


def test_ranges() -> None:
    seq = Sequence("s_", ".exr", 4)
    assert parse_frames("1001-1100", seq) == [(1001, 1100)]
    assert parse_frames("1, 5-7,1001", seq) == [(1, 1), (5, 7), (1001, 1001)]
    assert parse_frames("0001-0100", seq) == [(1, 100)]  # padded as the pattern is


@pytest.mark.parametrize(("text", "needle"), [
    ("1100-1001", "ends before it starts"), ("001-100", "padded to 3 digits"),
    ("a-b", "not a frame"), ("1-5,3-9", "without overlap"), ("-5", "0 or more"),
    ("", "expected frames"), ("0-9999999", "more than 1000000"),
    ("5000000000", "below")])
def test_bad_ranges(text: str, needle: str) -> None:
    with pytest.raises(SequenceError, match=needle):
        parse_frames(text, Sequence("s_", ".exr", 4))


def test_pick_lists_the_gaps() -> None:
    seq = Sequence("shot010_", ".exr", 4)
    names = [seq.name(f) for f in range(1001, 1011) if f not in (1003, 1007, 1008)]
    names += ["shot010_0999.exr", "other.txt", "shot010_1001.exr.tmp"]
    found, missing = pick(names, seq, [(1001, 1012)])
    assert sorted(found.values()) == [1001, 1002, 1004, 1005, 1006, 1009, 1010]
    assert missing == [1003, 1007, 1008, 1011, 1012]
    found, missing = pick(names, seq, None)  # no range: the gaps between first and last
    assert min(found.values()) == 999 and missing == [1000, 1003, 1007, 1008]
    assert pick([], seq, None) == ({}, [])


def test_frames_text() -> None:
    assert frames_text([1003, 1007, 1008, 1009, 1011]) == "1003, 1007-1009, 1011"
    assert frames_text([]) == ""
    long = frames_text(list(range(0, 10_000, 2)), limit=30)
    assert long.startswith("0, 2, 4") and long.endswith("more") and len(long) < 60
