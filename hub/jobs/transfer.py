"""Transfer jobs (jobs.rst): files moved from a share path to a party, by agents' transfer
slots.

A transfer job sends files from a share path to a party::

    {"source": "share=projects/thefilm/latest_edit.mov",
     "destination": "lars@edit.com",   # a user, a site ("hq") or a share path
     "status": "paused"}

A share path as destination says where the files land, and the job can run
at once. A user or a site says only who receives them: the job is
``pending`` until a destination path is set (``destination_path``, a share
served by one of that user's agents or by an agent at that site). Writing
``pending`` resends the job: every task runs again, to a destination path
set anew.

Each task stores where it lands (``Task.destination``). By default a task
*mirrors* its source: its path below the job's source folder is kept below
the job's destination folder. A task may instead name its own destination
on the job's destination share.

A bucket is one task, a file or a folder (the agent that runs a folder lists it and
moves all of it), and goes with one ticket for the task's path and what is below it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import ColumnElement, insert, or_, select, update
from sqlalchemy.engine import Connection

from hub.bodies import invalid
from hub.errors import Conflict, Invalid
from hub.jobs import hooks
from hub.jobs import status as st
from hub.jobs import transfer_options as options
from hub.jobs.hooks import Hooks
from hub.jobs.kind import JobKind, Lease
from hub.jobs.leases import NEXT_TASKS
from hub.jobs.queues import queue_for
from hub.jobs.transfer_paths import (
    find_party,
    has_path,
    landing,
    may_use,
    relanding,
    runner,
    share_party,
    share_rows,
)
from hub.jobs.transfer_tasks import add_tasks, insert_transfer_tasks
from hub.jobs.writes import change_status
from hub.runtime import Ctx
from hub.storage.models import Client, Job, Share, Task, new_id
from hub.webhooks import events
from protocol import BucketKind, BucketWork, TaskWork, TransferWork, tickets
from protocol.paths import join, share_parts

S, T = st.JobStatus, st.TaskStatus
TICKET_TTL = 6 * 3600.0  # seconds a transfer task's ticket lasts: a long pull must not outlive it


class TransferCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A transfer job (jobs.rst): ``source`` a share path, ``destination`` a party."""

    source: Annotated[str, msgspec.Meta(min_length=1, max_length=4200)]
    destination: Annotated[str, msgspec.Meta(min_length=1, max_length=4200)]
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    priority: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    status: Literal["waiting", "paused"] = "waiting"
    queue: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "default"
    metadata: dict[str, Any] = {}
    retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 2
    streams: Annotated[int, msgspec.Meta(ge=1, le=32)] = 4
    # pull: the destination's agent fetches (default); push: the source's agent sends, for
    # a source behind NAT that nobody can reach
    direction: Literal["pull", "push"] = "pull"
    hooks: Hooks | None = None  # commands run when it is done or failed (hooks.py)
    # bytes a second at most ("50MB/s"; hub/jobs/transfer_options.py), and a frame
    # sequence's range and what frames missing from it do
    speed_limit: int | str | None = None
    frames: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    missing_frames: Literal["list", "fail"] = "list"


