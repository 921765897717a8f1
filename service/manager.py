"""Installing, starting, stopping and removing the agent service with the OS's own tools:
``systemctl`` (Linux), ``launchctl`` (macOS), the SCM (Windows: service/windows.py).

``root`` stages the files under another folder (a package build, a test) and
runs no service manager. A step that fails leaves nothing half done: a unit
written for an install that could not be enabled is removed again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import structlog

from core.config import write_atomic
from core.errors import FerryError
from service.units import (
    ServiceSpec,
    launchd_bytes,
    launchd_label,
    launchd_path,
    systemd_name,
    systemd_path,
    systemd_unit,
)

log = structlog.get_logger("service")


class ServiceError(FerryError):
    """The service cannot be installed, changed or asked about; says why."""


@dataclass(frozen=True)
class Installed:
    unit: Path  # where the unit (or plist) is
    started: bool


def _run(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        raise ServiceError(f"{argv[0]} is not on this system: this OS's service manager is "
                           "missing (or use --root to stage the files only)")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        words = (done.stderr or done.stdout).strip().splitlines()
        raise ServiceError(f"`{' '.join(argv)}` failed: {words[-1] if words else done.returncode}")
    return done.stdout


class Manager:
    """One platform's service manager."""

    def __init__(self, spec: ServiceSpec, root: Path | None = None) -> None:
        self.spec = spec
        self.root = root

    def _staged(self, path: Path) -> Path:
        return path if self.root is None else self.root / path.relative_to(path.anchor)

    # overridden per platform
    def unit_path(self) -> Path:
        raise NotImplementedError

    def unit_bytes(self) -> bytes:
        raise NotImplementedError

    def _enable(self, start: bool) -> None:
        raise NotImplementedError

    def _disable(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def status(self) -> dict[str, str]:
        raise NotImplementedError

    def install(self, *, start: bool = True) -> Installed:
        path = self._staged(self.unit_path())
        existed = path.exists()
        write_atomic(path, self.unit_bytes(), 0o644)
        if self.root is not None:
            return Installed(path, False)
        try:
            self._enable(start)
        except ServiceError:
            if not existed:  # nothing half done
                path.unlink(missing_ok=True)
                self._reload()
            raise
        return Installed(path, start)

    def uninstall(self) -> Path:
        path = self._staged(self.unit_path())
        if self.root is None and path.exists():
            self._disable()
        path.unlink(missing_ok=True)
        if self.root is None:
            self._reload()
        return path

    def _reload(self) -> None:
        pass


class Systemd(Manager):
    def _ctl(self, *args: str) -> str:
        return _run(["systemctl", *([] if self.spec.system else ["--user"]), *args])

    def unit_path(self) -> Path:
        return systemd_path(self.spec)

    def unit_bytes(self) -> bytes:
        return systemd_unit(self.spec).encode()

    def _reload(self) -> None:
        try:
            self._ctl("daemon-reload")
        except ServiceError as exc:
            log.warning("systemctl daemon-reload failed", error=str(exc))

    def _enable(self, start: bool) -> None:
        self._ctl("daemon-reload")
        self._ctl("enable", *(["--now"] if start else []), systemd_name(self.spec))

    def _disable(self) -> None:
        self._ctl("disable", "--now", systemd_name(self.spec))

    def start(self) -> None:
        self._ctl("start", systemd_name(self.spec))

    def stop(self) -> None:
        self._ctl("stop", systemd_name(self.spec))  # waits for the drain (TimeoutStopSec)

    def status(self) -> dict[str, str]:
        out = self._ctl("show", systemd_name(self.spec), "-p",
                        "LoadState,ActiveState,SubState,MainPID,ExecMainStatus,StatusText")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


class Launchd(Manager):
    def _domain(self) -> str:
        return "system" if self.spec.system else f"gui/{os.getuid()}"

    def unit_path(self) -> Path:
        return launchd_path(self.spec)

    def unit_bytes(self) -> bytes:
        return launchd_bytes(self.spec)

    def _enable(self, start: bool) -> None:
        _run(["launchctl", "bootstrap", self._domain(), str(self.unit_path())])
        if not start:
            self.stop()

    def _disable(self) -> None:
        _run(["launchctl", "bootout", f"{self._domain()}/{launchd_label(self.spec)}"])

    def start(self) -> None:
        _run(["launchctl", "kickstart", f"{self._domain()}/{launchd_label(self.spec)}"])

    def stop(self) -> None:
        _run(["launchctl", "kill", "TERM", f"{self._domain()}/{launchd_label(self.spec)}"])

    def status(self) -> dict[str, str]:
        out = _run(["launchctl", "print", f"{self._domain()}/{launchd_label(self.spec)}"])
        found = {}
        for line in out.splitlines():
            key, sep, value = line.strip().partition(" = ")
            if sep and key in ("state", "pid", "last exit code"):
                found[key] = value
        return found


def manager(spec: ServiceSpec, root: Path | None = None, platform: str = sys.platform
            ) -> Manager:
    if platform.startswith("linux"):
        return Systemd(spec, root)
    if platform == "darwin":
        return Launchd(spec, root)
    if platform == "win32":
        from service.windows import WindowsManager

        return WindowsManager(spec, root)
    raise ServiceError(f"installing the agent as a service is not supported on {platform} "
                       "(Linux: systemd; macOS: launchd; Windows: the SCM)")
