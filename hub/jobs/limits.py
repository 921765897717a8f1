"""Limits and ``max_lanes``: how many buckets of a job may be leased at once (issue 18).

A ``Limit`` (name, max) belongs to an organization; a job of that organization names
limits (``"limits": ["nuke", "arnold"]``), and may cap itself (``"max_lanes": 4``).

What is counted is leased buckets, not tasks: a bucket runs its tasks one after the
other in one lane, so it holds one of a limit's slots (one licence) and one of its job's
lanes whatever its size. The count is derived from the buckets table each time it is
needed, never kept beside it: a bucket that ends, or whose lease is lost (expired, agent
restarted, handed back), is no longer ``leased`` and frees its slot with nothing to
decrement or drift.

Across hub processes on one PostgreSQL database, a claim that may lease a limited or
capped job first locks the rows it counts against (``Room.of``): the limits (``FOR NO
KEY UPDATE``, which job creation's foreign-key checks do not wait for), then the capped
jobs, each in id order so claims never deadlock on them. The counts are read after the
locks, so under READ COMMITTED they include every lease a claim that held them before
has committed; two claims never both take a limit's last slot. SQLite has one writer.
A claim with no limited or capped job among those it may take locks and counts nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import Invalid
from hub.storage.models import Bucket, Job, Limit, job_limits

MAX = 1_000_000  # a limit's max, and a job's max_lanes, at most

_LIMITS_OF = (select(job_limits.c.job_id, Limit.id, Limit.name, Limit.max)
              .join(Limit, Limit.id == job_limits.c.limit_id)
              .where(job_limits.c.job_id.in_(bindparam("ids", expanding=True))))
_LOCK_LIMITS = _LIMITS_OF.order_by(Limit.id).with_for_update(of=Limit, key_share=True)
_LOCK_JOBS = (select(Job.id).where(Job.id.in_(bindparam("ids", expanding=True)))
              .order_by(Job.id).with_for_update(key_share=True))
# buckets leased now, by limit and by job
_IN_USE = (select(job_limits.c.limit_id, func.count(Bucket.id))
           .join(Bucket, Bucket.job_id == job_limits.c.job_id)
           .where(Bucket.status == "leased",
                  job_limits.c.limit_id.in_(bindparam("ids", expanding=True)))
           .group_by(job_limits.c.limit_id))
_LANES_IN_USE = (select(Bucket.job_id, func.count(Bucket.id))
                 .where(Bucket.status == "leased",
                        Bucket.job_id.in_(bindparam("ids", expanding=True)))
                 .group_by(Bucket.job_id))


async def limits_for(conn: AsyncConnection, organization: str | None, names: list[str]
                     ) -> list[str]:
    """The ids of ``organization``'s limits ``names`` (in order, each once). One that
    does not exist, or is another organization's, is the same ``Invalid`` naming
    ``limits[i]``: nothing to probe."""
    wanted = list(dict.fromkeys(names))
    org = Limit.organization_id.is_(None) if organization is None \
        else Limit.organization_id == organization
    found = dict((await conn.execute(select(Limit.name, Limit.id).where(
        org, Limit.name.in_(wanted)))).tuples().all()) if wanted else {}
    for name in wanted:
        if name not in found:
            raise Invalid("unknown_limit", f"your organization has no limit '{name}'",
                          field=f"limits[{names.index(name)}]")
    return [found[name] for name in wanted]


def in_use(conn: Connection, limit_ids: Iterable[str]) -> dict[str, int]:
    """Buckets leased now of the jobs that name each limit (0 for none)."""
    ids = list(limit_ids)
    used: dict[str, int] = dict(conn.execute(_IN_USE, {"ids": ids}).tuples().all()) if ids else {}
    return {i: int(used.get(i, 0)) for i in ids}


def lanes_in_use(conn: Connection, job_ids: Iterable[str]) -> dict[str, int]:
    """Buckets leased now of each job (0 for none)."""
    ids = list(job_ids)
    used = dict(conn.execute(_LANES_IN_USE, {"ids": ids}).tuples().all()) if ids else {}
    return {i: int(used.get(i, 0)) for i in ids}


@dataclass(frozen=True)
class Held:
    """One limit a job names, with its figures now."""

    id: str
    name: str
    max: int
    used: int


def limits_of(conn: Connection, job_ids: list[str], stmt: Select[Any] = _LIMITS_OF
              ) -> dict[str, list[Held]]:
    """The limits each of ``job_ids`` names, with how many buckets hold each now."""
    rows = conn.execute(stmt, {"ids": job_ids}).all() if job_ids else []
    used = in_use(conn, {r.id for r in rows})
    held: dict[str, list[Held]] = defaultdict(list)
    for r in rows:
        held[r.job_id].append(Held(r.id, r.name, r.max, used[r.id]))
    return held


@dataclass
class Room:
    """How many more buckets each job of a claim may take, as leases are made in it."""

    limits: dict[str, list[str]] = field(default_factory=dict)  # job -> limit ids
    free: dict[str, int] = field(default_factory=dict)  # limit -> slots left
    lanes: dict[str, int] = field(default_factory=dict)  # capped job -> lanes left

    @classmethod
    def of(cls, conn: Connection, limited: list[str], capped: dict[str, int]) -> Room:
        """The room of the ``limited`` jobs (those naming a limit) and the ``capped`` ones
        (job -> max_lanes), with the rows counted against locked until the claim commits."""
        room = cls()
        for job, held in limits_of(conn, limited, _LOCK_LIMITS).items():
            room.limits[job] = [h.id for h in held]
            room.free.update({h.id: h.max - h.used for h in held})
        if capped:
            conn.execute(_LOCK_JOBS, {"ids": sorted(capped)}).all()
            used = lanes_in_use(conn, capped)
            room.lanes = {j: n - used[j] for j, n in capped.items()}
        return room

    def allows(self, job_id: str) -> bool:
        """Whether one more bucket of the job fits in its limits and its max_lanes."""
        return self.lanes.get(job_id, 1) > 0 and \
            all(self.free[i] > 0 for i in self.limits.get(job_id, ()))

    def took(self, job_id: str) -> None:
        """A bucket of the job was just leased."""
        if job_id in self.lanes:
            self.lanes[job_id] -= 1
        for i in self.limits.get(job_id, ()):
            self.free[i] -= 1


def waiting(held: list[Held], max_lanes: int | None, lanes: int) -> str | None:
    """Why a job with queued tasks takes no more lanes now (a full limit, or its
    max_lanes reached), in words; None when it may."""
    for h in held:
        if h.used >= h.max:
            return f"waiting for limit '{h.name}' ({h.used} of {h.max} in use)"
    if max_lanes is not None and lanes >= max_lanes:
        return f"waiting for max_lanes ({lanes} of {max_lanes} in use)"
    return None
