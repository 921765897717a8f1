"""Telling the service manager how the agent is: systemd's notify protocol.

Under ``Type=notify`` systemd sets ``NOTIFY_SOCKET``: the agent sends ``READY=1``
once it serves, ``STOPPING=1`` when a stop (a drain) begins, and, when the unit
has ``WatchdogSec=``, ``WATCHDOG=1`` at half that period, but only while its
check-in loop makes progress: a wedged agent stops pinging and systemd restarts
it. Elsewhere (launchd, Windows, a terminal) every call here does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("agent.notify")



class Notifier:
    """``sd_notify`` without libsystemd: one datagram per state, to ``NOTIFY_SOCKET``."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else 0.0

    @property
    def active(self) -> bool:
        return bool(self.address) and hasattr(socket, "AF_UNIX")

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines; False when there is no service manager to tell or it
        could not be told (never raises: the agent works without one)."""
        if not self.active:
            return False
        address = self.address
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.sendall("\n".join(fields).encode())
            return True
        except OSError as exc:
            log.warning("cannot tell the service manager", state=fields[0], error=str(exc))
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", f"STATUS={status or 'running'}", f"MAINPID={os.getpid()}")

    def stopping(self, status: str = "draining") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    async def watch(self, healthy: Callable[[], bool], stop: asyncio.Event) -> None:
        """Ping the watchdog at half its period while ``healthy()``; stop pinging (and say
        why) when it is not, so that systemd restarts a wedged agent."""
        if not self.active or not self.watchdog:
            return
        period = self.watchdog / 2
        quiet = False
        while not stop.is_set():
            if healthy():
                self.send("WATCHDOG=1")
                if quiet:
                    log.info("healthy again; watchdog pings resume")
                quiet = False
            elif not quiet:
                log.error("the check-in loop makes no progress; watchdog pings stop, and the "
                          "service manager will restart the agent")
                self.status("wedged: the check-in loop makes no progress")
                quiet = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=period)


class Progress:
    """When a loop last made progress; ``fresh(window)``: within the last ``window`` s."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def beat(self) -> None:
        self.at = time.monotonic()

    def fresh(self, window: float) -> bool:
        return time.monotonic() - self.at < window
