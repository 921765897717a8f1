"""Progress lines: what a compute task says of itself on its output (issue 18).

A line of the task's output that is a JSON object whose keys are among ``progress`` (a
number from 0 to 100), ``stage`` (a string) and ``output`` (a path) is a progress line::

    {"progress": 42.5, "stage": "render"}
    {"output": "/renders/shot010/0042.exr"}

It sets the task's ``progress`` and ``stage`` at the hub (the latest of each counts), and
an ``output`` adds its path to the task's ``outputs`` (each path once, at most
``MAX_OUTPUTS`` of them and ``MAX_OUTPUTS_SIZE`` bytes in all). Every other line is log,
and so is a line that looks like JSON but is not such an object: another key, a value of
the wrong type, a progress outside 0-100, a line longer than ``MAX_LINE``. A progress line
stays in the log too: the log is the task's output as it wrote it (stdout and stderr both
go there, so either may carry them).

A ``ProgressScanner`` reads a running task's log from where it stopped, whole lines only
(the heartbeat takes what is new, ``news``; the end report all of it, ``whole``). Reading
costs one pass over the output; only lines that start with ``{`` are decoded.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from protocol import TaskProgress
from protocol.work import MAX_OUTPUT_PATH, MAX_OUTPUTS, MAX_OUTPUTS_SIZE, MAX_STAGE

MAX_LINE = 8192  # bytes: a longer line is log, whatever it holds
CHUNK = 1 << 20  # bytes read at once
KEYS = frozenset({"progress", "stage", "output"})
# a line that may be a JSON object: ``{`` to ``}``, blanks around it
_CANDIDATE = re.compile(rb"^[ \t]*(\{[^\n]*\})[ \t\r]*$", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Said:
    """One progress line: what it sets (None: it does not say)."""

    progress: float | None = None
    stage: str | None = None
    output: str | None = None


def parse(line: bytes) -> Said | None:
    """The progress line ``line`` is (without its end of line), or None: it is log."""
    if len(line) > MAX_LINE:
        return None
    try:
        value = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None
    if not isinstance(value, dict) or not value or not set(value) <= KEYS \
            or None in value.values():  # a null says nothing: not a progress line
        return None
    progress, stage, output = (value.get(k) for k in ("progress", "stage", "output"))
    if progress is not None and not _percent(progress):
        return None
    if stage is not None and not (isinstance(stage, str) and len(stage) <= MAX_STAGE):
        return None
    if output is not None and not _path(output):
        return None
    return Said(float(progress) if progress is not None else None, stage, output)


def _percent(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value) and 0 <= value <= 100


def _path(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_OUTPUT_PATH \
        and _CONTROL.search(value) is None


class ProgressScanner:
    """The progress lines of one running task's log at ``path``. Thread-safe: the
    heartbeat reads it in a thread, the task's end on its lane's thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._offset = 0  # bytes of the log read
        self._rest = b""  # the start of a line not yet ended
        self._skipping = False  # inside a line too long to be a progress line
        self.progress: float | None = None
        self.stage: str | None = None
        self.outputs: list[str] = []
        self._known: set[str] = set()
        self._size = 0  # UTF-8 bytes of ``outputs``
        self._said = False  # any progress line at all
        self._changed = False  # progress or stage since the last ``news``
        self._sent = 0  # outputs already in a ``news``

    def news(self) -> TaskProgress | None:
        """What the task said since the last call (after reading what its log gained);
        None when nothing."""
        with self._lock:
            self._read(final=False)
            fresh = self.outputs[self._sent:]
            if not (self._changed or fresh):
                return None
            self._changed, self._sent = False, len(self.outputs)
            return TaskProgress(progress=self.progress, stage=self.stage, outputs=fresh)

    def whole(self) -> TaskProgress | None:
        """Everything the task said, its last line too (it has ended); None when it said
        nothing."""
        with self._lock:
            self._read(final=True)
            if not self._said:
                return None
            return TaskProgress(progress=self.progress, stage=self.stage,
                                outputs=list(self.outputs))

    def _read(self, *, final: bool) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                while chunk := fh.read(CHUNK):
                    self._offset += len(chunk)
                    self._lines(chunk)
        except OSError:
            return
        if final and self._rest and not self._skipping:
            self._lines(b"\n")

    def _lines(self, chunk: bytes) -> None:
        """Take the whole lines of what was read; keep the start of an unended one."""
        if self._skipping:
            end = chunk.find(b"\n")
            if end < 0:
                return
            self._skipping, chunk = False, chunk[end + 1:]
        data = self._rest + chunk
        end = data.rfind(b"\n")
        if end < 0:
            complete, self._rest = b"", data
        else:
            complete, self._rest = data[:end + 1], data[end + 1:]
        if len(self._rest) > MAX_LINE:  # too long to be a progress line: log to its end
            self._rest, self._skipping = b"", True
        for match in _CANDIDATE.finditer(complete):
            said = parse(match.group(1))
            if said is not None:
                self._take(said)

    def _take(self, said: Said) -> None:
        self._said = True
        if said.progress is not None and said.progress != self.progress:
            self.progress, self._changed = said.progress, True
        if said.stage is not None and said.stage != self.stage:
            self.stage, self._changed = said.stage, True
        path = said.output
        if path is not None and path not in self._known and len(self.outputs) < MAX_OUTPUTS:
            size = len(path.encode())
            if self._size + size <= MAX_OUTPUTS_SIZE:
                self.outputs.append(path)
                self._known.add(path)
                self._size += size
