"""Jobs (jobs.rst) as the API shows them: queried, listed, started, changed, deleted.

The records are built here; what a job *is* and what may be done to it is job logic
(``hub/jobs``): this module checks a body's fields and hands it over.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.engine import Connection, RowMapping

from core.errors import QueryError
from hub.access import JobAccess
from hub.bodies import check_body, expect, name_value, priority_value
from hub.entities.base import Entity
from hub.entities.clients import user_hr
from hub.entities.paging import EVERY, Listing, Page, in_turns, json_size, restrict, window
from hub.errors import Invalid
from hub.jobs import actions, dependencies, registry
from hub.jobs import status as st
from hub.jobs.transfer_options import speed_limit
from hub.query import Query
from hub.query.fields import Choice, Context, Number, Party, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Client, Job, Limit, Queue, Share, Site, User, iso, job_limits
from protocol import BucketKind

SCHEMA = Schema("Job", {
    "id": Text(Job.id),
    "code": Text(Job.code, nocase=True),
    "uri": Text(Job.queue),
    "queue": Reference(Job.queue_id, Queue.id, (Queue.name,)),  # by name or id
    "status": Choice(Job.status, {s.value: s.value for s in st.JobStatus}),
    "kind": Text(Job.kind),
    "priority": Number(Job.priority, integer=True),
    "user": Reference(Job.user_id, User.id, (User.username, User.email)),
    "source": Party(Job.source_scope, Job.source_id,
                    Job.spec["transfer"]["source_path"].as_string()),
    "destination": Party(Job.destination_scope, Job.destination_id,
                         Job.spec["transfer"]["destination_path"].as_string()),
    "created": Timestamp(Job.created),
    "started": Timestamp(Job.started),
    "finished": Timestamp(Job.finished),
    "modified": Timestamp(Job.modified),
    "hook_of": Text(Job.hook_of),  # the hook jobs of a job (hub/jobs/hooks.py)
})
READABLE = ("id", "code", "uri", "status", "created", "source", "source_hr", "destination",
            "destination_hr", "etr", "metadata", "parent", "parent_hr", "progress", "size",
            "speed", "user", "user_hr", "finished", "modified", "modifier", "priority", "kind",
            "started", "counts", "compute", "transfer", "destination_path", "docker", "job_id",
            "collaboration", "organization", "status_reason", "queue", "after",
            "after_items", "after_failed", "after_status", "limits", "max_lanes", "engine", "args",
            "hooks", "hook_of", "deleted", "speed_limit", "frames_missing")
WRITABLE = ("status", "priority", "code", "metadata", "destination_path", "queue",
            "speed_limit")


class JobEntity(JobAccess, Entity):
    schema = SCHEMA
    fields = READABLE

    async def find(self, ctx: Ctx, query: Query, page: Page, *, finished: bool = False,
                   archived: bool = False, inactive: bool = False) -> Listing:
        if inactive and (finished or archived):
            flag = "finished" if finished else "archived"
            raise QueryError(f"give one of 'inactive' and '{flag}': deleted jobs are found "
                             "whenever they ended")
        qctx = Context(now=ctx.now, offline_grace=ctx.rt.offline_grace, text=query.text)
        when = Job.deleted.is_not(None) if inactive else \
            and_(Job.deleted.is_(None), self.lifecycle(ctx, finished, archived))
        return await self.listing(ctx, and_(self.schema.compile(query, qctx), when), page)

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
                                         recent=True, partial=True)
            transfers = [r["id"] for r in found if r["kind"] == BucketKind.TRANSFER]
            moved = await conn.run_sync(st.transfer_bytes, transfers) if transfers else {}
            names = await party_names(conn, found)
            waits = await conn.run_sync(dependencies.shown, [r["id"] for r in found],
                                        self.visible(ctx))
            held = await conn.run_sync(limit_names, [r["id"] for r in found])
        records = await in_turns(found, lambda r: self.record(r, counts[r["id"]], names, ctx))
        for record, row in zip(records, found, strict=True):
            record.update(waits[row["id"]])  # the jobs it waits for (dependencies.py)
            record["limits"] = held.get(row["id"], [])
            if row["kind"] == BucketKind.TRANSFER:  # jobs.rst: bytes, MB/s
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
            "metadata": j["metadata"] or {}, **parent(j),
            "progress": st.progress(counts, j["status"]), "size": j["size"],
            "speed": st.speed(counts, j["started"], ctx.now), "user": j["user_id"],
            "user_hr": user_hr(j["user_name"], j["user_role"]), "finished": iso(j["finished"]),
            "modified": iso(j["modified"]), "modifier": j["modifier"],
            "priority": j["priority"], "kind": j["kind"], "started": iso(j["started"]),
            "counts": dict(sorted(counts.by_status.items())),
            # what the job's kind shows of its spec; the other kinds' fields are None
            "compute": None, "transfer": None, "destination_path": None, "docker": None,
            "job_id": None, "engine": None, "args": None,
            **registry.of(j["kind"]).shown(j["spec"] or {}),
            "collaboration": j["collaboration_id"], "organization": j["organization_id"],
            # why it waits, when no agent it may use matches it (hub/jobs/reasons.py)
            "status_reason": j["status_reason"], "queue": j["queue"],
            "max_lanes": j["max_lanes"], "deleted": iso(j["deleted"]),
            # commands run when it ends, and the job this one is a hook of (hooks.py)
            "hooks": _hooks_shown(j["hooks"]), "hook_of": j["hook_of"],
            # a transfer's: bytes/s at most (null: none), and a sequence's missing frames
            "speed_limit": j["speed_limit"], "frames_missing": j["frames_missing"],
        }

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        job_id = await actions.create(ctx, body)
        ctx.rt.work.notify()
        return await self.get(ctx, job_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE)
        values: dict[str, Any] = {}
        if "code" in body:
            values["code"] = name_value(body, "code")
        if "priority" in body:
            values["priority"] = priority_value(body)
        if "metadata" in body:
            values["meta"] = expect(body, "metadata", dict, "an object")
        wanted = body.get("status")
        if wanted is not None and wanted not in st.JOB_WRITABLE:
            raise Invalid("invalid_status", f"'{wanted}' cannot be written (writable: "
                          f"{', '.join(st.JOB_WRITABLE)})", field="status")
        if "queue" in body:
            values["queue"] = name_value(body, "queue")
        if "speed_limit" in body:  # a transfer's (actions.change refuses it for the others)
            values["speed_limit"] = speed_limit(body["speed_limit"], ctx.rt.config.speed_limit)
        await actions.change(ctx, entity_id, values, wanted,
                             body.get("destination_path", actions.NOT_GIVEN))
        ctx.rt.work.notify()
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        await actions.remove(ctx, entity_id)


def limit_names(conn: Connection, job_ids: list[str]) -> dict[str, list[str]]:
    """The names of the limits each job holds (``hub/jobs/limits.py``), by name."""
    if not job_ids:
        return {}
    names: dict[str, list[str]] = {}
    for job_id, name in conn.execute(
            select(job_limits.c.job_id, Limit.name).join(Limit, Limit.id == job_limits.c.limit_id)
            .where(job_limits.c.job_id.in_(job_ids)).order_by(Limit.name)):
        names.setdefault(job_id, []).append(name)
    return names


def parent(j: RowMapping) -> dict[str, Any]:
    """jobs.rst's ``parent``: the queue the job waits in (``queue:<name>``); a docker child
    job's is its parent job, as before queues (docs/DOCKER.md)."""
    if j["parent_id"] is not None:
        return {"parent": j["parent_id"], "parent_hr": f"job:{j['parent_id']}"}
    if j["queue_id"] is None:
        return {"parent": None, "parent_hr": None}
    return {"parent": j["queue_id"], "parent_hr": f"queue:{j['queue']}"}


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


def _hooks_shown(kept: dict[str, Any] | None) -> dict[str, Any] | None:
    """A job's hooks as it gave them (their resolved agents are the hub's own)."""
    if not kept:
        return None
    return {when: {k: v for k, v in hook.items() if k in ("client", "command", "env")}
            for when, hook in kept.items()}