async def create(ctx: Ctx, body: Any) -> str:
    """Store a transfer job and its first task; the job's id. Its runner is the agent of
    the destination share when pulling, of the source share when pushing."""
    try:
        spec = msgspec.convert(body, TransferCreate)
    except msgspec.ValidationError as exc:
        raise invalid(exc, "invalid_spec") from None
    source_name, source_parts, _ = share_party(spec.source, "source")
    sequence = options.sequence(source_parts, spec.frames, spec.missing_frames)
    limit = options.speed_limit(spec.speed_limit, ctx.rt.config.speed_limit)
    to_share = spec.destination.startswith("share=")
    if to_share:
        dest_name, dest_parts, into_folder = share_party(spec.destination, "destination")
    job_id, now = new_id(), ctx.now
    async with ctx.db.write() as conn:
        shares = await share_rows(conn, [source_name] + ([dest_name] if to_share else []))
        source = await may_use(conn, ctx, shares, source_name, "source", "read")
        item = join(source_parts)
        transfer: dict[str, Any] = {
            "source_share": source.id, "source_path": item, "streams": spec.streams,
            "direction": spec.direction, "destination_share": None, "destination_path": None,
            "destination": None, "into_folder": True, "hold": spec.status == "paused"}
        if sequence is not None:
            transfer["sequence"] = sequence
        stored: dict[str, Any] = {"transfer": transfer, "targets": [], "bucket_size": 1,
                                  "retries": spec.retries}
        if to_share:
            dest = await may_use(conn, ctx, shares, dest_name, "destination", "write")
            stored["targets"] = [{"client": runner(source, dest, spec.direction)}]
            transfer.update(destination_share=dest.id, destination_path=join(dest_parts),
                            destination=spec.destination, into_folder=into_folder)
            party, status, lands = ("share", dest.id), str(spec.status), landing(transfer, item)
        else:
            party, status, lands = await find_party(conn, spec.destination, "destination"), \
                str(S.PENDING), ""
        queue = await queue_for(conn, ctx.caller.organization, spec.queue)
        kept = await hooks.stored(conn, spec.hooks, ctx.caller.organization)
        await conn.execute(insert(Job).values(
            id=job_id, code=spec.code or (source_parts[-1] if source_parts else source_name),
            kind=BucketKind.TRANSFER, queue=spec.queue, queue_id=queue, status=status, priority=spec.priority,
            user_id=ctx.principal.id, organization_id=ctx.caller.organization,
            source_scope="share", source_id=source.id,
            destination_scope=party[0], destination_id=party[1], spec=stored,
            meta=spec.metadata, size=-1, created=now, modified=now, modifier=ctx.principal.id,
            hooks=kept, speed_limit=limit))
        await insert_transfer_tasks(conn, job_id, [(item, lands)], 0, now,
                                    spec.priority, pending=not to_share)
        await conn.run_sync(st.refresh, [job_id], now)
        await conn.run_sync(events.jobs_event, events.Event.JOB_CREATED, [job_id], now)
    return job_id


async def set_destination(conn: Any, ctx: Ctx, job: Any, text: str) -> None:
    """Give a job with no destination path one: each task gets its landing (kept relative
    to the job's landing when it had one before a resend) and the pending ones are
    queued."""
    if has_path(job.spec):
        raise Conflict("not_pending", f"the job is {job.status} and has its destination "
                       "path: it is set only while it is pending (write status 'pending' to "
                       "resend it)", field="destination_path")
    name, parts, into_folder = share_party(text, "destination_path")
    stored = dict(job.spec)
    transfer = dict(stored["transfer"])
    shares = await share_rows(conn, [name])
    dest = await may_use(conn, ctx, shares, name, "destination_path", "write")
    source = (await conn.execute(
        select(Share.id, Share.name, Client.transfer_url, Share.client_id)
        .outerjoin(Client, Client.id == Share.client_id)
        .where(Share.id == transfer["source_share"]))).first()
    if source is None or source.client_id is None:
        raise Conflict("unknown_share", "the job's source share is gone or served by no "
                       "agent", field="source")
    scope, ident = job.destination_scope, job.destination_id
    if scope == "user" and dest.user_id != ident:
        raise Invalid("not_theirs", f"destination_path: share '{name}' is not served by "
                      "an agent of the receiving user", field="destination_path")
    if scope == "site" and dest.site_id != ident:
        raise Invalid("not_theirs", f"destination_path: share '{name}' is not served by "
                      "an agent at the receiving site", field="destination_path")
    stored["targets"] = [{"client": runner(source, dest, transfer["direction"])}]
    previous = transfer.pop("previous", None)
    transfer.update(destination_share=dest.id, destination_path=join(parts),
                    destination=text, into_folder=into_folder)
    stored["transfer"] = transfer
    tasks = (await conn.execute(select(
        Task.id, Task.item, Task.destination, Task.status, Task.abort_to).where(
        Task.job_id == job.id))).all()
    for task in tasks:
        values: dict[str, Any] = {"destination": relanding(previous, transfer, task.item,
                                                          task.destination),
                                  "modified": ctx.now}
        if task.status == T.PENDING:  # one still being stopped is queued once it is
            values.update({"abort_to": T.QUEUED} if task.abort_to is not None
                          else {"status": T.QUEUED})
        await conn.execute(update(Task).where(Task.id == task.id).values(**values))
    values = {"spec": stored}
    if scope == "share":  # the job's party follows its path
        values["destination_id"] = dest.id
    if job.status == S.PENDING and transfer.get("hold"):
        values["status"] = S.PAUSED
    await conn.execute(update(Job).where(Job.id == job.id).values(**values))


