"""What every platform's service manager shares: the base class, its error, and running the
OS's own tool (``systemctl``, ``launchctl``, ``schtasks``) with a clear error when it fails.

``root`` stages the files under another folder (a package build, a test) and
runs no service manager. A step that fails leaves nothing half done: a unit
written for an install that could not be enabled is removed again.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.config import write_atomic
from core.errors import FerryError
from service.units import ServiceSpec


class ServiceError(FerryError):
    """The service cannot be installed, changed or asked about; says why."""


@dataclass(frozen=True)
class Installed:
    unit: Path  # where the unit (or plist) is
    started: bool


def run(argv: list[str]) -> str:
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
