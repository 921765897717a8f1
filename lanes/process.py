"""Starting a task process in its own session, and waiting for it without a thread.

``posix_spawn`` (vfork speed) is used when it can do the job; a working
folder or a platform without ``POSIX_SPAWN_SETSID`` falls back to
``subprocess.Popen``, which also covers Windows. Output goes straight from
the child to the log file: the agent never pumps pipes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lanes.base import LaneError


@dataclass
class Child:
    pid: int
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pgid(self) -> int:
        return self.pid  # a new session's leader leads its process group too


def spawn(argv: list[str], env: dict[str, str], log: Path, cwd: str | None) -> Child:
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise LaneError(f"cannot open the task log {log}: {exc.strerror}") from None
    try:
        if cwd is None and hasattr(os, "posix_spawn") and sys.platform.startswith("linux"):
            return Child(_posix_spawn(argv, env, fd))
        return _popen(argv, env, fd, cwd)
    finally:
        os.close(fd)


def _posix_spawn(argv: list[str], env: dict[str, str], fd: int) -> int:
    program = argv[0] if os.sep in argv[0] else _which(argv[0], env)
    try:
        return os.posix_spawn(program, argv, env, setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fd, 1),
            (os.POSIX_SPAWN_DUP2, fd, 2),
        ])
    except OSError as exc:
        raise LaneError(f"cannot run {argv[0]!r}: {exc.strerror}") from None


def _which(program: str, env: dict[str, str]) -> str:
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
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
    return Child(proc.pid, proc)


@dataclass(frozen=True)
class Exit:
    code: int  # negative: killed by that signal
    cpu_seconds: float | None
    peak_memory: int | None


async def wait(child: Child) -> Exit:
    """The child's exit, with its rusage where the OS gives one."""
    if sys.platform == "win32":
        assert child.popen is not None
        code = await asyncio.to_thread(child.popen.wait)
        return Exit(code, None, None)
    pidfd = -1
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(child.pid)
        except OSError:
            pidfd = -1
    if pidfd >= 0:  # Linux: the event loop tells us when it exits; reaping is then instant
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        def readable() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, readable)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        # it has exited: WNOHANG reaps it at once, no thread needed
        _, status, usage = os.wait4(child.pid, os.WNOHANG)  # noqa: ASYNC222 - never blocks
    else:
        _, status, usage = await asyncio.to_thread(os.wait4, child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if child.popen is not None:
        child.popen.returncode = code  # we reaped it: keep Popen from trying again
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return Exit(code, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * scale)