async def resend(conn: Any, ctx: Ctx, job: Any) -> None:
    """``status: pending``: every task runs again, once a destination path is set anew.
    A task still running (or still being stopped) is stopped: the agent hears it at its
    next heartbeat, and until it confirms the task keeps its bucket."""
    transfer = dict(job.spec["transfer"])
    if has_path(job.spec):
        transfer["previous"] = {k: transfer[k] for k in (
            "destination_share", "destination_path", "into_folder")}
    transfer.update(destination_share=None, destination_path=None, destination=None,
                    hold=job.status == S.PAUSED or (
                        job.status == S.PENDING and bool(transfer.get("hold"))))
    stored = {**job.spec, "transfer": transfer, "targets": []}
    stopping = or_(Task.status.in_(st.RUNNING_TASK), Task.abort_to.is_not(None))
    await conn.execute(update(Task).where(Task.job_id == job.id, stopping).values(
        status=T.PENDING, abort_to=T.PENDING, modified=ctx.now))
    await conn.execute(update(Task).where(
        Task.job_id == job.id, ~stopping, Task.status != T.EXCLUDED).values(
        **st.FRESH_RUN, status=T.PENDING, attempts=0, message="", modified=ctx.now))
    await conn.execute(update(Job).where(Job.id == job.id).values(
        status=S.PENDING, spec=stored, started=None, finished=None))


async def status_write(conn: Any, ctx: Ctx, job: Any, wanted: str) -> bool:
    """``paused`` or ``waiting`` written to a transfer job with no destination path: it
    stays (or becomes again) pending, and remembers which to become once it has a path.
    Returns whether the write was handled here."""
    if has_path(job.spec) or wanted not in (S.PAUSED, S.WAITING):
        return False
    if wanted == S.PAUSED and job.status in st.FINISHED:
        return False  # refused as for any ended job
    stored = {**job.spec, "transfer": {**job.spec["transfer"], "hold": wanted == S.PAUSED}}
    if wanted == S.WAITING:  # run again what did not succeed, once there is a path
        await conn.execute(update(Task).where(
            Task.job_id == job.id, Task.status.in_((T.FAILED, T.QUEUED)),
            Task.abort_to.is_(None)).values(
            **st.FRESH_RUN, status=T.PENDING, attempts=0, message="", modified=ctx.now))
        await conn.execute(update(Task).where(
            Task.job_id == job.id, Task.abort_to.is_not(None)).values(abort_to=T.PENDING))
    await conn.execute(update(Job).where(Job.id == job.id).values(
        spec=stored, status=S.PENDING, finished=None))
    return True


