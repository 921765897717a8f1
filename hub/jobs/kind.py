"""What a kind of job is: the contract compute, transfer and docker jobs each fulfil.

A kind is one module (``compute.py``, ``transfer.py``, ``docker.py``) with its spec,
its creation and its leasing, found by its ``protocol.BucketKind`` in ``registry.py``.
Everything else that touches jobs asks the kind of the job at hand instead of looking
at which keys a body or a stored spec happens to have:

* **creation**: ``create`` checks a body against the kind's spec and stores the job
  and its first tasks, in one transaction;
* **the record**: ``shown`` is what a job record shows of the stored spec;
* **users' writes**: ``write_status``, ``set_destination`` and ``add_tasks``, by the
  rules all kinds share (``writes.py``) unless the kind has its own;
* **leasing**: which jobs an agent may take from the queue (``queued_for``), whether a
  job's tasks can run yet (``ready``), the tasks of one bucket (``take``) and what the
  agent gets for them (``bucket``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import ColumnElement
from sqlalchemy.engine import Connection

from hub.errors import Invalid
from hub.jobs import status as st
from hub.jobs.leases import NEXT_MATCHED_TASKS, NEXT_TASKS
from hub.jobs.writes import add_items, change_status
from hub.runtime import Ctx
from hub.security import TokenService
from protocol import BucketKind, BucketWork


@dataclass(frozen=True)
class Signing:
    """What the dispatcher signs work with: transfer tickets (the agents hold the public
    half of ``tickets``) and the tokens docker runs create child jobs with."""

    tickets: Ed25519PrivateKey | None = None
    tokens: TokenService | None = None


@dataclass(frozen=True)
class Lease:
    """A bucket just leased to an agent, as a kind builds the agent's work for it."""

    bucket_id: str
    job_id: str
    lane_id: str  # "" when it goes to a transfer or docker slot, not a lane
    leased_until: str  # as the wire shows times
    signing: Signing


class JobKind(ABC):
    """One kind of job. Its module holds one instance, registered in ``registry.py``."""

    kind: ClassVar[BucketKind]
    # the keys of a creation body that ask for this kind (``registry.kind_of``)
    markers: ClassVar[tuple[str, ...]]

    # -- creation and the record
    @abstractmethod
    async def create(self, ctx: Ctx, body: Any) -> str:
        """Check ``body`` against this kind's spec and store the job with its first
        tasks; the job's id. Refusals name the field they are about."""

    @abstractmethod
    def shown(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The fields of a job record that show this kind's stored ``spec`` (the record's
        other kind-specific fields are None)."""

    # -- users' writes, inside the caller's transaction
    async def write_status(self, conn: Any, ctx: Ctx, job: Any, wanted: str) -> None:
        """A user writes ``wanted`` (one of ``status.JOB_WRITABLE``) to ``job``."""
        if wanted == st.JobStatus.PENDING:
            raise Invalid("invalid_status", "'pending' resends a transfer; compute jobs have "
                          "no destination to reset", field="status")
        await change_status(conn, job.id, job.status, wanted, ctx)

    async def set_destination(self, conn: Any, ctx: Ctx, job: Any, path: str) -> None:
        """A user writes where the job's files land (``destination_path``)."""
        raise Invalid("read_only", "'destination_path' belongs to transfer jobs",
                      field="destination_path")

    async def add_tasks(self, conn: Any, ctx: Ctx, job: Any, tasks: list[Any], allow: bool
                        ) -> dict[str, Any]:
        """More tasks for ``job``: ``{"created": [ids], "retried": [ids]}``. By default
        they are items, as a compute job's are (``writes.add_items``)."""
        return await add_items(conn, ctx, job, tasks, allow)

    # -- leasing, inside a claim's transaction
    def queued_for(self, organization: Any, collaboration: Any) -> ColumnElement[bool] | None:
        """Which jobs of this kind an agent of a node of ``organization`` (enrolled for
        ``collaboration``) may take buckets of from the job queue, as a condition on
        ``Job``; None: none (docker runs are leased by organization instead)."""
        return None

    def ready(self, spec: dict[str, Any]) -> bool:
        """Whether the job's tasks can run yet (a transfer's only once it knows where its
        files land)."""
        return True

    def take(self, conn: Connection, job_id: str, spec: dict[str, Any],
             items_of: str | None = None) -> list[Any]:
        """The queued tasks one bucket of the job takes: the next ``bucket_size`` of them,
        locked against other hub processes. ``items_of``: a job whose items it waits for
        (``dependencies.py``), not done yet: only tasks whose item is done there."""
        n = spec.get("bucket_size", 1)
        if items_of is None:
            return list(conn.execute(NEXT_TASKS, {"job": job_id, "n": n}))
        return list(conn.execute(NEXT_MATCHED_TASKS, {"job": job_id, "n": n,
                                                      "after": items_of}))

    @abstractmethod
    def bucket(self, conn: Connection, lease: Lease, spec: dict[str, Any], rows: list[Any]
               ) -> BucketWork:
        """What the agent gets for the tasks ``rows`` of a bucket it was just leased."""
