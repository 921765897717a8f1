"""Who this machine is: MAC addresses, a stable machine id, OS, user, hostname."""

from __future__ import annotations

import getpass
import os
import platform
import re
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from core.paths import roots

if sys.platform == "win32":
    import winreg

# interface names of bridges, tunnels and containers, on every OS
_VIRTUAL_NAMES = re.compile(
    r"^(lo|docker|br-|veth|virbr|vmnet|vboxnet|tun|tap|utun|awdl|llw|bridge|zt|wg|tailscale|"
    r"cni|flannel|cali|vxlan|kube|ifb|dummy|gif|stf|anpi|ap\d)", re.IGNORECASE)
_MAC = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")


def _is_virtual(name: str) -> bool:
    if _VIRTUAL_NAMES.match(name):
        return True
    if sys.platform.startswith("linux"):
        # the kernel files every software-only interface under /sys/devices/virtual
        return Path("/sys/devices/virtual/net", name).exists()
    return False


def host_macs() -> list[str]:
    """MACs of the physical interfaces, upper case, sorted, without duplicates."""
    macs: set[str] = set()
    for name, addrs in psutil.net_if_addrs().items():
        if _is_virtual(name):
            continue
        for addr in addrs:
            if addr.family != psutil.AF_LINK:
                continue
            mac = addr.address.replace("-", ":").upper()
            if not _MAC.match(mac) or mac == "00:00:00:00:00:00":
                continue
            macs.add(mac)
    return sorted(macs)


def _read_first(paths: tuple[str, ...]) -> str | None:
    for path in paths:
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value:
            return value
    return None


def _platform_machine_id() -> str | None:
    if sys.platform.startswith("linux"):
        return _read_first(("/etc/machine-id", "/var/lib/dbus/machine-id"))
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
                                 capture_output=True, text=True, timeout=5, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        found = re.search(r'"IOPlatformUUID" = "([^"]+)"', out)
        return found.group(1) if found else None
    if sys.platform == "win32":
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE,  # type: ignore[attr-defined,unused-ignore]
                                r"SOFTWARE\Microsoft\Cryptography") as key:
                return str(winreg.QueryValueEx(key, "MachineGuid")[0])  # type: ignore[attr-defined,unused-ignore]
        except OSError:
            return None
    return None


def fallback_dirs() -> list[Path]:
    """Where a made-up machine id is kept: machine-wide first, then the user's data folder."""
    return [roots(True).data, roots(False).data]


def machine_id(folders: list[Path]) -> str:
    """The OS's machine id; else one made up once and kept in the first usable folder.

    The folders are shared by every agent instance on the machine (not one
    instance's own folder), so two agents of one machine agree on its id.
    """
    found = _platform_machine_id()
    if found and len(found) >= 8:
        return found
    for folder in folders:
        existing = _read_first((str(folder / "machine-id"),))
        if existing:
            return existing
    made = uuid.uuid4().hex
    for folder in folders:
        path = folder / "machine-id"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue  # not ours to write (a user agent and /var/lib): try the next
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # another agent made it just now
            return _read_first((str(path),)) or made
        except OSError:
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(made + "\n")
        return made
    return made


def os_name() -> str:
    """The reference's names: windows, linux, mac, raspbian, solaris."""
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "mac"
    if sys.platform.startswith("sunos"):
        return "solaris"
    if sys.platform.startswith("linux"):
        release = _read_first(("/etc/os-release",)) or ""
        return "raspbian" if "raspbian" in release.lower() else "linux"
    return platform.system().lower()


def username() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the uid
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


@dataclass(frozen=True)
class Identity:
    machine_id: str
    code: str  # the hostname
    os: str
    username: str
    host_id: str  # "AA:BB:…, CC:DD:…"

    @classmethod
    def gather(cls, folders: list[Path] | None = None) -> Identity:
        return cls(machine_id=machine_id(folders or fallback_dirs()), code=socket.gethostname(),
                   os=os_name(),
                   username=username(), host_id=", ".join(host_macs()))
