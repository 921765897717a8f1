"""Jobs (jobs.rst): create from a compute spec, query, change status, delete."""

from __future__ import annotations

import shutil
from datetime import timedelta
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, and_, delete, insert, or_, select, update
from sqlalchemy.engine import RowMapping

from hub.access import JobAccess
from hub.bodies import check_body, expect, invalid, name_value
from hub.entities.base import Entity
from hub.entities.clients import user_hr
from hub.entities.paging import EVERY, Listing, Page, in_turns, json_size, restrict, window
from hub.errors import Conflict, Forbidden, Invalid, NotFound
from hub.jobs import docker_jobs, transfers
from hub.jobs import status as st
from hub.jobs.spec import JobCreate, check_command, expand_items
from hub.jobs.targets import resolve as targets_in_scope
from hub.query import Query
from hub.query.fields import Choice, Context, Number, Party, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import (
    Client,
    Collaboration,
    Job,
    Share,
    Site,
    Task,
    User,
    iso,
    members,
    new_id,
)

SCHEMA = Schema("Job", {
    "id": Text(Job.id),
    "code": Text(Job.code),
    "uri": Text(Job.queue),
    "status": Choice(Job.status, {s.value: s.value for s in st.JobStatus}),
    "kind": Text(Job.kind),
    "priority": Number(Job.priority, integer=True),
    "user": Reference(Job.user_id, User.id, (User.username, User.email)),
    "source": Party(Job.source_scope, Job.source_id),
    "destination": Party(Job.destination_scope, Job.destination_id),
    "created": Timestamp(Job.created),
    "started": Timestamp(Job.started),
    "finished": Timestamp(Job.finished),
    "modified": Timestamp(Job.modified),
})
READABLE = ("id", "code", "uri", "status", "created", "source", "source_hr", "destination",
            "destination_hr", "etr", "metadata", "parent", "parent_hr", "progress", "size",
            "speed", "user", "user_hr", "finished", "modified", "modifier", "priority", "kind",
            "started", "counts", "compute", "transfer", "destination_path", "docker", "job_id",
            "collaboration", "organization")
WRITABLE = ("status", "priority", "code", "metadata", "destination_path")


