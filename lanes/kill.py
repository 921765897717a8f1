"""Stopping a task: SIGTERM to its whole tree, a grace period, then SIGKILL.

The tree is the task's process group (its session), its cgroup when there
is one, and every descendant found at the moment of the kill, so
grandchildren that started sessions of their own go too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Any

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
    return _signal_group(pgid, 0)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.Error:
            continue
    return out


def marked(name: str, value: str) -> list[psutil.Process]:
    """Processes whose environment has ``name=value``: a task's processes carry its id,
    even those that left its session, its cgroup and its parent."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(name) == value:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


async def kill_tree(pid: int, pgid: int, cgroup: LaneCgroup | None, grace: float,
                    exited: asyncio.Future[Any] | None = None, mark: tuple[str, str] | None = None
                    ) -> None:
    """TERM everything the task started; after ``grace`` seconds KILL what is left.

    ``exited`` completes when the task's main process has been reaped. ``mark`` is an
    environment variable every process of the task carries.
    """
    tree = _descendants(pid)
    if cgroup is not None:
        tree += [p for p in (_proc(q) for q in cgroup.pids()) if p is not None]
    if mark is not None:
        tree += await asyncio.to_thread(marked, *mark)
    term = signal.SIGTERM if sys.platform != "win32" else signal.CTRL_BREAK_EVENT  # type: ignore[attr-defined,unused-ignore]
    _signal_group(pgid, term)
    _signal_all(tree, term)
    _signal_main(pid, term, exited)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        main_done = exited is None or exited.done()
        if main_done and not group_alive(pgid) and not _alive(tree) and \
                (cgroup is None or not cgroup.pids()):
            return
        await asyncio.sleep(0.05)
    kill = getattr(signal, "SIGKILL", signal.SIGTERM)
    _signal_group(pgid, kill)
    _signal_all(_alive(tree), kill)
    _signal_main(pid, kill, exited)
    if cgroup is not None:
        cgroup.kill()


def _signal_main(pid: int, sig: int, exited: asyncio.Future[Any] | None) -> None:
    """Only while unreaped: after that the pid may belong to someone else."""
    if exited is None or not exited.done():
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None
