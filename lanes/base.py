"""What a lane is given and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
