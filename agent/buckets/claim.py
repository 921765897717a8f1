"""The claim loop: ask the hub for work whenever a runner has something free.

One claimer per kind of bucket the agent runs, each long-polling on its own: a
claim waiting for transfers never keeps a free lane idle, and a docker slot never
waits for a render. A claimer with nothing free waits until the pool says something
came free; a disabled agent (the hub's word, in its check-ins) claims nothing and
looks again every second, as does one that takes no work now (its schedule or NIMBY:
``AgentState.status_reason``; buckets of a claim made before go back unstarted).
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog

from agent.buckets.pool import BucketPool
from agent.hubclient import HubClient
from agent.state import AgentState
from core.errors import ApiError
from core.lifecycle import until_stopped
from protocol import BucketKind, routes

log = structlog.get_logger("agent.work")

CLAIM_WAIT = 20.0  # seconds a claim may wait at the hub for work
REFUSED_PAUSE = 5.0  # seconds before claiming again after the hub refused a claim


class ClaimLoop:
    """Claims buckets from ``hub`` for ``pool``'s runners and hands them to the pool."""

    def __init__(self, hub: HubClient, pool: BucketPool, state: AgentState) -> None:
        self.hub = hub
        self.pool = pool
        self.state = state

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: a claim cut short by it is dropped (the stop's reset hands back
        whatever the hub leased meanwhile)."""
        await asyncio.gather(*(self._claimer(stop, kind) for kind in self.pool.runners))

    async def _claimer(self, stop: asyncio.Event, kind: BucketKind) -> None:
        freed = self.pool.freed(kind)
        while not stop.is_set():
            free = self.pool.free(kind)
            nothing = not (free.lanes or free.slots or free.docker)
            if nothing or not self.state.accepting_work:
                freed.clear()
                # nothing free: until something is; disabled: look again in a second
                await until_stopped(stop, freed.wait() if nothing else asyncio.sleep(1.0))
                continue
            try:
                # the hub answers within the wait: keep it well inside the request timeout,
                # or an answer (and its leases) could be lost to our own time-out
                timeout = self.hub.request_timeout
                wait = min(CLAIM_WAIT, max(timeout - 5.0, timeout / 2))
                answer = await until_stopped(stop, self.hub.call(
                    routes.CLAIM, msgspec.structs.replace(free, wait=wait)))
            except ApiError as exc:
                log.error("hub refused the claim", error=str(exc))
                await until_stopped(stop, asyncio.sleep(REFUSED_PAUSE))
                continue
            if answer is None:  # stopping
                return
            self.pool.heartbeat_interval = answer.heartbeat_interval
            for bucket in answer.buckets:  # asked for while the agent still took work
                self.pool.hold(bucket, unavailable=self.state.status_reason is not None)
