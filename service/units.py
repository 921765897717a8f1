"""The agent as an OS service: what systemd and launchd are told, generated from one spec.

Stop means drain. The service manager sends the agent one TERM and then waits:
the agent stops claiming, lets running tasks finish until its drain deadline
(then stops them and hands them back), flushes its outbox and says goodbye.
The unit gives it that long and more (``TimeoutStopSec``, ``ExitTimeOut``)
and sends nothing to the tasks itself (``KillMode=mixed``): only the agent
decides when a healthy task is stopped. systemd also hears from the agent
(``Type=notify``: READY, STOPPING, WATCHDOG; agent/notify.py) and restarts it
when it fails or wedges.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.paths import InstancePaths

SERVICE_USER = "ferry"  # a system service runs as this user, where the platform allows
STOP_MARGIN = 30.0  # seconds beyond the drain: goodbye, outbox flush, exit
WATCHDOG_SEC = 60  # the agent pings every 30 s while its check-in loop makes progress
OOM_SCORE = -500  # the agent: after its tasks (lanes/oom.py gives them +500)


@dataclass(frozen=True)
class ServiceSpec:
    """One agent instance as a service."""

    paths: InstancePaths
    drain_timeout: float
    python: str = sys.executable
    user: str | None = None  # the dedicated user of a system service (None: root, or the user)
    groups: tuple[str, ...] = ()  # supplementary groups (e.g. docker)

    @property
    def system(self) -> bool:
        return self.paths.system

    @property
    def name(self) -> str:
        return self.paths.name

    @property
    def argv(self) -> list[str]:
        return [self.python, "-m", "ferry", "agent", "start", "--attach",
                "--system" if self.system else "--user", "--name", self.name,
                "--config", str(self.paths.config_file)]

    @property
    def stop_timeout(self) -> int:
        return int(self.drain_timeout + STOP_MARGIN + 0.999)


# -- systemd
def systemd_name(spec: ServiceSpec) -> str:
    return f"ferry-agent-{spec.name}.service"


def systemd_path(spec: ServiceSpec, home: Path | None = None) -> Path:
    if spec.system:
        return Path("/etc/systemd/system") / systemd_name(spec)
    config = Path(os.environ["XDG_CONFIG_HOME"]) if os.environ.get("XDG_CONFIG_HOME") and \
        home is None else (home or Path.home()) / ".config"
    return config / "systemd" / "user" / systemd_name(spec)


def systemd_unit(spec: ServiceSpec) -> str:
    mode = "system" if spec.system else "user"
    unit = [
        "[Unit]",
        f"Description=Ferry agent {spec.name} ({mode} service)",
    ]
    if spec.system:
        unit += ["Wants=network-online.target", "After=network-online.target"]
    service = [
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={shlex.join(spec.argv)}",
        # stop means drain: TERM to the agent alone, then time to finish its tasks
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={spec.stop_timeout}",
        "TimeoutStartSec=120",
        f"WatchdogSec={WATCHDOG_SEC}",
        "Restart=on-failure",
        "RestartSec=5",
        # the agent's lanes make cgroups of their own below the service's
        "Delegate=yes",
    ]
    if spec.system:
        service += [f"OOMScoreAdjust={OOM_SCORE}", "StateDirectory=ferry",
                    "LogsDirectory=ferry", "StateDirectoryMode=0750", "UMask=0077"]
        if spec.user:
            service += [f"User={spec.user}", f"Group={spec.user}"]
        if spec.groups:
            service += [f"SupplementaryGroups={' '.join(spec.groups)}"]
    install = ["", "[Install]",
               f"WantedBy={'multi-user.target' if spec.system else 'default.target'}"]
    return "\n".join(unit + service + install) + "\n"


# -- launchd
def launchd_label(spec: ServiceSpec) -> str:
    return f"org.ferry.agent.{spec.name}"


def launchd_path(spec: ServiceSpec, home: Path | None = None) -> Path:
    if spec.system:
        return Path("/Library/LaunchDaemons") / f"{launchd_label(spec)}.plist"
    return (home or Path.home()) / "Library" / "LaunchAgents" / f"{launchd_label(spec)}.plist"


def launchd_plist(spec: ServiceSpec) -> dict[str, Any]:
    """A LaunchDaemon (system) or LaunchAgent (user). launchd sends TERM on stop and waits
    ``ExitTimeOut`` before KILL: the drain's time."""
    plist: dict[str, Any] = {
        "Label": launchd_label(spec),
        "ProgramArguments": spec.argv,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restarted when it fails, not when stopped
        "ExitTimeOut": spec.stop_timeout,
        "ThrottleInterval": 5,
        "ProcessType": "Standard",
        "StandardOutPath": str(spec.paths.log_dir / f"{spec.name}.out"),
        "StandardErrorPath": str(spec.paths.log_dir / f"{spec.name}.out"),
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
    }
    if spec.system and spec.user:
        plist["UserName"] = spec.user
        plist["GroupName"] = spec.user
    return plist


def launchd_bytes(spec: ServiceSpec) -> bytes:
    return plistlib.dumps(launchd_plist(spec), fmt=plistlib.FMT_XML, sort_keys=True)
