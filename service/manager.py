"""Installing, starting, stopping and removing the agent service with the OS's own tools:
``systemctl`` (Linux), ``launchctl`` (macOS), the SCM (Windows: service/windows.py).
``manager`` picks the platform's; what they share is in service/base.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import structlog

from service.base import Manager, ServiceError, run
from service.units import (
    ServiceSpec,
    launchd_bytes,
    launchd_label,
    launchd_path,
    systemd_name,
    systemd_path,
    systemd_unit,
)
from service.windows import WindowsManager

log = structlog.get_logger("service")


class Systemd(Manager):
    def _ctl(self, *args: str) -> str:
        return run(["systemctl", *([] if self.spec.system else ["--user"]), *args])

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
        run(["launchctl", "bootstrap", self._domain(), str(self.unit_path())])
        if not start:
            self.stop()

    def _disable(self) -> None:
        run(["launchctl", "bootout", f"{self._domain()}/{launchd_label(self.spec)}"])

    def start(self) -> None:
        run(["launchctl", "kickstart", f"{self._domain()}/{launchd_label(self.spec)}"])

    def stop(self) -> None:
        run(["launchctl", "kill", "TERM", f"{self._domain()}/{launchd_label(self.spec)}"])

    def status(self) -> dict[str, str]:
        out = run(["launchctl", "print", f"{self._domain()}/{launchd_label(self.spec)}"])
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
        return WindowsManager(spec, root)
    raise ServiceError(f"installing the agent as a service is not supported on {platform} "
                       "(Linux: systemd; macOS: launchd; Windows: the SCM)")