# -- leases
def transfer_work(conn: Connection, key: Ed25519PrivateKey | None, job_id: str,
                  spec: dict[str, Any], row: Any) -> TaskWork:
    """A transfer task with a fresh ticket for the agent the runner calls, scoped to the
    task's path and what is below it (a folder moves as one task). A source whose agent
    is gone (or serves nothing now) gets an empty url: the task fails on the agent with
    that reason, and is retried like any failure."""
    transfer = spec["transfer"]
    push = transfer.get("direction") == "push"
    shares = {r.id: r for r in conn.execute(
        select(Share.id, Share.path, Share.client_id, Client.transfer_url,
               Client.transfer_fingerprint)
        .outerjoin(Client, Client.id == Share.client_id)
        .where(Share.id.in_([transfer["source_share"], transfer["destination_share"]])))}
    source, dest = shares.get(transfer["source_share"]), shares.get(
        transfer["destination_share"])
    called = dest if push else source  # the agent whose endpoint the runner calls
    # a frame sequence moves from its folder, whose files the agent picks (the ticket is
    # the folder's: one share, one path and what is below it)
    sequence = transfer.get("sequence") if row.item == transfer["source_path"] else None
    item = join(share_parts(row.item)[:-1]) if sequence else row.item
    ticket = ""
    if called is not None and called.client_id and key is not None:
        ticket = tickets.issue(key, tickets.TicketScope(
            server=called.client_id, share=called.id,
            path=row.destination if push else item, op="write" if push else "read",
            job=job_id, task=row.id, tree=True), ttl=TICKET_TTL)
    limit = conn.execute(select(Job.speed_limit).where(Job.id == job_id)).scalar()
    return TaskWork(id=row.id, uri=row.uri, item=row.item, attempt=row.attempts + 1,
                    last_attempt=row.attempts + 1 > spec.get("retries", 0),  # as release has it
                    argv=[], transfer=TransferWork(
                        url=(called.transfer_url or "") if called else "",
                        fingerprint=(called.transfer_fingerprint or "") if called else "",
                        share=called.id if called else "", path=item, ticket=ticket,
                        dest_share=transfer["destination_share"],
                        dest_path=row.destination, into_folder=False,
                        streams=transfer.get("streams", 4),
                        dest_root=dest.path if dest else "",
                        direction="push" if push else "pull",
                        source_root=source.path if source else "", size=row.size,
                        speed_limit=limit or 0, **_sequence_work(sequence)))


def _sequence_work(sequence: dict[str, Any] | None) -> dict[str, Any]:
    """A frame sequence's fields of the agent's work (none when it is no sequence)."""
    if not sequence:
        return {}
    return {"sequence": sequence["pattern"], "frames": sequence["frames"],
            "missing_frames": sequence["missing_frames"]}


class TransferJobs(JobKind):
    kind = BucketKind.TRANSFER
    markers: ClassVar[tuple[str, ...]] = ("source", "destination")

    async def create(self, ctx: Ctx, body: Any) -> str:
        return await create(ctx, body)

    def shown(self, spec: dict[str, Any]) -> dict[str, Any]:
        transfer = spec.get("transfer")
        # where the files land, as written (None while pending)
        return {"transfer": transfer, "destination_path": (transfer or {}).get("destination")}

    async def write_status(self, conn: Any, ctx: Ctx, job: Any, wanted: str) -> None:
        if wanted == S.PENDING:
            await resend(conn, ctx, job)
        elif not await status_write(conn, ctx, job, wanted):
            await change_status(conn, job.id, job.status, wanted, ctx)

    async def set_destination(self, conn: Any, ctx: Ctx, job: Any, path: str) -> None:
        await set_destination(conn, ctx, job, path)

    async def add_tasks(self, conn: Any, ctx: Ctx, job: Any, tasks: list[Any], allow: bool
                        ) -> dict[str, Any]:
        return await add_tasks(conn, ctx, job, tasks, allow)

    def queued_for(self, organization: Any, collaboration: Any) -> ColumnElement[bool]:
        # a transfer job names its one runner in its targets (the agent of a share the
        # creator may read or write): no organization rule on top
        return Job.kind == self.kind

    def ready(self, spec: dict[str, Any]) -> bool:
        return has_path(spec)

    def take(self, conn: Connection, job_id: str, spec: dict[str, Any],
             items_of: str | None = None) -> list[Any]:
        # one task a bucket; a transfer job waits for no items (only compute jobs do)
        return list(conn.execute(NEXT_TASKS, {"job": job_id, "n": 1}))

    def bucket(self, conn: Connection, lease: Lease, spec: dict[str, Any], rows: list[Any]
               ) -> BucketWork:
        return BucketWork(id=lease.bucket_id, job_id=lease.job_id, lane_id=lease.lane_id,
                          kind=self.kind, leased_until=lease.leased_until,
                          tasks=[transfer_work(conn, lease.signing.tickets, lease.job_id,
                                               spec, row) for row in rows])


TRANSFER = TransferJobs()
