"""A lane that runs each task as a subprocess in its own session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import structlog

from lanes.accounting import CgroupTree, LaneCgroup
from lanes.base import LaneError, Outcome, Status, TaskRun
from lanes.kill import group_alive, kill_tree
from lanes.process import Child, Exit, spawn, wait

log = structlog.get_logger("lanes.subprocess")

TAIL = 4096
SAMPLE_EVERY = 0.5  # seconds between memory samples of a running task


class SubprocessLane:
    """Runs one task at a time; ``abort`` stops the running one."""

    def __init__(self, name: str, cgroups: CgroupTree | None = None) -> None:
        self.name = name
        self.cgroup: LaneCgroup | None = cgroups.lane(name) if cgroups else None
        self.base_env = dict(os.environ)
        self.current: str | None = None  # task id
        self._stop: asyncio.Future[str] | None = None

    def abort(self, task_id: str, reason: str = "aborted") -> bool:
        """Ask the running task to stop; False when it is not this lane's."""
        if self.current != task_id or self._stop is None or self._stop.done():
            return False
        self._stop.set_result(reason)
        return True

    def close(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()
            self.cgroup.remove()

    async def run(self, task: TaskRun) -> Outcome:
        started = time.time()
        self.current = task.task_id
        self._stop = asyncio.get_running_loop().create_future()
        cpu_before = self.cgroup.cpu_seconds() if self.cgroup else None
        exact_peak = self.cgroup.reset_peak() if self.cgroup else False
        try:
            try:
                child = spawn(task.argv, {**self.base_env, **task.env}, task.log, task.cwd)
            except LaneError as exc:
                _append(task.log, f"ferry: {exc}\n")
                return self._outcome(task, "failed", None, str(exc), started)
            if self.cgroup is not None:
                self.cgroup.add(child.pid)
            status, result, message, sampled = await self._watch(task, child)
            outcome = self._outcome(task, status, result, message, started, sampled)
            if self.cgroup is not None and cpu_before is not None:
                cpu_after = self.cgroup.cpu_seconds()
                if cpu_after is not None:
                    outcome = _replace(outcome, cpu_seconds=round(cpu_after - cpu_before, 6))
                if exact_peak:
                    outcome = _replace(outcome, peak_memory=self.cgroup.peak_memory())
            return outcome
        finally:
            self.current = None
            self._stop = None

    async def _watch(self, task: TaskRun, child: Child
                     ) -> tuple[Status, Exit, str, int | None]:
        assert self._stop is not None
        exited: asyncio.Task[Exit] = asyncio.ensure_future(wait(child))
        stop = self._stop
        deadline = None if task.timeout is None else time.monotonic() + task.timeout
        peak: int | None = None
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = SAMPLE_EVERY if left is None else min(SAMPLE_EVERY, left)
            done, _ = await asyncio.wait({exited, stop}, timeout=step,  # type: ignore[type-var]
                                         return_when=asyncio.FIRST_COMPLETED)
            if done:
                break
            peak = max(peak or 0, _tree_memory(child.pid))
            if deadline is not None and time.monotonic() >= deadline:
                break
        if exited in done:
            result = exited.result()
            await self._sweep(child, task.grace, exited)  # what it left running
            if result.code == 0:
                return "done", result, "", peak
            return "failed", result, _describe(result.code), peak
        reason = stop.result() if stop in done else f"timed out after {task.timeout:g} s"
        log.info("stopping task", task=task.task_id, reason=reason, grace=task.grace)
        mark = (task.mark, task.env[task.mark]) if task.mark else None
        await kill_tree(child.pid, child.pgid, self.cgroup, task.grace, exited, mark)
        result = await exited
        status: Status = "aborted" if stop in done else "failed"
        return status, result, f"{reason} ({_describe(result.code)})", peak

    async def _sweep(self, child: Child, grace: float, exited: asyncio.Future[Exit]) -> None:
        """A task is over when its main process is: whatever it left behind is stopped."""
        cgroup = self.cgroup
        if group_alive(child.pgid) or (cgroup is not None and bool(cgroup.pids())):
            log.info("task left processes running; stopping them", pid=child.pid)
            await kill_tree(child.pid, child.pgid, cgroup, min(grace, 2.0), exited)

    @staticmethod
    def _outcome(task: TaskRun, status: Status, result: Exit | None, message: str,
                 started: float, sampled: int | None = None) -> Outcome:
        tail, size = _tail(task.log)
        return Outcome(status=status, exit_code=None if result is None else result.code,
                       message=message, started=started, ended=time.time(), log_tail=tail,
                       log_size=size, cpu_seconds=None if result is None else result.cpu_seconds,
                       peak_memory=sampled)


def _replace(outcome: Outcome, **changes: object) -> Outcome:
    from dataclasses import replace

    return replace(outcome, **changes)  # type: ignore[arg-type]


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
    """The last 4 KiB of the log (a small read: fine on the event loop)."""
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
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
