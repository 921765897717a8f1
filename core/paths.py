"""Where an instance keeps its config, data and logs, per OS and level.

=========  ====================================  =========================================
OS         system                                user
=========  ====================================  =========================================
Windows    ``C:\\ProgramData\\ferry\\<kind>``        ``%LOCALAPPDATA%\\ferry\\<kind>``
macOS      ``/Library/Application Support/ferry/<kind>``  ``~/Library/Application Support/ferry/<kind>``
Linux      ``/etc/xdg/ferry/<kind>``               ``~/.config/ferry/<kind>``
=========  ====================================  =========================================

Data and logs follow the same split (``/var/lib/ferry`` and
``/var/log/ferry`` for a Linux system instance; the XDG data and state
folders for a user). Nothing here touches the disk until asked.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

Kind = Literal["hub", "agent"]
APP = "ferry"


def is_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None:
        return bool(geteuid() == 0)
    try:  # Windows: an elevated process counts as "root"
        import ctypes  # noqa: PLC0415 - Windows only

        return bool(ctypes.windll.shell32.IsUserAnAdmin())  # type: ignore[attr-defined]
    except Exception:
        return False


def default_system() -> bool:
    """System level is the default for root (administrator), user level otherwise."""
    return is_root()


@dataclass(frozen=True)
class Roots:
    config: Path
    data: Path
    log: Path


def roots(system: bool) -> Roots:
    if system:
        if sys.platform == "win32":
            base = Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / APP
            return Roots(base, base, base / "log")
        if sys.platform == "darwin":
            base = Path("/Library/Application Support") / APP
            return Roots(base, base, Path("/Library/Logs") / APP)
        return Roots(Path(platformdirs.site_config_dir(APP)), Path("/var/lib") / APP,
                     Path("/var/log") / APP)
    return Roots(
        Path(platformdirs.user_config_dir(APP, appauthor=False)),
        Path(platformdirs.user_data_dir(APP, appauthor=False)),
        Path(platformdirs.user_log_dir(APP, appauthor=False)),
    )


@dataclass(frozen=True)
class InstancePaths:
    """Every file an instance (one named hub or agent) uses."""

    kind: Kind
    name: str
    system: bool
    config_file: Path
    data_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.data_dir / f"{self.name}.pid"

    @property
    def runtime_file(self) -> Path:
        """Written once the instance serves: pid, URLs, ports."""
        return self.data_dir / "runtime.json"

    @property
    def output_file(self) -> Path:
        """stdout/stderr of a background instance (tracebacks before logging starts)."""
        return self.log_dir / f"{self.name}.out"

    @property
    def level(self) -> str:
        return "system" if self.system else "user"


def instance_paths(kind: Kind, name: str, system: bool, config: Path | None = None) -> InstancePaths:
    base = roots(system)
    config_file = config if config is not None else base.config / kind / f"{name}.yaml"
    return InstancePaths(
        kind=kind,
        name=name,
        system=system,
        config_file=config_file.absolute(),
        data_dir=base.data / kind / name,
        log_dir=base.log / kind,
    )


def config_dirs(kind: Kind) -> list[tuple[str, Path]]:
    """The folders ``list`` scans: system first, then user."""
    return [("system", roots(True).config / kind), ("user", roots(False).config / kind)]
