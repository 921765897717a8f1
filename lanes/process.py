"""Starting a task process in its own session, and waiting for it (on the lane's thread).

``posix_spawn`` (vfork speed) is used when it can do the job, called through
ctypes on glibc so that the GIL is free meanwhile (``lanes/cspawn.py``); a
working folder or a platform without ``POSIX_SPAWN_SETSID`` falls back to
``subprocess.Popen``, which also covers Windows. Output goes straight from
the child to the log file: the agent never pumps pipes.
"""

from __future__ import annotations

import functools
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

import lanes.cspawn
from lanes.base import LaneError
from lanes.oom import TASK_OOM_SCORE, set_oom_score

LINUX = sys.platform.startswith("linux")


@dataclass
class Child:
    pid: int
    popen: subprocess.Popen[bytes] | None = None
    pidfd: int = -1  # Linux: readable once the child has exited
    reaped: bool = field(default=False)

    @property
    def pgid(self) -> int:
        return self.pid  # a new session's leader leads its process group too

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


def spawn(argv: list[str], env: dict[str, str], log: Path, cwd: str | None) -> Child:
    try:
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except FileNotFoundError:  # its folder was tidied away meanwhile
            log.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise LaneError(f"cannot open the task log {log}: {exc.strerror}") from None
    try:
        child = Child(_posix_spawn(argv, env, fd)) if cwd is None and LINUX \
            else _popen(argv, env, fd, cwd)
    finally:
        os.close(fd)
    if LINUX:  # before the agent, should memory run out (best effort: raising is allowed)
        set_oom_score(TASK_OOM_SCORE, child.pid)
    if hasattr(os, "pidfd_open"):  # opened at once: the pid cannot be reused before
        try:
            child.pidfd = os.pidfd_open(child.pid)
        except OSError:
            child.pidfd = -1
    return child


def _posix_spawn(argv: list[str], env: dict[str, str], fd: int) -> int:
    try:
        program = argv[0] if os.sep in argv[0] else _which(argv[0], env.get("PATH", os.defpath))
        if lanes.cspawn.AVAILABLE:  # the same call, with the GIL released
            return lanes.cspawn.posix_spawn(program, argv, env, fd)
        return os.posix_spawn(program, argv, env, setsid=True, setsigdef=lanes.cspawn.RESET,
                              setsigmask=(), file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fd, 1),
            (os.POSIX_SPAWN_DUP2, fd, 2),
        ])
    except OSError as exc:
        raise LaneError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
    except ValueError as exc:  # os.posix_spawn: a NUL byte in an argument
        raise LaneError(f"cannot run {argv[0]!r}: {exc}") from None


@functools.lru_cache(maxsize=256)
def _which(program: str, path: str) -> str:
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or ".", program)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise LaneError(f"cannot run {program!r}: not found on PATH")


def _popen(argv: list[str], env: dict[str, str], fd: int, cwd: str | None) -> Child:
    kwargs: dict[str, object] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env,
                                cwd=cwd, close_fds=True, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        what = "working folder" if cwd and not os.path.isdir(cwd) else "program"
        raise LaneError(f"cannot run {argv[0]!r}: {what} {exc.filename or cwd!r} not found") \
            from None
    except OSError as exc:
        raise LaneError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
    except ValueError as exc:  # a NUL byte in an argument
        raise LaneError(f"cannot run {argv[0]!r}: {exc}") from None
    return Child(proc.pid, proc)


@dataclass(frozen=True)
class Exit:
    code: int  # negative: killed by that signal
    cpu_seconds: float | None


def wait_exit(child: Child, timeout: float, wake: int = -1) -> bool:
    """Block up to ``timeout`` seconds for the child to exit, or for ``wake`` to be
    readable; True once the child has exited (it is not reaped yet)."""
    if child.pidfd >= 0:
        poller = select.poll()
        poller.register(child.pidfd, select.POLLIN)
        if wake >= 0:
            poller.register(wake, select.POLLIN)
        events = poller.poll(max(0, int(timeout * 1000)))
        return any(fd == child.pidfd for fd, _ in events)
    deadline = time.monotonic() + timeout  # no pidfd (macOS, old kernels): look often
    while True:
        if _exited(child):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))


def _exited(child: Child) -> bool:
    if child.popen is not None:
        return child.popen.poll() is not None
    try:
        return psutil_zombie(child.pid)
    except OSError:
        return True


def psutil_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def reap(child: Child) -> Exit:
    """Collect the exit of a child that has exited."""
    if child.popen is not None and sys.platform == "win32":
        code = child.popen.wait()
        child.reaped = True
        return Exit(code, None)
    if child.popen is not None and child.popen.returncode is not None:
        child.reaped = True  # poll() reaped it; its rusage went with it
        return Exit(child.popen.returncode, None)
    _, status, usage = os.wait4(child.pid, 0)
    child.reaped = True
    code = os.waitstatus_to_exitcode(status)
    if child.popen is not None:
        child.popen.returncode = code  # we reaped it: keep Popen from trying again
    # ru_maxrss is not the task's peak: after exec it still holds the agent's own
    return Exit(code, usage.ru_utime + usage.ru_stime)