class JobEntity(JobAccess, Entity):
    schema = SCHEMA

    async def find(self, ctx: Ctx, query: Query, page: Page, *, finished: bool = False,
                   archived: bool = False) -> Listing:
        qctx = Context(now=ctx.now, offline_grace=ctx.rt.offline_grace, text=query.text)
        return await self.listing(ctx, and_(self.schema.compile(query, qctx),
                                            self.lifecycle(ctx, finished, archived)), page)

    def weight(self, page: Page) -> ColumnElement[Any] | None:
        # a job's spec (compute, docker, transfer) is as large as the body that made it:
        # small as a rule, up to max_body_size (a list of items, a long command)
        return json_size(Job.spec)

    @staticmethod
    def lifecycle(ctx: Ctx, finished: bool, archived: bool) -> ColumnElement[bool]:
        """Active jobs by default; ``finished``: ended over an hour ago; ``archived``: 14 days."""
        inactive = ctx.now - timedelta(seconds=ctx.rt.config.job_inactive_after)
        archive = ctx.now - timedelta(seconds=ctx.rt.config.job_archive_after)
        if archived:
            return Job.finished <= archive
        if finished:
            return and_(Job.finished <= inactive, Job.finished > archive)
        return or_(Job.finished.is_(None), Job.finished > inactive)

    async def rows(self, ctx: Ctx, where: ColumnElement[bool] | None, page: Page = EVERY
                   ) -> list[dict[str, Any]]:
        stmt = (select(Job, User.username.label("user_name"), User.role.label("user_role"))
                .outerjoin(User, User.id == Job.user_id))
        stmt = window(restrict(stmt, self.visible(ctx), where), Job.id, page)
        async with ctx.db.read() as conn:
            found = (await conn.execute(stmt)).mappings().all()
            counts = await conn.run_sync(st.task_counts, [r["id"] for r in found], ctx.now,
                                         recent=True)
            transfers = [r["id"] for r in found if r["kind"] == "transfer"]
            moved = await conn.run_sync(st.transfer_bytes, transfers) if transfers else {}
            names = await party_names(conn, found)
        records = await in_turns(found, lambda r: self.record(r, counts[r["id"]], names, ctx))
        for record, row in zip(records, found, strict=True):
            if row["kind"] == "transfer":  # jobs.rst: bytes, MB/s
                (record["size"], record["progress"], record["speed"],
                 record["etr"]) = st.transfer_figures(moved.get(row["id"]), row["started"],
                                                      ctx.now, row["status"])
        return records

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        raise NotImplementedError  # rows() builds records with record()

    @staticmethod
    def record(j: RowMapping, counts: st.Counts, names: dict[tuple[str, str], str], ctx: Ctx
               ) -> dict[str, Any]:
        def party(scope: str, ident: str) -> tuple[str | None, str | None]:
            if not scope:
                return None, None
            return f"{scope}:{ident}", f"{scope}:{names.get((scope, ident), ident)}"

        source, source_hr = party(j["source_scope"], j["source_id"])
        destination, destination_hr = party(j["destination_scope"], j["destination_id"])
        return {
            "id": j["id"], "code": j["code"], "uri": j["queue"], "status": j["status"],
            "created": iso(j["created"]), "source": source, "source_hr": source_hr,
            "destination": destination, "destination_hr": destination_hr,
            "etr": st.etr(counts, j["started"], ctx.now, j["status"]),
            "metadata": j["metadata"] or {}, "parent": j["parent_id"], "parent_hr": None,
            "progress": st.progress(counts, j["status"]), "size": j["size"],
            "speed": st.speed(counts, j["started"], ctx.now), "user": j["user_id"],
            "user_hr": user_hr(j["user_name"], j["user_role"]), "finished": iso(j["finished"]),
            "modified": iso(j["modified"]), "modifier": j["modifier"],
            "priority": j["priority"], "kind": j["kind"], "started": iso(j["started"]),
            "counts": dict(sorted(counts.by_status.items())),
            "compute": {k: v for k, v in (j["spec"] or {}).items() if k != "targets"}
            if j["kind"] == "compute" else None,
            "transfer": (j["spec"] or {}).get("transfer") if j["kind"] == "transfer" else None,
            # where a transfer's files land, as written (None: pending, or a compute job)
            "destination_path": ((j["spec"] or {}).get("transfer") or {}).get("destination"),
            # docker jobs: the image run, and the group shared with parent and child jobs
            "docker": {k: v for k, v in (j["spec"] or {}).items() if k != "job_id"}
            if j["kind"] == "docker" else None,
            "job_id": (j["spec"] or {}).get("job_id") if j["kind"] == "docker" else None,
            "collaboration": j["collaboration_id"], "organization": j["organization_id"],
        }

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        if ctx.principal.kind != "user":
            raise Forbidden("forbidden", "jobs are started by users, not by agents")
        ctx.caller.need("job", "create", "own")
        kind = "compute"
        if isinstance(body, dict) and "compute" not in body:
            if "docker" in body:
                kind = "docker"
            elif "source" in body or "destination" in body:
                kind = "transfer"
        if ctx.principal.run is not None and kind != "docker":
            raise Forbidden("forbidden", "a run's token creates docker child jobs only")
        if kind != "compute":
            create = docker_jobs.create if kind == "docker" else transfers.create
            job_id = await create(ctx, body)
            ctx.rt.work.notify()
            return await self.get(ctx, job_id)
        try:
            spec = msgspec.convert(body, JobCreate)
        except msgspec.ValidationError as exc:
            raise invalid(exc, "invalid_spec") from None
        check_command(spec.compute)
        items = expand_items(spec.compute.items)
        job_id, now = new_id(), ctx.now
        async with ctx.db.write() as conn:
            collaboration = await member_collaboration(conn, ctx, spec.collaboration)
            targets, destination = await targets_in_scope(
                conn, spec.compute.clients, ctx.caller.organization, collaboration)
            hq = (await conn.execute(select(Site.id).where(Site.name == "hq"))).scalar() or ""
            stored = msgspec.to_builtins(spec.compute)
            stored["targets"] = targets
            await conn.execute(insert(Job).values(
                id=job_id, code=spec.code or default_code(spec.compute.command, items),
                kind="compute", queue=spec.queue, status=spec.status, priority=spec.priority,
                user_id=ctx.principal.id, organization_id=ctx.caller.organization,
                collaboration_id=collaboration, source_scope="site", source_id=hq,
                destination_scope=destination[0], destination_id=destination[1], spec=stored,
                meta=spec.metadata, size=-1, created=now, modified=now,
                modifier=ctx.principal.id))
            await insert_tasks(conn, job_id, items, 0, now, spec.priority)
            await conn.run_sync(st.refresh, [job_id], now)
        ctx.rt.work.notify()
        return await self.get(ctx, job_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE)
        values: dict[str, Any] = {}
        if "code" in body:
            values["code"] = name_value(body, "code")
        if "priority" in body:
            priority = expect(body, "priority", int, "an integer from 1 to 1000")
            if not 1 <= priority <= 1000:
                raise Invalid("invalid_value", "field 'priority' must be from 1 to 1000", field="priority")
            values["priority"] = priority
        if "metadata" in body:
            values["meta"] = expect(body, "metadata", dict, "an object")
        wanted = body.get("status")
        if wanted is not None and wanted not in st.JOB_WRITABLE:
            raise Invalid("invalid_status", f"'{wanted}' cannot be written (writable: "
                          f"{', '.join(st.JOB_WRITABLE)})", field="status")
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "edit", entity_id)
            job = (await conn.execute(select(
                Job.id, Job.status, Job.kind, Job.spec, Job.destination_scope,
                Job.destination_id).where(Job.id == entity_id))).first()
            if job is None:
                raise NotFound("not_found", f"no Job with id '{entity_id}'")
            values.update(modified=ctx.now, modifier=ctx.principal.id)
            await conn.execute(update(Job).where(Job.id == entity_id).values(**values))
            if wanted == st.JobStatus.PENDING:
                await transfers.resend(conn, ctx, job)
            elif wanted is not None and not await transfers.status_write(conn, ctx, job,
                                                                         wanted):
                await change_status(conn, entity_id, job.status, wanted, ctx)
            if "destination_path" in body:
                job = (await conn.execute(select(
                    Job.id, Job.status, Job.kind, Job.spec, Job.destination_scope,
                    Job.destination_id).where(Job.id == entity_id))).first()
                await transfers.set_destination(conn, ctx, job, body["destination_path"])
            await conn.run_sync(st.refresh, [entity_id], ctx.now)
        ctx.rt.work.notify()
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "delete", entity_id)
            found = (await conn.execute(select(Job.id).where(Job.id == entity_id))).first()
            if found is None:
                raise NotFound("not_found", f"no Job with id '{entity_id}'")
            running = (await conn.execute(select(Task.id).where(
                Task.job_id == entity_id, Task.status.in_(st.RUNNING_TASK)).limit(1))).first()
            if running is not None:
                raise Conflict("job_running", "the job has running tasks; abort it first")
            await conn.execute(delete(Task).where(Task.job_id == entity_id))
            await conn.execute(delete(Job).where(Job.id == entity_id))
        shutil.rmtree(ctx.rt.data_dir / "logs" / entity_id, ignore_errors=True)


