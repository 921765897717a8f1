"""The buckets this agent holds: each run on the runner of its kind, ended, handed back.

A claim's buckets are held at once (``hold``) and each runs as a task of the pool's
``Supervisor``. Every task's start and end goes to the outbox as it happens (the
runners write them); when a bucket's run is over the pool hands back what a stopped
bucket never started and writes the bucket's end, for every kind alike. A bucket
whose lease was lost reports nothing: the hub refuses it.

Heartbeat answers (``apply``) carry aborts (stop that task), pauses (hand back what
has not started) and lost leases (stop: the work was given to someone else).
``drain`` starts nothing new, lets running tasks finish until a deadline, then stops
them; everything unfinished is handed back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import structlog

from agent.buckets.base import Held, Runner, Stop
from agent.buckets.reports import Reporter
from agent.state import AgentState
from core.tasks import Supervisor
from protocol import BucketKind, BucketWork, ClaimRequest, HeartbeatResponse

log = structlog.get_logger("agent.work")

STOP_WAIT = 60.0  # seconds stopped buckets get to end once the drain deadline has passed


class BucketPool:
    """Holds buckets for ``runners`` (one per kind); ``state.busy`` counts them."""

    def __init__(self, runners: Iterable[Runner], reporter: Reporter, state: AgentState) -> None:
        self.runners: dict[BucketKind, Runner] = {runner.kind: runner for runner in runners}
        self.reporter = reporter
        self.state = state
        self.held: dict[str, Held] = {}
        self.heartbeat_interval = 5.0  # seconds; the hub's word, with every claim and heartbeat
        self.holding = asyncio.Event()  # set while any bucket is held
        self.idle = asyncio.Event()  # set while none is
        self.idle.set()
        self._freed = {kind: asyncio.Event() for kind in self.runners}
        self._runs = Supervisor("buckets")
        self._running: dict[str, asyncio.Task[None]] = {}
        self._draining = False

    # -- what is free
    def free(self, kind: BucketKind) -> ClaimRequest:
        """What the runner of ``kind`` can take now, as a claim asks for it."""
        return self.runners[kind].free([h for h in self.held.values() if h.work.kind == kind])

    def freed(self, kind: BucketKind) -> asyncio.Event:
        """Set when something of ``kind`` may have come free (cleared by who waits)."""
        return self._freed[kind]

    def wake(self, kind: BucketKind) -> None:
        """Something of ``kind`` came free outside the pool (lanes came with an enrollment)."""
        self._freed[kind].set()

    # -- holding
    def hold(self, bucket: BucketWork, *, unavailable: bool = False) -> None:
        """Hold ``bucket`` and start its run on the runner of its kind (``unavailable``:
        it came as the agent stopped taking work, and goes back unstarted)."""
        runner = self.runners.get(bucket.kind)
        if runner is None:
            log.error("hub gave a bucket of a kind this agent does not run", bucket=bucket.id,
                      kind=str(bucket.kind))
            return
        if self._runs.closed:  # after the drain: the stop's reset hands it back
            log.warning("a bucket came as the agent stopped; not started", bucket=bucket.id)
            return
        # a claim answered as the drain began: its tasks go back unstarted
        held = Held(bucket, stopping=Stop.DRAINING if self._draining else
                    Stop.UNAVAILABLE if unavailable else None)
        self.held[bucket.id] = held
        self.holding.set()
        self.idle.clear()
        self.state.busy = len(self.held)
        self._running[bucket.id] = self._runs.spawn(self._run(held, runner),
                                                    name=f"bucket-{bucket.id}")

    async def _run(self, held: Held, runner: Runner) -> None:
        bucket = held.work
        started = time.time()
        try:
            taken = await runner.run(held, self.reporter)
            if taken is None:
                return
            if held.stopping and not held.lost:
                self.reporter.handed_back(bucket, bucket.tasks[taken:], held.stopping)
            self.reporter.tidy(bucket)
            if not held.lost:
                self.reporter.bucket_ended(bucket, started)
        except Exception:
            log.exception("bucket failed in the agent; handing back what it did not run",
                          bucket=bucket.id)
            if not held.lost:
                self.reporter.handed_back(
                    bucket, [t for t in bucket.tasks if t.id not in held.ended], "the agent failed")
        finally:
            self.held.pop(bucket.id, None)
            self._running.pop(bucket.id, None)
            self.state.busy = len(self.held)
            if not self.held:
                self.holding.clear()
                self.idle.set()
            self._freed[bucket.kind].set()

    # -- what the hub says
    def apply(self, answer: HeartbeatResponse) -> None:
        """A heartbeat's answer: lost leases stop their buckets, aborted tasks stop (or
        never start), paused jobs start no more tasks."""
        self.heartbeat_interval = answer.heartbeat_interval
        for bucket_id in answer.lost:
            held = self.held.get(bucket_id)
            if held is not None:
                log.warning("lease lost; stopping the bucket", bucket=bucket_id)
                held.stopping = Stop.LOST
                self.runners[held.work.kind].stop(held, "lease lost")
        abort = set(answer.abort)
        for held in self.held.values():
            mine = {t.id for t in held.work.tasks} & abort
            held.aborted |= mine  # those not started yet are skipped
            for task_id in mine:  # the one running (if any) is stopped
                self.runners[held.work.kind].stop(held, "aborted at the hub", task_id)
            if held.work.job_id in answer.paused and not held.stopping:
                held.stopping = Stop.PAUSED

    def hand_back(self, reason: str) -> int:
        """The agent takes no work now (its schedule or NIMBY says so, ``reason``): every
        held bucket stops at once; its running task goes back aborted and the rest
        unstarted, with no attempt spent on either. Returns how many buckets it stopped."""
        stopped = [held for held in self.held.values() if not held.stopping]
        for held in stopped:
            held.stopping = Stop.UNAVAILABLE
            self.runners[held.work.kind].stop(held, reason)
        return len(stopped)

    # -- stop
    async def drain(self, deadline: float, forced: asyncio.Event) -> None:
        """Start nothing new, let running tasks finish until ``deadline`` (monotonic) or
        ``forced``, then stop them; everything unfinished is handed back to the hub. Then
        the runners close, and a run that still would not end is cancelled."""
        self._draining = True
        for held in self.held.values():
            held.stopping = held.stopping or Stop.DRAINING
        pending: set[asyncio.Future[Any]] = set(self._running.values())
        if pending:
            log.info("draining", buckets=len(pending))
        force = asyncio.ensure_future(forced.wait())
        try:
            while pending and not forced.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                done, _ = await asyncio.wait(pending | {force}, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                pending -= done
        finally:
            force.cancel()
        if pending:  # past the deadline: stop them; the buckets report them handed back
            for held in list(self.held.values()):
                self.runners[held.work.kind].stop(held, "the agent is stopping")
            await asyncio.wait(pending, timeout=STOP_WAIT)
        for runner in self.runners.values():
            await runner.close()
        await self._runs.close(deadline=5.0)
