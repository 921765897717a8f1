"""Tasks (jobs.rst): queried, added to a job, changed in groups; never deleted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping

from hub.access import JOBS, TaskAccess
from hub.bodies import expect
from hub.entities.base import AnySelect, Entity
from hub.entities.jobs import insert_tasks
from hub.entities.paging import Page
from hub.errors import Conflict, Invalid, NotAllowed, NotFound
from hub.jobs import status as st
from hub.jobs import transfer_tasks, transfers
from hub.query.fields import Choice, Number, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Job, Task, iso

SCHEMA = Schema("Task", {
    "id": Text(Task.id),
    "uri": Text(Task.uri),
    "item": Text(Task.item),
    "status": Choice(Task.status, {s.value: s.value for s in st.TaskStatus}),
    "job": Reference(Task.job_id, Job.id, (Job.code,)),
    "job.id": Text(Task.job_id),
    "job.code": Reference(Task.job_id, Job.id, (Job.code,)),
    "priority": Number(Task.priority, integer=True),
    "attempts": Number(Task.attempts, integer=True),
    "exit_code": Number(Task.exit_code, integer=True),
    "size": Number(Task.size, integer=True),
    "time": Number(Task.time, integer=True),
    "client": Text(Task.client_id),
    "lane": Text(Task.lane_id),
    "organization": Text(Task.organization_id),
    "created": Timestamp(Task.created),
    "started": Timestamp(Task.started),
    "finished": Timestamp(Task.finished),
})
CHANGEABLE = ("status", "priority", "metadata")
MAX_CHANGES = 10_000


class TaskEntity(TaskAccess, Entity):
    schema = SCHEMA

    def base_select(self) -> AnySelect:
        return select(Task)

    # output and sealed envelopes: up to 4 KiB and up to max_body_size a task, so a list
    # answer holds them only when asked for (GET /task/<id> always does)
    optional = {"log_tail": ("log_tail",), "input": ("input",), "result": ("result",)}

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        t = row
        record = {
            "id": t["id"], "uri": t["uri"], "status": t["status"], "created": iso(t["created"]),
            "source": {"item": t["item"], "path": t["item"], "client": t["client_id"],
                       "lane": t["lane_id"]},
            # transfers: where the file lands on the job's destination share (None: pending)
            "destination": {"path": t["destination"] or None} if t["destination"] or
            t["status"] == st.TaskStatus.PENDING else {}, "priority": t["priority"], "size": t["size"],
            "finished": iso(t["finished"]), "time": t["time"],
            "job": t["job_id"], "item": t["item"], "attempts": t["attempts"],
            "bucket": t["bucket_id"],
            "exit_code": t["exit_code"], "message": t["message"], "log_tail": t.get("log_tail"),
            "has_log": t["has_log"], "cpu_seconds": t["cpu_seconds"],
            "peak_memory": t["peak_memory"], "started": iso(t["started"]),
            "metadata": t["metadata"] or {}, "transferred": t["transferred"],
            # docker runs: whose run it is, what it was given and what it gave back (sealed
            # in an encrypted collaboration)
            "organization": t["organization_id"], "input": t.get("input"),
            "result": t.get("result"),
        }
        for field in self.optional:
            if field not in t:  # not read: left out of this list answer
                del record[field]
        return record

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        raise NotAllowed("not_allowed", "tasks change in groups: PATCH /job/<id>/tasks "
                         "(session.update_many('task', job_id, [...]))")

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        raise NotAllowed("not_allowed", "tasks cannot be deleted (kept for audit); set their "
                         "status to 'excluded' instead")

    async def add(self, ctx: Ctx, job_id: str, body: Any) -> dict[str, Any]:
        """Add tasks to a job; an existing one (same item; for transfers, same source and
        destination) is retried, or refused with ``allow_duplicates: false`` (jobs.rst)."""
        if not isinstance(body, dict) or set(body) - {"tasks", "allow_duplicates"}:
            raise Invalid("invalid_body", "body must be {\"tasks\": [...], "
                          "\"allow_duplicates\": true|false}", field="tasks")
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise Invalid("invalid_body", "'tasks' must be a non-empty list", field="tasks")
        allow = body.get("allow_duplicates", True)
        if not isinstance(allow, bool):
            raise Invalid("wrong_type", "'allow_duplicates' must be true or false", field="allow_duplicates")
        async with ctx.db.write() as conn:
            await JOBS.check(conn, ctx, "create", job_id, resource="task")
            job = (await conn.execute(select(Job.id, Job.status, Job.priority, Job.kind, Job.spec)
                                      .where(Job.id == job_id))).first()
            if job is None:
                raise NotFound("not_found", f"no Job with id '{job_id}'")
            if job.kind == "transfer":
                added = await transfer_tasks.add_tasks(conn, ctx, job, tasks, allow)
                await _reopen(conn, job, ctx)
                ctx.rt.work.notify()
                return {"success": True, **added}
            items = [_item(t, n) for n, t in enumerate(tasks)]
            if len(set(items)) != len(items):
                raise Invalid("invalid_body", "the same item is listed twice", field="tasks")
            existing = dict((await conn.execute(select(Task.item, Task.id).where(
                Task.job_id == job_id, Task.item.in_(items)))).all())
            if existing and not allow:
                first = next(i for i in items if i in existing)
                raise Conflict("duplicate", f"item '{first}' is already a task of this job "
                               f"({len(existing)} duplicates; nothing added)", field="tasks")
            retried = [existing[i] for i in items if i in existing]
            if retried:  # jobs.rst: a duplicate is not added; the existing task runs again
                await conn.execute(update(Task).where(
                    Task.id.in_(retried), Task.status.in_((*st.ENDED_TASK, st.TaskStatus.ONHOLD))
                ).values(**st.FRESH_RUN, status=st.TaskStatus.QUEUED, attempts=0, message="",
                         modified=ctx.now))
            last = (await conn.execute(select(func.max(Task.seq)).where(
                Task.job_id == job_id))).scalar()
            created = await insert_tasks(conn, job_id, [i for i in items if i not in existing],
                                         (last if last is not None else -1) + 1, ctx.now,
                                         job.priority)
            await _reopen(conn, job, ctx)
        ctx.rt.work.notify()
        return {"success": True, "created": created, "retried": retried}

    async def update_many(self, ctx: Ctx, job_id: str, body: Any) -> list[dict[str, Any]]:
        """Change status, priority or metadata of several tasks: all of them, or none."""
        changes = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(changes, list) or not changes or len(changes) > MAX_CHANGES:
            raise Invalid("invalid_body", f"body must be {{\"tasks\": [...]}} with 1 to "
                          f"{MAX_CHANGES} changes", field="tasks")
        for change in changes:
            _check_change(change)
        ids = [c["id"] for c in changes]
        async with ctx.db.write() as conn:
            await JOBS.check(conn, ctx, "edit", job_id, resource="task")
            rows = {r.id: r for r in (await conn.execute(select(Task.id, Task.status).where(
                Task.job_id == job_id, Task.id.in_(ids)))).all()}
            missing = [i for i in ids if i not in rows]
            if missing:
                raise NotFound("not_found", f"job '{job_id}' has no task '{missing[0]}'")
            spec = (await conn.execute(select(Job.spec).where(Job.id == job_id))).scalar()
            # a transfer with no destination path yet: what would be queued waits for one
            pathless = isinstance(spec, dict) and "transfer" in spec and not transfers.has_path(spec)
            for change in changes:
                values = _values(change, rows[change["id"]].status, ctx, pathless)
                await conn.execute(update(Task).where(Task.id == change["id"]).values(**values))
            await conn.run_sync(st.refresh, [job_id], ctx.now)
        ctx.rt.work.notify()
        # as a find answers them (jobs.rst): large fields left out, as many as changed
        return await self.rows(ctx, Task.id.in_(ids), Page(limit=len(ids),
                                                          attributes=frozenset()))


async def _reopen(conn: Any, job: Any, ctx: Ctx) -> None:
    """A job that ended runs again for the tasks just added or retried (not an aborted one)."""
    if job.status in st.FINISHED and job.status != st.JobStatus.ABORTED:
        await conn.execute(update(Job).where(Job.id == job.id).values(
            status=st.JobStatus.WAITING, finished=None))
    await conn.run_sync(st.refresh, [job.id], ctx.now)


def _item(task: Any, index: int) -> str:
    if isinstance(task, dict):
        if set(task) != {"item"}:
            raise Invalid("invalid_body", f"tasks[{index}]: a compute task is an item or "
                          "{\"item\": ...}", field=f"tasks[{index}]")
        task = task["item"]
    if isinstance(task, bool) or not isinstance(task, str | int) or not str(task) \
            or len(str(task)) > 1024:
        raise Invalid("invalid_body", f"tasks[{index}]: an item is a string or an integer "
                      "of 1 to 1024 characters", field=f"tasks[{index}]")
    if "\0" in str(task):
        raise Invalid("invalid_body", f"tasks[{index}]: an item cannot hold a NUL "
                      "character (it goes into the command line)", field=f"tasks[{index}]")
    return str(task)


def _check_change(change: Any) -> None:
    if not isinstance(change, dict) or not isinstance(change.get("id"), str):
        raise Invalid("invalid_body", "each change needs the task's 'id'", field="id")
    for key in change:
        if key == "id":
            continue
        if key not in CHANGEABLE:
            if key in SCHEMA.fields or key in ("source", "destination", "metadata"):
                raise Invalid("read_only", f"'{key}' cannot be changed (tasks change only "
                              "status, priority and metadata)", field=key)
            raise Invalid("unknown_field", f"unknown field '{key}' for Task (changeable: "
                          f"{', '.join(CHANGEABLE)})", field=key)
    if "status" in change and change["status"] not in st.TASK_WRITABLE:
        raise Invalid("invalid_status", f"'{change['status']}' cannot be written (writable:"
                      f" {', '.join(st.TASK_WRITABLE)})", field="status")
    if "priority" in change:
        value = expect(change, "priority", int, "an integer")
        if not 1 <= value <= 1000:
            raise Invalid("invalid_value", "'priority' must be from 1 to 1000", field="priority")
    if "metadata" in change:
        expect(change, "metadata", dict, "an object")


def _values(change: dict[str, Any], current: str, ctx: Ctx, pathless: bool = False
            ) -> dict[str, Any]:
    values: dict[str, Any] = {"modified": ctx.now}
    if "priority" in change:
        values["priority"] = change["priority"]
    if "metadata" in change:
        values["meta"] = change["metadata"]
    wanted = change.get("status")
    if wanted is None or wanted == current:
        return values
    running = current in st.RUNNING_TASK
    if wanted == st.TaskStatus.QUEUED:
        if running:
            raise Conflict("invalid_transition", f"task {change['id']} is {current}; it "
                           "cannot be queued while it runs", field="status")
        values.update(st.FRESH_RUN, status=st.TaskStatus.PENDING if pathless else wanted,
                      attempts=0, message="")
    else:
        values["status"] = wanted
        if running:  # the agent kills it at its next heartbeat
            values["abort_to"] = wanted
        if wanted in st.ENDED_TASK:
            values["finished"] = ctx.now
    return values