async def member_collaboration(conn: Any, ctx: Ctx, given: str | None) -> str | None:
    """The id of the collaboration a job runs in; 422 unless the caller's organization is
    one of its members (the same answer whether it exists or not: no probing)."""
    if given is None:
        return None
    found = (await conn.execute(
        select(Collaboration.id).join(members, members.c.collaboration_id == Collaboration.id)
        .where(or_(Collaboration.id == given, Collaboration.name == given),
               members.c.organization_id == ctx.caller.organization))).scalar()
    if found is None:
        raise Invalid("not_a_member", f"your organization is in no collaboration "
                      f"'{given}'", field="collaboration")
    return str(found)


def default_code(command: list[str], items: list[str]) -> str:
    program = command[0].replace("\\", "/").rsplit("/", 1)[-1]
    span = items[0] if len(items) == 1 else f"{items[0]}-{items[-1]}"
    return f"{program} {span}"[:255]


async def insert_tasks(conn: Any, job_id: str, items: list[str], first_seq: int, now: Any,
                       priority: int) -> list[str]:
    rows = [st.new_task(job_id, first_seq + n, item, now, priority)
            for n, item in enumerate(items)]
    if rows:
        await conn.execute(insert(Task), rows)
    return [row["id"] for row in rows]


async def party_names(conn: Any, jobs: Any) -> dict[tuple[str, str], str]:
    wanted: dict[str, set[str]] = {"site": set(), "user": set(), "client": set(),
                                   "share": set()}
    for j in jobs:
        for scope, ident in ((j["source_scope"], j["source_id"]),
                             (j["destination_scope"], j["destination_id"])):
            if scope in wanted:
                wanted[scope].add(ident)
    names: dict[tuple[str, str], str] = {}
    for scope, column, ident in (("site", Site.name, Site.id), ("user", User.username, User.id),
                                 ("client", Client.code, Client.id),
                                 ("share", Share.name, Share.id)):
        if wanted[scope]:
            for row_id, name in await conn.execute(select(ident, column)
                                                   .where(ident.in_(wanted[scope]))):
                names[(scope, row_id)] = name
    return names


