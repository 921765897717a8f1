"""Frame sequences as transfer sources: ``shot010_####.exr`` or ``shot010_%04d.exr`` (one
placeholder, in the file's name), with an optional range of frames (``1001-1100``, or
several: ``1001-1050,1060,1070-1100``).

The hub checks the pattern and the range when a job is made; the agent that runs the
transfer lists the sequence's folder once (as for a folder) and keeps the files whose
names are frames of it (``pick``). Frames of the range that are not there are *missing*:
listed on the job, or a failure when the job says so (docs/TRANSFERS.md, "Sequences").

A frame is written with at least the pattern's padding: ``####`` takes ``0007`` and
``12345``, not ``7`` nor ``00007``; ``%d`` takes ``7``, not ``007``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_FRAMES = 1_000_000  # frames a range may name: a typo must not list a billion
MAX_FRAME = 10**9
_HASHES = re.compile(r"#+")
_PRINTF = re.compile(r"%(0?\d*)d")
_RANGE = re.compile(r"(-?\d+)(?:-(-?\d+))?")


class SequenceError(ValueError):
    """A pattern or a range that cannot be: the message says why."""


@dataclass(frozen=True)
class Sequence:
    """A file name with one frame placeholder: what comes before and after it, and how
    many digits a frame has at least (0: as many as it needs)."""

    prefix: str
    suffix: str
    padding: int

    def name(self, frame: int) -> str:
        return f"{self.prefix}{frame:0{self.padding}d}{self.suffix}"

    def frame_of(self, name: str) -> int | None:
        """The frame ``name`` is of this sequence, or None."""
        if not (name.startswith(self.prefix) and name.endswith(self.suffix)) or \
                len(name) <= len(self.prefix) + len(self.suffix):
            return None
        digits = name[len(self.prefix):len(name) - len(self.suffix)]
        if not digits.isascii() or not digits.isdigit():
            return None
        frame = int(digits)
        return frame if self.name(frame) == name else None  # padded as the pattern says


def parse_pattern(name: str) -> Sequence | None:
    """The sequence a file name is a pattern of; None when it has no placeholder.
    ``SequenceError`` for two placeholders, or ``#`` and ``%d`` mixed."""
    hashes, printf = list(_HASHES.finditer(name)), list(_PRINTF.finditer(name))
    if not hashes and not printf:
        return None
    if hashes and printf:
        raise SequenceError(f"{name!r} mixes '#' and '%d' padding: write one of "
                            "'####' or '%04d'")
    found = hashes or printf
    if len(found) > 1:
        raise SequenceError(f"{name!r} has {len(found)} frame placeholders; a sequence has one")
    match = found[0]
    if hashes:
        padding = len(match[0])
    else:
        width = match[1]
        if width and not width.startswith("0"):
            raise SequenceError(f"{name!r}: '%{width}d' pads with spaces; write '%0{width}d'")
        padding = int(width) if width else 0
    if padding > 12:
        raise SequenceError(f"{name!r}: a frame of more than 12 digits")
    return Sequence(name[:match.start()], name[match.end():], padding)


def parse_frames(text: str, sequence: Sequence) -> list[tuple[int, int]]:
    """``1001-1100`` or ``1001-1050,1060`` as (first, last) ranges, in order.
    ``SequenceError`` for a range backwards or overlapping, negative frames, more than
    ``MAX_FRAMES`` frames, or frames written with a padding that is not the pattern's
    (``0001-0100`` for ``%03d``)."""
    if not isinstance(text, str) or not text.strip():
        raise SequenceError("expected frames like '1001-1100' or '1001-1050,1060'")
    out: list[tuple[int, int]] = []
    for piece in (p.strip() for p in text.split(",")):
        match = _RANGE.fullmatch(piece)
        if match is None:
            raise SequenceError(f"{piece!r} is not a frame nor a range like '1001-1100'")
        for written in filter(None, (match[1], match[2])):
            if written.startswith("-"):
                raise SequenceError(f"{piece!r}: frames are 0 or more")
            if len(written) > 1 and written.startswith("0") and \
                    len(written) != sequence.padding:
                raise SequenceError(
                    f"{piece!r}: frame {written!r} is padded to {len(written)} digits, the "
                    f"pattern to {sequence.padding or 'none'}")
        first = int(match[1])
        last = int(match[2]) if match[2] else first
        if last < first:
            raise SequenceError(f"{piece!r}: the range ends before it starts")
        if last >= MAX_FRAME:
            raise SequenceError(f"{piece!r}: frames are below {MAX_FRAME}")
        if out and first <= out[-1][1]:
            raise SequenceError(f"{piece!r}: ranges are written in order, without overlap")
        out.append((first, last))
    if sum(last - first + 1 for first, last in out) > MAX_FRAMES:
        raise SequenceError(f"more than {MAX_FRAMES} frames")
    return out


def pick(names: Iterable[str], sequence: Sequence, ranges: list[tuple[int, int]] | None
         ) -> tuple[dict[str, int], list[int]]:
    """Of ``names`` (a folder's files), the frames of ``sequence`` within ``ranges``
    (all of them when None), as name -> frame, and the frames missing: of the ranges, or,
    without a range, the gaps between the first frame found and the last."""
    found: dict[str, int] = {}
    for name in names:
        frame = sequence.frame_of(name)
        if frame is not None and (ranges is None or _within(frame, ranges)):
            found[name] = frame
    have = set(found.values())
    if ranges is None:
        ranges = [(min(have), max(have))] if have else []
    missing = [f for first, last in ranges for f in range(first, last + 1) if f not in have]
    return found, missing


def _within(frame: int, ranges: list[tuple[int, int]]) -> bool:
    return any(first <= frame <= last for first, last in ranges)


def frames_text(frames: list[int], limit: int = 4000) -> str:
    """Sorted frames as ranges, ``1003, 1007-1009``; past ``limit`` characters the rest
    is counted (``… and 12 more``)."""
    spans: list[str] = []
    start = prev = None
    for frame in [*frames, None]:
        if frame is not None and prev is not None and frame == prev + 1:
            prev = frame
            continue
        if start is not None:
            spans.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = frame
    text: list[str] = []
    used = 0
    for n, span in enumerate(spans):
        if used + len(span) + 2 > limit:
            return ", ".join(text) + f" … and {len(spans) - n} more"
        text.append(span)
        used += len(span) + 2
    return ", ".join(text)
