"""Resource accounting and whole-tree kills through cgroup v2, where available.

Each lane gets its own cgroup under one folder per agent, and each task's
processes are moved into its lane's cgroup (a lane runs one task at a time,
and nothing of a task outlives it). That counts CPU time across every
process a task starts, including grandchildren that left its process group,
and one write (``cgroup.kill``) kills them all. Without a writable cgroup v2
tree the lane falls back to rusage and process-group signals.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import structlog

log = structlog.get_logger("lanes.cgroup")


def _cgroup2_root() -> Path | None:
    """Where this process's own cgroup v2 folder is, if the unified hierarchy is mounted."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    mount = next((line.split()[1] for line in mounts if line.split()[2:3] == ["cgroup2"]), None)
    relative = next((line[3:] for line in own if line.startswith("0::")), None)
    if mount is None or relative is None:
        return None
    return Path(mount) / relative.lstrip("/")


class CgroupTree:
    """One agent's folder of task cgroups; ``None``-safe when cgroups are not usable."""

    def __init__(self, name: str) -> None:
        self.base: Path | None = None
        root = _cgroup2_root()
        if root is None:
            return
        base = root / f"ferry-{name}"
        try:
            base.mkdir(exist_ok=True)
            probe = base / "probe"
            probe.mkdir(exist_ok=True)
            probe.rmdir()
        except OSError as exc:
            log.info("cgroup v2 not writable here; using process groups and rusage",
                     path=str(base), error=exc.strerror)
            return
        self.base = base

    def lane(self, name: str) -> LaneCgroup | None:
        if self.base is None:
            return None
        path = self.base / f"lane-{name}"
        try:
            path.mkdir(exist_ok=True)
        except OSError:
            return None
        return LaneCgroup(path)

    def close(self) -> None:
        """Remove the agent's folder once its lanes are gone (it is empty then)."""
        if self.base is not None:
            with contextlib.suppress(OSError):
                self.base.rmdir()

    def kill_all(self) -> int:
        """Kill whatever an earlier run of this agent left in its lanes' cgroups."""
        if self.base is None:
            return 0
        killed = 0
        for child in self.base.glob("lane-*"):
            group = LaneCgroup(child)
            killed += len(group.pids())
            group.kill()
            group.remove()
        return killed


class LaneCgroup:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._procs: int | None = None  # cgroup.procs, kept open: moving a task is one write
        self._peak_resets = True  # until a reset fails: then memory.peak is not ours

    def add(self, pid: int) -> bool:
        """Move a just-spawned task here, as fast as one syscall, before it forks much."""
        try:
            if self._procs is None:
                self._procs = os.open(self.path / "cgroup.procs", os.O_WRONLY)
            os.write(self._procs, str(pid).encode())
            return True
        except OSError:
            return False  # it exited already, or we may not move it

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def cpu_seconds(self) -> float | None:
        """CPU time of everything that ever ran in this cgroup (take differences)."""
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        except (OSError, ValueError):
            pass
        return None

    def reset_peak(self) -> bool:
        """Start a new memory.peak (kernel 6.12+, with the memory controller)."""
        if not self._peak_resets:
            return False
        try:
            (self.path / "memory.peak").write_text("0")
            return True
        except OSError:
            self._peak_resets = False
            return False

    def peak_memory(self) -> int | None:
        try:
            return int((self.path / "memory.peak").read_text())
        except (OSError, ValueError):
            return None  # no memory controller delegated here

    def kill(self) -> None:
        try:
            (self.path / "cgroup.kill").write_text("1")
        except OSError:  # kernels before 5.14: one by one
            for pid in self.pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)

    def remove(self) -> None:
        if self._procs is not None:
            os.close(self._procs)
            self._procs = None
        with contextlib.suppress(OSError):
            self.path.rmdir()
