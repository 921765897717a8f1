"""Running an instance (a named hub or agent): pid file, runtime file, background start, stop.

A running instance holds an exclusive lock on its pid file, so a stale pid
file left by a crash never blocks a new start, and ``stop`` never signals a
process that merely reused the pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil

from core.config import write_atomic
from core.errors import InstanceError
from core.paths import InstancePaths

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl


def _try_lock(fh: IO[str]) -> bool:
    if sys.platform == "win32":
        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def read_pid(paths: InstancePaths) -> int | None:
    try:
        return int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def running_pid(paths: InstancePaths) -> int | None:
    """The pid of the running instance, or None (a stale pid file does not count)."""
    if not paths.pid_file.exists():
        return None
    try:
        fh = open(paths.pid_file, "a+")  # noqa: SIM115 - closed below
    except OSError:
        return None
    try:
        if _try_lock(fh):
            return None  # nobody holds it: not running
        return read_pid(paths)
    finally:
        fh.close()


def _lock_pid_file(paths: InstancePaths, wait: float = 3.0) -> IO[str]:
    """The pid file, open and exclusively locked by this process.

    ``list``, ``stop`` and ``version`` probe the lock for a moment, so a start
    retries briefly instead of failing on them. A file that was unlinked
    while we waited for its lock is not the pid file any more: open again.
    """
    deadline = time.monotonic() + wait
    while True:
        fh = open(paths.pid_file, "a+")  # noqa: SIM115 - the caller closes it
        if _try_lock(fh):
            try:
                same = os.fstat(fh.fileno()).st_ino == os.stat(paths.pid_file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fh
        fh.close()
        now = time.monotonic()
        if now > deadline and (running_pid(paths) is not None or now > deadline + 10):
            raise InstanceError(f"{paths.kind} '{paths.name}' is already running "
                                f"(pid {read_pid(paths)})")
        time.sleep(0.05)


@contextlib.contextmanager
def hold_pid_file(paths: InstancePaths) -> Iterator[None]:
    """Claim the instance for this process for the duration of the block."""
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    fh = _lock_pid_file(paths)
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        paths.runtime_file.unlink(missing_ok=True)
        paths.pid_file.unlink(missing_ok=True)
        fh.close()


def write_runtime(paths: InstancePaths, info: dict[str, Any]) -> None:
    write_atomic(paths.runtime_file, json.dumps(info, indent=2), mode=0o644)


def read_runtime(paths: InstancePaths) -> dict[str, Any] | None:
    try:
        data = json.loads(paths.runtime_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_background(argv: list[str], paths: InstancePaths, timeout: float = 60.0) -> dict[str, Any]:
    """Start ``argv`` detached; wait until it writes its runtime file or dies."""
    pid = running_pid(paths)
    if pid is not None:
        raise InstanceError(f"{paths.kind} '{paths.name}' is already running (pid {pid})")
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    paths.runtime_file.unlink(missing_ok=True)
    with open(paths.output_file, "ab") as out:
        os.chmod(paths.output_file, 0o600)
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | 0x00000008  # DETACHED
        else:
            kwargs["start_new_session"] = True
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 close_fds=True, **kwargs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_runtime(paths)
        if info is not None and info.get("pid") == child.pid:
            return info
        code = child.poll()
        if code is not None:
            raise InstanceError(f"{paths.kind} '{paths.name}' exited with code {code} while "
                                f"starting:\n{tail(paths.output_file)}")
        time.sleep(0.1)
    child.terminate()
    raise InstanceError(f"{paths.kind} '{paths.name}' did not start within {timeout:.0f} s; "
                        f"see {paths.output_file}")


def stop(paths: InstancePaths, *, force: bool, timeout: float) -> int:
    """Stop the instance: SIGTERM (drain) and wait, or SIGKILL with ``force``."""
    pid = running_pid(paths)
    if pid is None:
        raise InstanceError(f"{paths.kind} '{paths.name}' is not running")
    try:
        proc = psutil.Process(pid)
        if force:
            proc.kill()
        elif sys.platform == "win32":
            proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined,unused-ignore]
        else:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        raise InstanceError(f"{paths.kind} '{paths.name}' (pid {pid}) is still draining after "
                            f"{timeout:.0f} s; wait, or use --force to kill it") from None
    if force:  # a killed process cannot clean up after itself
        paths.runtime_file.unlink(missing_ok=True)
        paths.pid_file.unlink(missing_ok=True)
    return pid


def follow(path: Path, *, from_start_lines: int = 20) -> None:
    """Print the end of ``path`` and then whatever is appended (Ctrl-C stops)."""
    print(tail(path, from_start_lines), flush=True)
    position = path.stat().st_size if path.exists() else 0
    try:
        while True:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size < position:  # rotated
                position = 0
            if size > position:
                with open(path, "rb") as fh:
                    fh.seek(position)
                    sys.stdout.write(fh.read().decode("utf-8", "replace"))
                    sys.stdout.flush()
                    position = fh.tell()
            time.sleep(0.3)
    except KeyboardInterrupt:
        pass
