"""Stopping a task: SIGTERM to its whole tree, a grace period, then SIGKILL.

The tree is the task's process group (its session), its cgroup when there
is one, every descendant found at the moment of the kill, and every process
carrying the task's mark in its environment, so grandchildren that started
sessions of their own, or left before the cgroup move, go too. This runs on
the lane's own thread: it may sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable

import psutil

from lanes.accounting import LaneCgroup


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False when nobody is left in it."""
    if sys.platform == "win32":
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def group_alive(pgid: int) -> bool:
    """Cheap: is anyone (a zombie included) left in the process group?"""
    return _signal_group(pgid, 0)


def group_members(pgid: int) -> list[psutil.Process]:
    """The live (not zombie) processes of a group: a zombie whose parent died stays in
    its group until init reaps it, which can take a while."""
    if not group_alive(pgid):
        return []
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def marked(name: str, value: str) -> list[psutil.Process]:
    """Processes whose environment has ``name=value``: a task's processes carry its id."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(name) == value:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.Error:
            continue
    return out


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def kill_tree(pid: int, pgid: int, cgroup: LaneCgroup | None, grace: float,
              main_reaped: Callable[[], bool], mark: tuple[str, str] | None = None) -> None:
    """TERM everything the task started; after ``grace`` seconds KILL what is left.

    ``main_reaped`` says whether the main process has been waited for (its pid may
    then belong to someone else and is not signalled); it may reap it, too.
    """
    tree = _descendants(pid)
    if cgroup is not None:
        tree += [p for p in (_proc(q) for q in cgroup.pids()) if p is not None]
    if mark is not None:
        tree += marked(*mark)
    term = signal.SIGTERM if sys.platform != "win32" else signal.CTRL_BREAK_EVENT  # type: ignore[attr-defined,unused-ignore]
    _signal_group(pgid, term)
    _signal_all(tree, term)
    if not main_reaped():
        with contextlib.suppress(OSError):
            os.kill(pid, term)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if main_reaped() and not _alive(tree) and not group_members(pgid) and \
                (cgroup is None or not cgroup.pids()):
            return
        time.sleep(0.05)
    kill = getattr(signal, "SIGKILL", signal.SIGTERM)
    _signal_group(pgid, kill)
    _signal_all(_alive(tree) + group_members(pgid), kill)
    if not main_reaped():
        with contextlib.suppress(OSError):
            os.kill(pid, kill)
    if cgroup is not None:
        cgroup.kill()


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None
