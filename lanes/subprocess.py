"""A lane that runs each task as a subprocess in its own session.

Each lane has a thread of its own for the process work (spawn, waiting,
kills): those calls release the GIL, so lanes overlap on a multi-core host
and the agent's event loop only hears the outcome. ``abort`` may be called
from the event loop at any time.

A task that is still running after ``MOVE_AFTER`` is moved, with all it has
started so far, into its lane's cgroup (moving a process is a slow kernel
path, and a task that ends sooner has little to account or escape). What
escapes both its session and the cgroup is still found by the mark in its
environment when it is stopped, or when a task that ran over
``SWEEP_AFTER`` ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import psutil
import structlog

from lanes.accounting import CgroupTree, LaneCgroup
from lanes.base import LaneError, Outcome, Status, TaskRun
from lanes.kill import group_alive, group_members, kill_tree, marked
from lanes.process import Child, Exit, reap, spawn, wait_exit
from protocol import LOG_TAIL_BYTES

log = structlog.get_logger("lanes.subprocess")

TAIL = LOG_TAIL_BYTES
SAMPLE_EVERY = 0.5  # seconds between memory samples of a running task
MOVE_AFTER = 0.05  # seconds a task runs before it is moved into its lane's cgroup
ANNOUNCE_AFTER = 0.5  # seconds a task runs before it is reported as executing
SWEEP_AFTER = 1.0  # seconds a task runs before its end is followed by a search by mark


class SubprocessLane:
    """Runs one task at a time; ``abort`` stops the running one."""

    def __init__(self, name: str, cgroups: CgroupTree | None = None) -> None:
        self.name = name
        self.cgroup: LaneCgroup | None = cgroups.lane(name) if cgroups else None
        self.base_env = dict(os.environ)
        self.current: str | None = None  # task id
        self._abort: str | None = None
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe() if sys.platform != "win32" else (-1, -1)
        if self._wake_r >= 0:
            os.set_blocking(self._wake_r, False)
        self._woken = False  # a wake-up byte may be waiting in the pipe
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lane-{name}")
        self._moved: tuple[float | None, bool] | None = None  # (cgroup CPU then, exact peak)
        self._announce: Callable[[], None] | None = None  # the running task's "started"

    def abort(self, task_id: str | None, reason: str = "aborted") -> bool:
        """Ask the running task (``None``: whichever runs) to stop; False when that is not
        the lane's running task, or it is being stopped already."""
        with self._lock:
            if self.current is None or task_id not in (None, self.current) or \
                    self._abort is not None:
                return False
            self._abort = reason
            if self._wake_w >= 0:  # under the lock: the flag and the byte go together
                self._woken = True
                os.write(self._wake_w, b"!")
            return True

    def close(self) -> None:
        self._thread.shutdown(wait=False)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self.cgroup is not None:
            self.cgroup.kill()
            self.cgroup.remove()

    async def run(self, task: TaskRun) -> Outcome:
        """Run one task."""
        outcomes: list[Outcome] = []
        await self.run_many([task], lambda _t: None, lambda _t, o: outcomes.append(o),
                            lambda: True)
        return outcomes[0]

    async def run_many(self, tasks: list[TaskRun], started: Callable[[TaskRun], None],
                       ended: Callable[[TaskRun, Outcome], None],
                       go_on: Callable[[], bool],
                       skip: Callable[[TaskRun], bool] = lambda _t: False) -> int:
        """Run tasks one after the other on the lane's thread, without coming back to the
        event loop between them. ``started`` is called once a task has run for
        ``ANNOUNCE_AFTER`` (a task that ends sooner is told of by its end alone),
        ``ended`` when it is over; both on that thread (hand anything for the loop over
        with ``call_soon_threadsafe``). ``go_on`` is asked before each task: False stops
        the rest; ``skip`` True ends that one task as aborted without running it.
        Returns how many were taken (run or skipped)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._run_many, tasks, started, ended, go_on, skip)

    # -- on the lane's thread
    def _run_many(self, tasks: list[TaskRun], started: Callable[[TaskRun], None],
                  ended: Callable[[TaskRun, Outcome], None], go_on: Callable[[], bool],
                  skip: Callable[[TaskRun], bool]) -> int:
        count = 0
        for task in tasks:
            self._drain_wake()  # a wake-up left from the task before
            # the task is current before go_on and skip are asked: a stop that comes later
            # finds it running (abort), one that came sooner is seen here
            with self._lock:
                self.current, self._abort = task.task_id, None
                go = go_on()
                skipped = go and skip(task)
                if not go or skipped:
                    self.current = None
            if not go:
                break
            if skipped:
                now = time.time()
                ended(task, Outcome(status="aborted", exit_code=None, message="aborted before "
                                    "it started", started=now, ended=now))
                count += 1
                continue
            try:
                self._announce = functools.partial(started, task)
                outcome = self._run(task)
            finally:
                with self._lock:
                    self.current = None
            ended(task, outcome)
            count += 1
        return count

    def _run(self, task: TaskRun) -> Outcome:
        """Never raises: whatever goes wrong is the task's outcome, and the lane goes on."""
        started = time.time()
        self._moved = None
        try:
            child = spawn(task.argv, {**self.base_env, **task.env}, task.log, task.cwd)
        except Exception as exc:
            if not isinstance(exc, LaneError):
                log.exception("starting a task failed", task=task.task_id)
            message = str(exc) if isinstance(exc, LaneError) else \
                f"cannot run {task.argv[0]!r}: {exc}"
            _append(task.log, f"ferry: {message}\n")
            return _outcome(task, "failed", None, message, started)
        try:
            status, result, message, sampled = self._watch(task, child)
        except Exception as exc:  # a bug, or the OS: the task must not run on unwatched
            log.exception("watching a task failed; stopping it", task=task.task_id)
            stopped = self._stop_unwatched(task, child)
            return _outcome(task, "failed", stopped, f"the agent failed while running it: {exc}",
                            started)
        finally:
            child.close()
        outcome = _outcome(task, status, result, message, started, sampled)
        moved = self._moved_state()
        if self.cgroup is not None and moved is not None:
            cpu_before, exact_peak = moved
            cpu_after = self.cgroup.cpu_seconds()
            if cpu_after is not None and cpu_before is not None:
                # the cgroup counts what ran after the move, strays included
                cpu = max(cpu_after - cpu_before, outcome.cpu_seconds or 0.0)
                outcome = replace(outcome, cpu_seconds=round(cpu, 6))
            if exact_peak:
                outcome = replace(outcome, peak_memory=self.cgroup.peak_memory())
        return outcome

    def _moved_state(self) -> tuple[float | None, bool] | None:
        """(cgroup CPU when the task was moved, exact peak) once ``_watch`` moved it."""
        return self._moved

    def _move(self, child: Child) -> None:
        """Into the lane's cgroup: the task and everything it has started so far."""
        assert self.cgroup is not None
        cpu = self.cgroup.cpu_seconds()
        exact_peak = self.cgroup.reset_peak()
        with contextlib.suppress(psutil.Error):
            tree = [child.pid, *(p.pid for p in psutil.Process(child.pid).children(recursive=True))]
            tree += [p.pid for p in group_members(child.pgid) if p.pid not in tree]
            for pid in tree:
                self.cgroup.add(pid)
        self._moved = (cpu, exact_peak)

    def _watch(self, task: TaskRun, child: Child) -> tuple[Status, Exit, str, int | None]:
        begun = time.monotonic()
        deadline = None if task.timeout is None else begun + task.timeout
        peak: int | None = None
        reason: str | None = None
        while True:
            step = SAMPLE_EVERY if self._moved is not None or self.cgroup is None else MOVE_AFTER
            if self._announce is not None:
                step = min(step, max(0.01, ANNOUNCE_AFTER - (time.monotonic() - begun)))
            left = step if deadline is None else min(step, deadline - time.monotonic())
            if wait_exit(child, max(0.0, left), self._wake_r):
                break
            if self._moved is None and self.cgroup is not None:
                self._move(child)
            if self._announce is not None and time.monotonic() - begun >= ANNOUNCE_AFTER:
                self._announce()
                self._announce = None
            reason = self._abort
            if reason is None and deadline is not None and time.monotonic() >= deadline:
                reason = f"timed out after {task.timeout:g} s"
            if reason is not None:
                break
            peak = max(peak or 0, _tree_memory(child.pid))
        mark = (task.mark, task.env[task.mark]) if task.mark else None
        if reason is None:
            result = reap(child)
            long = time.monotonic() - begun > SWEEP_AFTER
            if (group_alive(child.pgid) and group_members(child.pgid)) or \
                    (self.cgroup is not None and self._moved and self.cgroup.pids()) or \
                    (long and mark is not None and marked(*mark)):
                log.info("task left processes running; stopping them", task=task.task_id)
                kill_tree(child.pid, child.pgid, self.cgroup, min(task.grace, 2.0),
                          lambda: child.reaped, mark)
            if result.code == 0:
                return "done", result, "", peak
            return "failed", result, _describe(result.code), peak
        log.info("stopping task", task=task.task_id, reason=reason, grace=task.grace)
        ended: list[Exit] = []

        def reaped() -> bool:
            """Reap the main process as soon as it exits: a zombie still holds its group."""
            if not child.reaped and wait_exit(child, 0):
                ended.append(reap(child))
            return child.reaped

        kill_tree(child.pid, child.pgid, self.cgroup, task.grace, reaped, mark)
        if not ended:
            wait_exit(child, 60.0)
            ended.append(reap(child))
        result = ended[0]
        status: Status = "failed" if reason.startswith("timed out") else "aborted"
        return status, result, f"{reason} ({_describe(result.code)})", peak

    def _stop_unwatched(self, task: TaskRun, child: Child) -> Exit | None:
        """Stop a task whose watch failed: its whole tree, as on an abort."""
        ended: list[Exit] = []

        def reaped() -> bool:
            if not child.reaped and wait_exit(child, 0):
                ended.append(reap(child))
            return child.reaped

        mark = (task.mark, task.env[task.mark]) if task.mark else None
        with contextlib.suppress(Exception):
            kill_tree(child.pid, child.pgid, self.cgroup, min(task.grace, 2.0), reaped, mark)
            if not child.reaped and wait_exit(child, 10.0):
                ended.append(reap(child))
        return ended[0] if ended else None

    def _drain_wake(self) -> None:
        if self._wake_r < 0:
            return
        with self._lock, contextlib.suppress(BlockingIOError):
            if self._woken:
                self._woken = False
                while os.read(self._wake_r, 64):
                    pass


def _outcome(task: TaskRun, status: Status, result: Exit | None, message: str,
             started: float, sampled: int | None = None) -> Outcome:
    tail, size = _tail(task.log)
    return Outcome(status=status, exit_code=None if result is None else result.code,
                   message=message, started=started, ended=time.time(), log_tail=tail,
                   log_size=size, cpu_seconds=None if result is None else result.cpu_seconds,
                   peak_memory=sampled)


def _tree_memory(pid: int) -> int:
    """Resident memory of a task's tree now; on Linux each process's high-water mark, so
    a spike between two samples still counts."""
    total = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in procs:
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            total += _high_water(proc.pid) if sys.platform.startswith("linux") \
                else proc.memory_info().rss
    return total


def _high_water(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _tail(path: Path) -> tuple[str, int]:
    """The last 4 KiB of the log."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return "", 0
            fh.seek(max(0, size - TAIL))
            return fh.read().decode("utf-8", "replace"), size
    except OSError:
        return "", 0


def _append(path: Path, text: str) -> None:
    """Add a line of Ferry's own to a task's log, if the log can be written at all."""
    with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