async def change_status(conn: Any, job_id: str, current: str, wanted: str, ctx: Ctx) -> None:
    """A user's status write, by the rules in the README's job section.

    A task still running on an agent when its job is aborted (or closed) takes its new
    status at once; ``abort_to`` tells the agent, at its next heartbeat, to kill it.
    """
    S, T = st.JobStatus, st.TaskStatus
    finished = current in st.FINISHED
    if wanted == S.PAUSED:
        if finished:
            raise Conflict("invalid_transition", f"the job has ended ({current}); write "
                           "'waiting' to run it again", field="status")
        await conn.execute(update(Job).where(Job.id == job_id).values(status=S.PAUSED))
    elif wanted == S.WAITING:
        requeued = 0
        if finished:  # run again what did not succeed
            requeued = (await conn.execute(update(Task).where(
                Task.job_id == job_id, Task.status.in_((T.FAILED, T.QUEUED)),
                Task.abort_to.is_(None)).values(
                **st.FRESH_RUN, status=T.QUEUED, attempts=0, message="", modified=ctx.now))
            ).rowcount
            # still being killed on an agent: queued again once the kill is confirmed
            requeued += (await conn.execute(update(Task).where(
                Task.job_id == job_id, Task.abort_to.is_not(None)).values(
                abort_to=T.QUEUED, attempts=0))).rowcount
        if current in st.HELD_BY_USER or requeued:  # a done job with nothing to redo stays
            await conn.execute(update(Job).where(Job.id == job_id).values(
                status=S.WAITING, finished=None))
    elif wanted == S.ABORTED:
        if current in (S.DONE, S.FAILED):
            raise Conflict("invalid_transition", f"the job has already ended ({current})", field="status")
        if current == S.ABORTED:
            return  # already: its finished time stays
        await conn.execute(update(Task).where(
            Task.job_id == job_id, Task.status.in_(st.RUNNING_TASK)).values(
            status=T.FAILED, message="aborted", abort_to=T.FAILED, finished=ctx.now,
            modified=ctx.now))
        await conn.execute(update(Job).where(Job.id == job_id).values(
            status=S.ABORTED, finished=ctx.now))
    elif wanted == S.DONE:
        await conn.execute(update(Task).where(
            Task.job_id == job_id, Task.status.in_(st.RUNNING_TASK)).values(
            status=T.EXCLUDED, abort_to=T.EXCLUDED, finished=ctx.now, modified=ctx.now))
        await conn.execute(update(Task).where(
            Task.job_id == job_id, Task.status.in_((T.QUEUED, T.ONHOLD, T.PENDING))).values(
            status=T.EXCLUDED, finished=ctx.now, modified=ctx.now))
        if current in st.HELD_BY_USER:
            await conn.execute(update(Job).where(Job.id == job_id).values(status=S.WAITING))
