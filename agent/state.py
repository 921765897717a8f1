"""What the agent knows about itself right now; shown by ``/status.json``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core import refusals
from core.version import VERSION

Section = Callable[[], dict[str, Any]]  # a part's own status, asked for each page


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


@dataclass
class AgentState:
    name: str
    hub: str
    lanes: int
    client_id: str | None = None
    status: str = "starting"  # then the hub's word: online or disabled; "stopping" at the end
    checkin_interval: float = 15.0
    last_checkin: str | None = None
    last_checkin_at: float | None = None  # monotonic
    last_error: str | None = None
    checkins: int = 0
    hub_switches: int = 0  # another hub took over (a failover, or back to the first)
    busy: int = 0  # buckets held (a compute bucket holds a lane)
    # why this agent takes no work now (its schedule or NIMBY, agent/availability.py); it
    # goes to the hub with every check-in
    status_reason: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    started: str = field(default_factory=now_iso)

    @property
    def accepting_work(self) -> bool:
        """A disabled client keeps checking in but takes no work; nor does one outside its
        schedule or whose user is at it (``status_reason``)."""
        return self.status == "online" and self.status_reason is None

    def healthy(self) -> tuple[bool, str]:
        """Healthy while check-ins succeed; a fresh agent gets a few intervals to get there."""
        window = 3 * self.checkin_interval
        now = time.monotonic()
        if self.last_checkin_at is None:
            if now - self.started_at < window:
                return True, "starting"
            return False, f"no check-in since start: {self.last_error or 'no answer yet'}"
        if now - self.last_checkin_at > window:
            return False, f"last check-in {int(now - self.last_checkin_at)} s ago: " \
                          f"{self.last_error or 'no answer'}"
        return True, "ok"

    def as_json(self, sections: Mapping[str, Section | None] | None = None) -> dict[str, Any]:
        """The page, with each of ``sections`` (a part's status; None: not running here)."""
        ok, reason = self.healthy()
        return {
            "name": self.name,
            "client_id": self.client_id,
            "hub": self.hub,
            "status": self.status,
            "accepting_work": self.accepting_work,
            "status_reason": self.status_reason,
            "healthy": ok,
            "health": reason,
            "last_checkin": self.last_checkin,
            "checkins": self.checkins,
            "checkin_interval": self.checkin_interval,
            "last_error": self.last_error,
            "lanes": {"count": self.lanes, "busy": self.busy},
            "version": VERSION,
            "pid": os.getpid(),
            "started": self.started,
            "uptime": round(time.monotonic() - self.started_at, 1),
            **{name: section() if section is not None else None
               for name, section in (sections or {}).items()},
            "refusals": refusals.counts(),  # core/refusals.py: what this agent turned away
        }
