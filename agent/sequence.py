"""A frame sequence moved as one transfer task: the agent lists the sequence's folder
once, as for a folder, and keeps the files that are frames of the pattern within the
job's range (``protocol.sequences``). The ticket is the folder's (one share, one path
and what is below it): the frames are picked here, and every file is still opened
beneath the share's root by the endpoint, as for any folder.

The frames missing from the range go to the hub with the task's report, and the job
lists them; a job with ``missing_frames: fail`` fails instead, before a byte moves.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from protocol import TransferWork
from protocol.paths import join, share_parts
from protocol.sequences import Sequence, SequenceError, frames_text, parse_frames, parse_pattern, pick
from protocol.transfer import StatAnswer
from transports.chunks import TransferError

LocalFile = tuple[Path, tuple[str, ...], os.stat_result]


class FramesMissing(TransferError):
    """Frames of the range are not there, and the job says that is a failure."""

    def __init__(self, message: str, missing: list[int]) -> None:
        super().__init__(message)
        self.missing = missing


def sequence_of(work: TransferWork) -> tuple[Sequence, list[tuple[int, int]] | None]:
    """The task's pattern and range, as the hub checked them (checked again: an agent
    takes no text on trust)."""
    try:
        sequence = parse_pattern(work.sequence)
        if sequence is None:
            raise SequenceError(f"{work.sequence!r} has no frame placeholder")
        return sequence, parse_frames(work.frames, sequence) if work.frames else None
    except SequenceError as exc:
        raise TransferError(f"the sequence: {exc}") from None


def pick_listed(work: TransferWork, info: StatAnswer) -> tuple[StatAnswer, list[int]]:
    """Of the folder's listing, the frames to move (files right in the folder); and the
    frames missing."""
    if info.type != "dir":
        raise TransferError(f"{work.path!r} is a file, not the folder of sequence "
                            f"{work.sequence!r}")
    sequence, ranges = sequence_of(work)
    base = share_parts(work.path)
    inside = {share_parts(f.path)[-1]: f for f in info.files
              if len(share_parts(f.path)) == len(base) + 1}
    found, missing = pick(inside, sequence, ranges)
    files = [inside[name] for name in sorted(found, key=found.__getitem__)]
    _check(work, len(files), missing)
    return msgspec.structs.replace(info, files=files), missing


def pick_local(work: TransferWork, files: list[LocalFile]) -> tuple[list[LocalFile], list[int]]:
    """Of a pushed folder's files (``transports.shares.files_below``), the frames to send;
    and the frames missing."""
    sequence, ranges = sequence_of(work)
    inside: dict[str, LocalFile] = {rel[0]: (path, rel, st) for path, rel, st in files
                                    if len(rel) == 1}
    found, missing = pick(inside, sequence, ranges)
    picked = [inside[name] for name in sorted(found, key=found.__getitem__)]
    _check(work, len(picked), missing)
    return picked, missing


def _check(work: TransferWork, found: int, missing: list[int]) -> None:
    where = join((*share_parts(work.path), work.sequence))
    if not found:
        raise FramesMissing(f"no frame of {where!r} is there" + (
            f" in {work.frames}" if work.frames else ""), missing)
    if missing and work.missing_frames == "fail":
        raise FramesMissing(f"{len(missing)} frames of {where!r} are missing: "
                            f"{frames_text(missing, 2000)}", missing)
