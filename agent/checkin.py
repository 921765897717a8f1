"""The check-in loop: report metrics on the hub's interval, with jitter, and at once when
asked (``soon``: why the agent takes no work changed)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import structlog

from agent.hubclient import HubClient
from agent.identity import Identity
from agent.metrics import MetricsSampler
from agent.notify import Progress
from agent.state import AgentState, now_iso
from core.errors import ApiError
from core.lifecycle import until_stopped
from core.version import VERSION
from protocol import CheckinRequest, ShareInfo

log = structlog.get_logger("agent.checkin")

JITTER = 0.1  # ±10 % so a fleet restarted together does not check in together
FINISH_ON_STOP = 5.0  # seconds a check-in already sent may take to finish when stopping


class CheckinLoop:
    def __init__(self, hub: HubClient, identity: Identity, sampler: MetricsSampler,
                 state: AgentState,
                 on_shares: Callable[[list[ShareInfo]], None] | None = None,
                 progress: Progress | None = None) -> None:
        self.hub = hub
        self.progress = progress or Progress()  # the watchdog asks it (agent/notify.py)
        self.identity = identity
        self.sampler = sampler
        self.state = state
        self.on_shares = on_shares
        self._soon = asyncio.Event()

    def request(self) -> CheckinRequest:
        return CheckinRequest(metrics=self.sampler.sample(), host_id=self.identity.host_id,
                              code=self.identity.code, os=self.identity.os,
                              username=self.identity.username, version=VERSION,
                              lanes=self.state.lanes, status_reason=self.state.status_reason)

    def soon(self) -> None:
        """Check in now rather than at the end of the interval."""
        self._soon.set()

    async def once(self) -> None:
        try:
            answer = await self.hub.checkin(self.request())
        except ApiError as exc:
            # a 4xx other than 401: our request is wrong; say so and try next interval
            self.state.last_error = str(exc)
            log.error("hub refused check-in", error=str(exc))
            return
        previous = self.state.status
        self.state.client_id = answer.client_id
        self.state.status = str(answer.status)
        self.state.checkin_interval = answer.checkin_interval
        self.state.last_checkin = now_iso()
        self.state.last_checkin_at = time.monotonic()
        self.state.last_error = None
        self.state.checkins += 1
        if previous != self.state.status:
            log.info("client status", status=self.state.status, client_id=answer.client_id)
        if self.on_shares is not None:
            self.on_shares(answer.shares)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._soon.clear()  # a change told from here on is in this check-in or the next
            # a check-in may sit in retries while the hub is down: stopping must not wait for it
            step = asyncio.ensure_future(self.once())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({step, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not step.done():
                # a check-in on the wire finishes first, so the hub cannot record it after
                # the goodbye that follows; one waiting to retry an absent hub is dropped
                if self.hub.in_flight:
                    await asyncio.wait({step}, timeout=FINISH_ON_STOP)
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
                return
            step.result()
            self.progress.beat()
            delay = self.state.checkin_interval * random.uniform(1 - JITTER, 1 + JITTER)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until_stopped(stop, self._soon.wait()), timeout=delay)
