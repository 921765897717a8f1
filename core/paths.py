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
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from core.errors import ConfigError, InstanceError

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


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    """An instance name (``--name``), or ConfigError saying what a name may be."""
    if not NAME.match(name):
        raise ConfigError(f"invalid --name {name!r}: use up to 64 letters, digits, '.', '_' "
                          "and '-', starting with a letter or digit")
    return name


def find_instance(kind: Kind, name: str | None, system: bool | None,
                  config: Path | None) -> InstancePaths:
    """The instance the flags ``--name``, ``--system``/``--user`` and ``--config`` point at:
    by name, by its config file's name, or the only one configured at that level."""
    system = default_system() if system is None else bool(system)
    config = config.expanduser() if config else None
    if name:
        return instance_paths(kind, check_name(name), system, config)
    if config is not None:
        return instance_paths(kind, check_name(config.stem), system, config)
    level = "system" if system else "user"
    folder = dict(config_dirs(kind))[level]
    names = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    if len(names) == 1:
        return instance_paths(kind, names[0], system)
    if not names:
        raise InstanceError(f"no {kind} is configured at {level} level ({folder}); "
                            f"create one with 'ferry {kind} new'")
    raise InstanceError(f"several {kind}s are configured ({', '.join(names)}); "
                        "choose one with --name")
