"""What a transfer job may say beyond its source and destination: a speed limit, and a
frame sequence as its source (docs/TRANSFERS.md, "Speed limits" and "Sequences").

A job's ``speed_limit`` is stored as the limit in force at the hub: the lowest of the
job's own and the hub's ``transfer_speed_limit`` (which is also the default of a job that
names none). The agent applies its own on top. A source whose file name has a frame
placeholder (``shot010_####.exr``, ``shot010_%04d.exr``) is a sequence; ``frames``
narrows it to a range and ``missing_frames`` says whether frames missing from it fail
the job. The agent that moves it picks the frames (``agent/sequence.py``).
"""

from __future__ import annotations

from typing import Any

from hub.errors import Invalid
from protocol.rates import lowest, parse_rate
from protocol.sequences import SequenceError, parse_frames, parse_pattern


def speed_limit(value: Any, hub_limit: int, field: str = "speed_limit") -> int | None:
    """The limit a job stores for ``value`` (text like ``50MB/s``, bytes/s, or None for
    none of its own): the lowest of it and the hub's; None when neither limits it."""
    own = None
    if value is not None:
        try:
            own = parse_rate(value)
        except ValueError as exc:
            raise Invalid("invalid_value", f"{field}: {exc}", field=field) from None
    return lowest(own, hub_limit) or None


def sequence(parts: tuple[str, ...], frames: str | None, missing: str) -> dict[str, Any] | None:
    """The sequence a job's source names (its file name a pattern), checked: None when it
    names none. ``Invalid`` naming ``source`` or ``frames``."""
    try:
        pattern = parse_pattern(parts[-1]) if parts else None
    except SequenceError as exc:
        raise Invalid("invalid_sequence", f"source: {exc}", field="source") from None
    if pattern is None:
        if frames is not None:
            raise Invalid("invalid_sequence", "frames: the source is no sequence (its file "
                          "name has no '####' or '%04d')", field="frames")
        return None
    if any(_placeholder(p) for p in parts[:-1]):
        raise Invalid("invalid_sequence", "source: a frame placeholder belongs in the file "
                      "name, not in a folder's", field="source")
    if frames is not None:
        try:
            parse_frames(frames, pattern)
        except SequenceError as exc:
            raise Invalid("invalid_frames", f"frames: {exc}", field="frames") from None
    return {"pattern": parts[-1], "frames": frames or "", "missing_frames": missing}


def _placeholder(name: str) -> bool:
    try:
        return parse_pattern(name) is not None
    except SequenceError:
        return True
