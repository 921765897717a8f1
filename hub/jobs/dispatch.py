"""Dispatch: agents claim buckets of leased tasks; heartbeats renew leases; lost leases
put tasks back in the queue.

A claim names the agent's free lanes and may wait (long-poll) until work
appears. Each free lane gets at most one bucket: up to ``bucket_size`` queued
tasks of the highest-priority job the agent may run that has tasks to take now (a job
waiting for another job's items may have none yet: ``dependencies.py``). When work is scarce, an
agent gets a share of it in proportion to its ``benchmark`` among the agents
that asked recently (no benchmark counts as 1).

Several hub processes may share one PostgreSQL database: nothing here depends on
what one process alone has seen. Leases take rows with ``FOR UPDATE SKIP LOCKED``
(``leases.py``), so two processes never lease one task; the agents that asked
recently are kept in the database (``claimers.py``); and a process that sees work
appear wakes the claims waiting in the others (``hub/wakeup.py``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from core.tasks import FailureHook, Supervisor
from hub.counting import HubCounters
from hub.jobs import reasons
from hub.jobs import status as st
from hub.jobs.claimers import Claimers
from hub.jobs.dependencies import ITEMS_OF, WAITS_FOR_A_JOB
from hub.jobs.docker import follow_logs, next_runs
from hub.jobs.filters import targets_match
from hub.jobs.kind import Lease, Signing
from hub.jobs.leases import release
from hub.jobs.limits import Room
from hub.jobs.progress import follow_progress
from hub.jobs.queues import QueueStatus
from hub.jobs.registry import KINDS
from hub.security import TokenService
from hub.storage.db import Database
from hub.storage.models import (
    Bucket,
    Client,
    Job,
    Node,
    Queue,
    ReportKey,
    Task,
    iso,
    job_limits,
    new_id,
    utcnow,
)
from hub.wakeup import WorkSignal
from protocol import BucketKind, BucketWork, HeartbeatResponse, Progress, TaskProgress

log = structlog.get_logger("hub.dispatch")

RECHECK = 1.0  # seconds: a waiting claim looks again even unwoken (a notice may be lost)
SWEEP_EVERY = 1.0  # seconds between looks for expired leases
KEYS_KEPT = timedelta(days=7)  # report keys older than this are forgotten (hourly)


# built once: claims run them for every bucket
# (os and metrics: what the job's filters compare, as of the agent's latest check-in)
_AGENT = (select(Client.id, Client.site_id, Client.code, Client.tags, Client.os,
                 Client.metrics, Client.disabled, Client.benchmark, Node.organization_id,
                 Node.collaboration_id)
          .outerjoin(Node, Node.id == Client.node_id).where(Client.id == bindparam("id")))
_LANES = select(Client.id).where(Client.parent_id == bindparam("agent"),
                                 Client.id.in_(bindparam("ids", expanding=True)),
                                 Client.disabled.is_(False))
# jobs an agent may take buckets of from the queue: active, with queued tasks, and of a
# kind whose rule lets an agent of this node run them (JobKind.queued_for: a compute job
# where its organization may use the agent, a transfer job wherever its targets name), in
# an open queue, and waiting for no job that is not done (hub/jobs/dependencies.py);
# ``items_of``: the job whose items it waits for, while that is not done; with what bounds
# how many of its buckets run at once (limits.py)
_QUEUED = select(Job.id, Job.kind, Job.spec, ITEMS_OF.label("items_of"), Job.max_lanes,
                 exists().where(job_limits.c.job_id == Job.id).label("limited")).join(
    Queue, Queue.id == Job.queue_id).where(
    Job.status.in_(st.ACTIVE), Queue.status == QueueStatus.OPEN, ~WAITS_FOR_A_JOB,
    or_(*(rule for kind in KINDS.values()
          if (rule := kind.queued_for(bindparam("org"), bindparam("collab"))) is not None)),
    exists().where(Task.job_id == Job.id, Task.status == st.TaskStatus.QUEUED))
_QUEUED_BY_JOB = (select(Task.job_id, func.count())
                  .where(Task.job_id.in_(bindparam("ids", expanding=True)),
                         Task.status == st.TaskStatus.QUEUED).group_by(Task.job_id))
# the jobs that still have queued tasks, best first: the queue's priority first, then the
# job's, then its age (issue 18)
_BEST_JOBS = (select(Job.id).join(Queue, Queue.id == Job.queue_id)
              .where(Job.id.in_(bindparam("ids", expanding=True)),
                     exists().where(Task.job_id == Job.id,
                                    Task.status == st.TaskStatus.QUEUED))
              .order_by(Queue.priority.desc(), Job.priority.desc(), Job.created, Job.id))
_RUNNING = update(Job).where(Job.id.in_(bindparam("ids", expanding=True)),
                             Job.status.in_(st.ACTIVE)).values(status=st.JobStatus.RUNNING,
                                                               modified=bindparam("now"))
_PROGRESS = update(Task).where(
    Task.id == bindparam("b_id"), Task.bucket_id.in_(bindparam("b_buckets", expanding=True)),
    Task.status.in_(st.RUNNING_TASK)).values(size=bindparam("b_size"),
                                              transferred=bindparam("b_done"))
_LEASE_TASKS = update(Task).where(Task.id.in_(bindparam("ids", expanding=True)),
                                  Task.status == st.TaskStatus.QUEUED).values(
    status=st.TaskStatus.BOOTING, bucket_id=bindparam("bucket"), client_id=bindparam("agent"),
    lane_id=bindparam("lane"), modified=bindparam("now"))


class Queued(NamedTuple):
    """A job an agent may take a bucket of now: its kind, its stored spec, the job whose
    items it waits for, if any, while that job is not done, and whether limits or its
    max_lanes bound how many of its buckets run at once (``limits.py``)."""

    kind: BucketKind
    spec: dict[str, Any]
    items_of: str | None = None
    max_lanes: int | None = None
    limited: bool = False


class Dispatcher:
    """Claims, heartbeats and lease ends of one hub process; owns the lease sweeper.

    ``work``: the process's news of work (``hub/wakeup.py``), which waiting claims wait on.
    ``on_failure``: told when the sweeper dies of something it did not expect (a hub
    whose leases never expire must not go on as if they did). ``counters``: the hub's
    metrics (tasks leased, claim times, expired leases; ``hub/counting.py``)."""

    def __init__(self, db: Database, work: WorkSignal, *, lease: float, heartbeat: float,
                 wait_max: float, ticket_key: Ed25519PrivateKey | None = None,
                 tokens: TokenService | None = None, on_failure: FailureHook | None = None,
                 counters: HubCounters | None = None) -> None:
        self.db = db
        self.counters = counters or HubCounters()
        self.work = work
        # signs the tickets of transfer tasks; issues the tokens of docker runs
        self.signing = Signing(ticket_key, tokens)
        self.lease = timedelta(seconds=lease)
        self.heartbeat_interval = heartbeat
        self.wait_max = wait_max
        self.claimers = Claimers(shared=not db.is_sqlite)
        self._tasks = Supervisor("dispatcher", on_failure=on_failure)
        self._closing = False

    # -- lifecycle
    async def start(self) -> None:
        """Give every live lease a full period again: agents could not heartbeat while the
        hub was down, and their work must not be taken from them for that."""
        async with self.db.write() as conn:
            await conn.execute(update(Bucket).where(Bucket.status == "leased").values(
                leased_until=utcnow() + self.lease))
        self._tasks.spawn(self._sweep_forever(), name="lease-sweeper")

    async def close(self, deadline: float = 5.0) -> None:
        """The hub stops: claims waiting for work answer now, with none (agents cannot
        heartbeat while the hub is down, so no lease may expire meanwhile either). Safe
        to call twice; a closer cancelled meanwhile stays cancelled."""
        self._closing = True
        self.work.wake()
        await self._tasks.close(deadline)

    def notify(self) -> None:
        """Work may have appeared (a lease ended, tasks went back to the queue)."""
        self.work.notify()

    # -- claims
    async def claim(self, client_id: str, lanes: list[str], wait: float, slots: int = 0,
                    gone: Callable[[], bool] = lambda: False, docker: int = 0
                    ) -> list[BucketWork]:
        """Buckets for free lanes and slots, waiting up to ``wait`` for work. A claim whose
        agent hung up (``gone``) leases nothing: an agent killed while its claim waited
        must not be handed work that would sit until its lease runs out."""
        deadline = time.monotonic() + min(wait, self.wait_max)
        while True:
            self.work.clear()
            if gone() or self._closing:
                return []
            began = time.perf_counter()
            buckets = await self.db.run(self._claim_once, client_id, lanes, slots, docker)
            self.counters.claim_seconds.observe(time.perf_counter() - began)
            self.counters.tasks_leased.inc(sum(len(b.tasks) for b in buckets))
            left = deadline - time.monotonic()
            if buckets or left <= 0:
                return buckets
            await self.work.wait(min(left, RECHECK))

    def _claim_once(self, conn: Connection, client_id: str, lanes: list[str], slots: int,
                    docker: int = 0) -> list[BucketWork]:
        """One try at a claim: one transaction of ``Database.run``. Compute buckets go to
        free lanes, transfer buckets to free transfer slots: a transfer never holds a lane
        that a render could use, nor waits for one. Docker runs go to free docker slots of
        a node of their organization in their collaboration."""
        now = utcnow()
        agent = conn.execute(_AGENT, {"id": client_id}).first()
        if agent is None or agent.disabled:
            return []
        if docker:  # only a node of an organization in a collaboration runs docker jobs
            runs = self._lease_runs(conn, client_id, agent, docker, now) \
                if agent.organization_id and agent.collaboration_id else []
            if runs or not (lanes or slots):
                return runs
        free = self._free_lanes(conn, client_id, lanes)
        weight = agent.benchmark if agent.benchmark is not None and agent.benchmark > 0 else 1.0
        if lanes or not slots:  # a claim for transfer slots alone says nothing of lanes
            self.claimers.remember(conn, client_id, weight, len(free), agent.organization_id,
                                   agent.collaboration_id)
        if not free and not slots:
            return []
        eligible = self._eligible_jobs(conn, agent)
        room = Room.of(conn, [j for j, q in eligible.items() if q.limited],
                       {j: q.max_lanes for j, q in eligible.items() if q.max_lanes is not None}
                       ) if any(q.limited or q.max_lanes for q in eligible.values()) else None
        compute = {j: q for j, q in eligible.items() if q.kind == BucketKind.COMPUTE}
        moving = {j: q for j, q in eligible.items() if q.kind == BucketKind.TRANSFER}
        work = []
        if free and compute:
            share = self._share(conn, agent, weight, compute, len(free))
            for lane in free[:share]:
                bucket = self._lease_bucket(conn, client_id, lane, compute, now, room)
                if bucket is None:
                    break
                work.append(bucket)
        for _ in range(slots if moving else 0):
            bucket = self._lease_bucket(conn, client_id, None, moving, now, room)
            if bucket is None:
                break
            work.append(bucket)
        if work:  # a lease only ever makes a job run: no need to count its tasks
            conn.execute(_RUNNING, {"ids": list({b.job_id for b in work}), "now": now})
        return work

    def _lease_runs(self, conn: Connection, client_id: str, agent: Any, n: int,
                    now: datetime) -> list[BucketWork]:
        """Docker runs, one to a bucket (each its own lease, abort and report)."""
        rows = next_runs(conn, agent.organization_id, agent.collaboration_id, n)
        if not rows:
            return []
        kind = KINDS[BucketKind.DOCKER]
        work = [kind.bucket(conn, self._grant(conn, client_id, None, row.job_id, [row], now),
                            row.spec, [row])
                for row in rows]
        conn.execute(_RUNNING, {"ids": list({b.job_id for b in work}), "now": now})
        return work

    def _free_lanes(self, conn: Connection, client_id: str, lanes: list[str]
                          ) -> list[str]:
        """The agent's own, enabled lanes among those it says are free. The agent knows
        best when a lane is free: its last bucket's end report may still be on the way."""
        mine = {r.id for r in conn.execute(_LANES, {"agent": client_id, "ids": lanes})}
        return [lane for lane in dict.fromkeys(lanes) if lane in mine]

    def _eligible_jobs(self, conn: Connection, agent: Any) -> dict[str, Queued]:
        """The queued jobs this agent may take a bucket of: its node may run them, their
        targets name it, and their tasks can run yet."""
        rows = conn.execute(_QUEUED, {"org": agent.organization_id,
                                      "collab": agent.collaboration_id})
        return {r.id: Queued(BucketKind(r.kind), r.spec, r.items_of, r.max_lanes, r.limited)
                for r in rows
                if targets_match(r.spec.get("targets", []), agent)
                and KINDS[BucketKind(r.kind)].ready(r.spec)}

    def _share(self, conn: Connection, agent: Any, weight: float,
               eligible: dict[str, Queued], free: int) -> int:
        """How many of our free lanes to fill: all, unless the work is too little for
        everyone who asked and may run it, then our benchmark's part of it."""
        others = self.claimers.others(conn, agent.id, agent.organization_id,
                                      agent.collaboration_id)
        if not others:
            return free
        queued = (conn.execute(_QUEUED_BY_JOB, {"ids": list(eligible)})).all()
        buckets = sum(math.ceil(int(n) / max(1, int(eligible[j].spec.get("bucket_size", 1))))
                      for j, n in queued)
        demand = free + sum(c.lanes for c in others)
        if buckets >= demand:
            return free
        total = weight + sum(c.weight for c in others)
        return max(1, min(free, math.ceil(buckets * weight / total)))

    def _lease_bucket(self, conn: Connection, client_id: str, lane: str | None,
                      eligible: dict[str, Queued], now: datetime, room: Room | None = None
                      ) -> BucketWork | None:
        """A bucket of the best job that has tasks to take now: for a lane (compute), or a
        transfer slot (None). Its kind says which tasks it takes and what the agent gets
        for them. A job its limits or max_lanes hold back is passed over for the next, as
        is one with no task to take now (another hub process took them between the two
        reads; the items it waits for are not done)."""
        candidates = [j for j in eligible if room is None or room.allows(j)]
        if not candidates:
            return None
        for best in conn.execute(_BEST_JOBS, {"ids": candidates}).scalars().all():
            queued = eligible[best]
            kind = KINDS[queued.kind]
            rows = kind.take(conn, best, queued.spec, queued.items_of)
            if rows:
                if room is not None:
                    room.took(best)
                return kind.bucket(conn, self._grant(conn, client_id, lane, best, rows, now),
                                   queued.spec, rows)
        return None

    def _grant(self, conn: Connection, client_id: str, lane: str | None, job_id: str,
               rows: list[Any], now: datetime) -> Lease:
        """Lease the tasks ``rows`` of a job to the agent, in a new bucket (for ``lane``, or
        a slot: None)."""
        bucket_id, until = new_id(), now + self.lease
        conn.execute(insert(Bucket).values(
            id=bucket_id, job_id=job_id, client_id=client_id, lane_id=lane, status="leased",
            leased_until=until, created=now, task_ids=[r.id for r in rows]))
        conn.execute(_LEASE_TASKS, {"ids": [r.id for r in rows], "bucket": bucket_id,
                                    "agent": client_id, "lane": lane, "now": now})
        return Lease(bucket_id, job_id, lane or "", iso(until) or "", self.signing)

    # -- heartbeats and releases
    async def heartbeat(self, client_id: str, bucket_ids: list[str],
                        progress: dict[str, Progress] | None = None,
                        logs: dict[str, str] | None = None,
                        task_progress: dict[str, TaskProgress] | None = None
                        ) -> HeartbeatResponse:
        return await self.db.run(self._heartbeat, client_id, bucket_ids, progress or {},
                                 logs or {}, task_progress or {})

    def _heartbeat(self, conn: Connection, client_id: str, bucket_ids: list[str],
                   progress: dict[str, Progress], logs: dict[str, str],
                   task_progress: dict[str, TaskProgress]) -> HeartbeatResponse:
        now = utcnow()
        held = [r.id for r in conn.execute(select(Bucket.id).where(
            Bucket.id.in_(bucket_ids), Bucket.client_id == client_id,
            Bucket.status == "leased"))]
        if held:  # one that another hub process released meanwhile stays released
            conn.execute(update(Bucket).where(Bucket.id.in_(held), Bucket.status == "leased")
                         .values(leased_until=now + self.lease))
        if held and progress:  # bytes of running transfers, for the tasks of held buckets
            for task_id, p in progress.items():  # one running transfer per lane at most
                conn.execute(_PROGRESS, {"b_id": task_id, "b_size": p.size,
                                         "b_done": min(p.done, p.size), "b_buckets": held})
        if held and logs:  # output of running tasks: their log_tail, live
            follow_logs(conn, held, logs)
        if held and task_progress:  # what running compute tasks said of their progress
            follow_progress(conn, held, task_progress)
        abort = [r.id for r in conn.execute(select(Task.id).where(
            Task.bucket_id.in_(held), Task.abort_to.is_not(None)))]
        # a paused job, or a job of a paused queue: what runs finishes, nothing new starts
        paused = [r.id for r in conn.execute(
            select(Job.id).join(Bucket, Bucket.job_id == Job.id)
            .outerjoin(Queue, Queue.id == Job.queue_id).where(
                Bucket.id.in_(held), or_(Job.status == st.JobStatus.PAUSED,
                                         Queue.status == QueueStatus.PAUSED)).distinct())]
        # running transfer jobs' speed limits: one changed meanwhile reaches the streams
        limits = {r.id: r.speed_limit or 0 for r in conn.execute(
            select(Job.id, Job.speed_limit).join(Bucket, Bucket.job_id == Job.id).where(
                Bucket.id.in_(held), Job.kind == BucketKind.TRANSFER).distinct())
                  } if held else {}
        lost = [b for b in bucket_ids if b not in set(held)]
        return HeartbeatResponse(lost=lost, abort=abort, paused=paused,
                                 heartbeat_interval=self.heartbeat_interval,
                                 speed_limits=limits)

    async def unsent(self, client_id: str, bucket_ids: list[str]) -> None:
        """Leases whose answer could not be sent: back to the queue, no attempt spent."""
        await self.db.run(lambda conn: release(
            conn, [r.id for r in conn.execute(select(Bucket.id).where(
                Bucket.id.in_(bucket_ids), Bucket.client_id == client_id,
                Bucket.status == "leased"))],
            "returned", utcnow(), "the claim's answer could not be sent", penalty=False))
        self.notify()

    async def reset(self, client_id: str, reason: str, keep: list[str] | None = None) -> int:
        """The agent runs nothing of what it holds: it goes back to the queue. After a
        restart that costs an attempt (the run was lost); after a drain it does not.
        ``keep``: buckets it still runs (containers a restarted agent adopted): their
        leases are renewed instead."""
        released = await self.db.run(self._reset, client_id, reason, keep or [])
        if released:
            self.notify()
        return released

    def _reset(self, conn: Connection, client_id: str, reason: str, keep: list[str]) -> int:
        held = [r.id for r in conn.execute(select(Bucket.id).where(
            Bucket.client_id == client_id, Bucket.status == "leased"))]
        kept = [b for b in held if b in set(keep)]
        if kept:
            conn.execute(update(Bucket).where(Bucket.id.in_(kept)).values(
                leased_until=utcnow() + self.lease))
            held = [b for b in held if b not in set(kept)]
        if reason == "restarted":
            release(conn, held, "lost", utcnow(), "the agent restarted")
        else:
            release(conn, held, "returned", utcnow(), "handed back by a stopping agent",
                    penalty=False)
        return len(held)

    async def sweep(self) -> int:
        with self.counters.counting() as tally:  # the tasks of expired leases end here
            expired = tally.leases_expired = await self.db.run(self._sweep)
        if expired:
            log.warning("leases expired", buckets=expired)
            self.notify()
        return expired

    @staticmethod
    def _sweep(conn: Connection) -> int:
        """Several hub processes sweep: each takes the expired leases no other holds
        (SKIP LOCKED), and one released by another meanwhile is no longer ``leased``."""
        now = utcnow()
        expired = [r.id for r in conn.execute(select(Bucket.id).where(
            Bucket.status == "leased", Bucket.leased_until < now
        ).with_for_update(skip_locked=True))]
        release(conn, expired, "lost", now, "the lease expired")
        return len(expired)

    async def _sweep_forever(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            rounds += 1
            try:
                await self.sweep()
                if rounds % reasons.REFRESH_EVERY == 0:  # why jobs wait, as agents change
                    await self.db.run(reasons.refresh)
                if rounds % 60 == 1 and self.claimers.shared:
                    await self.db.run(self.claimers.forget)
                if rounds % 3600 == 1:
                    await self.db.run(_forget_keys, utcnow() - KEYS_KEPT)
            except Exception:
                log.exception("lease sweep failed")


def _forget_keys(conn: Connection, before: datetime) -> None:
    """An agent resends a report at most until its outbox is empty; a week is ample."""
    conn.execute(delete(ReportKey).where(ReportKey.received < before))
