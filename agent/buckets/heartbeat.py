"""The heartbeat loop: while the agent holds buckets, renew their leases on the hub's
interval, and apply what the answers carry (aborts, pauses, lost leases).

A heartbeat also carries what the hub shows live: running transfers' bytes and running
tasks' output since the last one; its answer, running transfer jobs' speed limits. It
runs until the agent has drained (leases must be renewed while work finishes); a failed
heartbeat is only logged: the leases run on until the hub is back, and the next one
renews them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from agent.buckets.pool import BucketPool
from agent.hubclient import HubClient, Retryable
from core.errors import ApiError
from core.lifecycle import until_stopped
from protocol import HeartbeatRequest, Progress, TaskProgress, routes

log = structlog.get_logger("agent.work")

ATTEMPTS = 3  # tries of one heartbeat before waiting for the next
# tasks' progress news in one heartbeat (HeartbeatRequest.task_progress; more lanes than
# that: the others' news is left out of the live view, and their end reports carry it all)
MAX_TASKS = 256


class HeartbeatLoop:
    """Heartbeats ``pool``'s buckets to ``hub``. ``progress`` gives running transfers'
    bytes, ``output`` running tasks' fresh output, ``task_progress`` what running compute
    tasks said in progress lines (each: none when absent; ``task_progress`` reads logs,
    so it runs in a thread)."""

    def __init__(self, hub: HubClient, pool: BucketPool,
                 progress: Callable[[], dict[str, Progress]] | None = None,
                 output: Callable[[], dict[str, str]] | None = None,
                 task_progress: Callable[[], dict[str, TaskProgress]] | None = None,
                 speed_limits: Callable[[dict[str, int]], None] | None = None) -> None:
        self.hub = hub
        self.pool = pool
        self.progress = progress
        self.output = output
        self.task_progress = task_progress
        self.speed_limits = speed_limits  # hears running transfer jobs' speed limits

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set and no bucket is held any more."""
        pool = self.pool
        while not (stop.is_set() and not pool.held):
            if not pool.held:
                await until_stopped(stop, pool.holding.wait())
                continue
            await asyncio.sleep(pool.heartbeat_interval)
            held = list(pool.held)
            if not held:
                continue
            said = await asyncio.to_thread(self.task_progress) if self.task_progress else {}
            try:
                answer = await self.hub.call(
                    routes.HEARTBEAT, HeartbeatRequest(
                        buckets=held, progress=self.progress() if self.progress else {},
                        logs=self.output() if self.output else {},
                        task_progress=dict(list(said.items())[:MAX_TASKS])),
                    attempts=ATTEMPTS)
            except (Retryable, ApiError) as exc:
                log.warning("heartbeat failed; leases run on until the hub is back",
                            error=str(exc))
                continue
            pool.apply(answer)
            if self.speed_limits is not None and answer.speed_limits:
                self.speed_limits(answer.speed_limits)
