"""What a lane is: what it is given, what it gives back, and what the agent may ask of it.

A ``Lane`` runs one task at a time, one after the other, and answers for each with
its ``Outcome``; ``abort`` may be called from the event loop at any time. The agent's
compute runner holds lanes by this protocol only (``lanes.subprocess.SubprocessLane``
is the one Ferry ships), so a test can hand it a lane of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from core.errors import FerryError

Status = Literal["done", "failed", "aborted"]


class LaneError(FerryError):
    """A lane could not start or watch a task (not the task's own failure)."""


@dataclass(frozen=True)
class TaskRun:
    task_id: str
    argv: list[str]
    log: Path  # stdout and stderr go here
    env: dict[str, str] = field(default_factory=dict)  # added to the agent's environment
    cwd: str | None = None
    timeout: float | None = None
    grace: float = 10.0
    mark: str | None = None  # an env variable (set in env) that names this task's processes


@dataclass(frozen=True)
class Outcome:
    status: Status
    exit_code: int | None
    message: str
    started: float  # wall-clock seconds (time.time())
    ended: float
    log_tail: str = ""
    log_size: int = 0
    cpu_seconds: float | None = None
    peak_memory: int | None = None  # bytes
    size: int | None = None  # a transfer's bytes (transfer tasks only)
    missing_frames: str | None = None  # a frame sequence's missing frames (transfers only)


class Lane(Protocol):
    """Runs tasks one at a time; a lane belongs to one agent and is named by the hub."""

    @property
    def name(self) -> str:
        """The lane's id (a client of the hub, type 5)."""
        ...

    async def run_many(self, tasks: list[TaskRun], started: Callable[[TaskRun], None],
                       ended: Callable[[TaskRun, Outcome], None], go_on: Callable[[], bool],
                       skip: Callable[[TaskRun], bool] = ...) -> int:
        """Run ``tasks`` one after the other: ``go_on`` is asked before each (False stops
        the rest), ``skip`` True ends one as aborted without running it; ``started`` and
        ``ended`` may be called on another thread. Returns how many were taken."""
        ...

    def abort(self, task_id: str | None, reason: str = "aborted") -> bool:
        """Stop the running task (``None``: whichever runs); False when it is not running."""
        ...

    def close(self) -> None:
        """Stop for good: nothing of the lane's work may go on after this."""
        ...
