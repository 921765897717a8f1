"""What the agent's ``/metrics`` shows, read from its parts when a scraper asks.

Nothing here counts on its own: the parts already keep what is shown (``AgentState``, the
reporter's runs by outcome, the outbox, the transfer service's bytes). A ``Reading`` is
plain numbers; ``agent/exporter.py`` turns one into the Prometheus page, and is loaded on
the first scrape only, so an agent nobody scrapes never loads prometheus_client.

The transfer speed is the bytes moved since the previous reading over the time between
them, once at least ``SPEED_SPAN`` has passed (a faster scrape sees the last speed
again): one scraper's interval. For a steady curve, graph
``rate(ferry_agent_transfer_received_bytes_total[1m])`` instead.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from agent.buckets.pool import BucketPool
from agent.outbox import Outbox
from agent.state import AgentState
from protocol import BucketKind

SPEED_SPAN = 1.0  # seconds


@dataclass(frozen=True)
class Reading:
    """The agent's figures at one moment (ages in seconds; None: nothing to be old)."""

    lanes: int
    held: dict[str, int]  # buckets held, by kind
    runs: dict[str, int]  # task runs ended since the start, by outcome
    received_bytes: int | None  # None: this agent has no transfer service
    sent_bytes: int | None
    receive_speed: float  # bytes per second
    send_speed: float
    outbox_items: int
    outbox_oldest_age: float | None
    last_checkin_age: float | None
    checkins: int
    hub_switches: int
    uptime: float

    @property
    def lanes_busy(self) -> int:
        return self.held.get(str(BucketKind.COMPUTE), 0)


class Readings:
    """Reads the figures of one agent's parts (``moved``: the transfer service's bytes in
    and out so far, None without one)."""

    def __init__(self, state: AgentState, pool: BucketPool, outbox: Outbox,
                 moved: Callable[[], tuple[int, int]] | None = None) -> None:
        self.state = state
        self.pool = pool
        self.outbox = outbox
        self.moved = moved
        self._last: tuple[float, int, int] | None = None  # monotonic, bytes in, bytes out
        self._speed = (0.0, 0.0)

    def _speeds(self, now: float, moved: tuple[int, int]) -> tuple[float, float]:
        if self._last is None:
            self._last = (now, *moved)
        span = now - self._last[0]
        if span >= SPEED_SPAN:
            self._speed = (max(moved[0] - self._last[1], 0) / span,
                           max(moved[1] - self._last[2], 0) / span)
            self._last = (now, *moved)
        return self._speed

    async def read(self) -> Reading:
        now = time.monotonic()
        state = self.state
        items, oldest = await self.outbox.backlog()
        moved = self.moved() if self.moved is not None else None
        speeds = self._speeds(now, moved) if moved is not None else (0.0, 0.0)
        held = Counter(str(h.work.kind) for h in self.pool.held.values())
        return Reading(
            lanes=state.lanes, held={str(k): held[str(k)] for k in BucketKind},
            runs=dict(self.pool.reporter.ended),
            received_bytes=moved[0] if moved else None, sent_bytes=moved[1] if moved else None,
            receive_speed=speeds[0], send_speed=speeds[1], outbox_items=items,
            outbox_oldest_age=max(0.0, time.time() - oldest) if oldest is not None else None,
            last_checkin_age=now - state.last_checkin_at if state.last_checkin_at else None,
            checkins=state.checkins, hub_switches=state.hub_switches,
            uptime=now - state.started_at)
