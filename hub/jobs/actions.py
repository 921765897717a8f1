"""What users do to jobs: start one, change it, delete it, add and change its tasks.

Each action is one transaction, checked against the caller's rules first, and asks the
job's kind (``registry.py``) for whatever differs by kind. Bodies arrive checked field
by field (``hub/entities``); what is refused here is what only the job's state can say.
After an action that may have made work appear, the caller tells the dispatcher
(``ctx.rt.work.notify()``) once the transaction is committed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.access import JOBS
from hub.bodies import expect
from hub.errors import Conflict, Forbidden, Invalid, NotFound
from hub.jobs import dependencies
from hub.jobs import status as st
from hub.jobs.queues import queue_for
from hub.jobs.registry import kind_of, of
from hub.jobs.writes import reopen, task_change
from hub.runtime import Ctx
from hub.storage.models import Job, Task
from protocol import BucketKind

# what a write to a job reads of it
_JOB = select(Job.id, Job.status, Job.kind, Job.spec, Job.priority, Job.destination_scope,
              Job.destination_id, Job.organization_id)
NOT_GIVEN: Any = object()  # no destination_path in the write


async def create(ctx: Ctx, body: Any) -> str:
    """Start the job ``body`` asks for; its id. Jobs are started by users (a run's token:
    docker child jobs only), with the rule to create their own jobs."""
    if ctx.principal.kind != "user":
        raise Forbidden("forbidden", "jobs are started by users, not by agents")
    ctx.caller.need("job", "create", "own")
    kind = kind_of(body)
    if ctx.principal.run is not None and kind != BucketKind.DOCKER:
        raise Forbidden("forbidden", "a run's token creates docker child jobs only")
    return await of(kind).create(ctx, body)


async def _job(conn: AsyncConnection, job_id: str) -> Any:
    """The job, for a change; a deleted (inactive) one is as one that never was."""
    job = (await conn.execute(_JOB.where(Job.id == job_id, Job.deleted.is_(None)))).first()
    if job is None:
        raise NotFound("not_found", f"no Job with id '{job_id}'")
    return job


async def change(ctx: Ctx, job_id: str, values: dict[str, Any], status: str | None = None,
                 destination_path: Any = NOT_GIVEN) -> None:
    """Write checked ``values`` (code, priority, meta, queue: a name) to a job the caller may edit, then
    its ``status`` (one of ``status.JOB_WRITABLE``) and its ``destination_path``, each by
    the rules of its kind."""
    async with ctx.db.write() as conn:
        await JOBS.check(conn, ctx, "edit", job_id)  # a deleted job: as one that never was
        job = await _job(conn, job_id)
        if "speed_limit" in values and job.kind != BucketKind.TRANSFER:
            raise Invalid("read_only", "speed_limit: only a transfer job has a speed limit",
                          field="speed_limit")
        if "queue" in values:  # moved to another queue of its organization
            values["queue_id"] = await queue_for(conn, job.organization_id, values["queue"])
        await conn.execute(update(Job).where(Job.id == job_id).values(
            **values, modified=ctx.now, modifier=ctx.principal.id))
        kind = of(job.kind)
        if status is not None:
            await kind.write_status(conn, ctx, job, status)
        if destination_path is not NOT_GIVEN:
            path = expect({"destination_path": destination_path}, "destination_path", str,
                          "a share path")
            await kind.set_destination(conn, ctx, await _job(conn, job_id), path)
        await conn.run_sync(st.refresh, [job_id], ctx.now)


async def remove(ctx: Ctx, job_id: str) -> None:
    """Delete a job the caller may delete: it becomes inactive (``deleted`` set), aborted
    if it had not ended, so it never runs again; refused while any of its tasks runs
    (abort it first). It leaves every find but one with ``inactive=True``, and answers
    changes and ``get`` as a job that never was; its row, tasks and logs stay, for audit
    (jobs.rst: tasks are never deleted). The jobs waiting for it fail (``dependencies.py``)."""
    async with ctx.db.write() as conn:
        await JOBS.check(conn, ctx, "delete", job_id)  # a deleted job: as one that never was
        job = await _job(conn, job_id)
        running = (await conn.execute(select(Task.id).where(
            Task.job_id == job_id, Task.status.in_(st.RUNNING_TASK)).limit(1))).first()
        if running is not None:
            raise Conflict("job_running", "the job has running tasks; abort it first")
        await dependencies.fail_for_deleted(conn, job_id, ctx.now)
        if job.status not in st.FINISHED:
            await of(job.kind).write_status(conn, ctx, job, st.JobStatus.ABORTED)
            await conn.run_sync(st.refresh, [job_id], ctx.now)
        await conn.execute(update(Job).where(Job.id == job_id).values(
            deleted=ctx.now, modified=ctx.now, modifier=ctx.principal.id))


async def add_tasks(ctx: Ctx, job_id: str, tasks: list[Any], allow: bool) -> dict[str, Any]:
    """More tasks for a job whose tasks the caller may create, as its kind takes them;
    ``{"created": [ids], "retried": [ids]}``. A job that ended runs again for them."""
    async with ctx.db.write() as conn:
        await JOBS.check(conn, ctx, "create", job_id, resource="task")  # a deleted job: as one that never was
        job = await _job(conn, job_id)
        added = await of(job.kind).add_tasks(conn, ctx, job, tasks, allow)
        await reopen(conn, job, ctx)
    return added


async def change_tasks(ctx: Ctx, job_id: str, changes: list[dict[str, Any]]) -> list[str]:
    """Apply checked task changes (``id`` and status, priority or metadata) to tasks of a
    job whose tasks the caller may edit: all of them, or none. The ids changed."""
    ids = [c["id"] for c in changes]
    async with ctx.db.write() as conn:
        await JOBS.check(conn, ctx, "edit", job_id, resource="task")  # a deleted job: as one that never was
        job = await _job(conn, job_id)
        rows = {r.id: r for r in (await conn.execute(select(Task.id, Task.status).where(
            Task.job_id == job_id, Task.id.in_(ids)))).all()}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise NotFound("not_found", f"job '{job_id}' has no task '{missing[0]}'")
        # a job that cannot queue tasks yet (a transfer with no destination path): what
        # would be queued waits for it
        held = not of(job.kind).ready(job.spec or {})
        for one in changes:
            values = task_change(one, rows[one["id"]].status, ctx, held)
            await conn.execute(update(Task).where(Task.id == one["id"]).values(**values))
        await conn.run_sync(st.refresh, [job_id], ctx.now)
    return ids
