"""Tasks (jobs.rst) as the API shows them: queried, added to a job, changed in groups;
never deleted. Adding and changing them is job logic (``hub/jobs/actions.py``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.engine import RowMapping

from hub.access import TaskAccess
from hub.bodies import expect
from hub.entities.base import AnySelect, Entity
from hub.entities.paging import Page, json_size, size_of
from hub.errors import Invalid, NotAllowed
from hub.jobs import actions
from hub.jobs import status as st
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
    "progress": Number(Task.progress),
    "stage": Text(Task.stage),
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
    fields = ("id", "uri", "status", "created", "source", "destination", "priority", "size",
              "finished", "time", "job", "item", "attempts", "bucket", "exit_code", "message",
              "log_tail", "has_log", "cpu_seconds", "peak_memory", "started", "metadata",
              "transferred", "organization", "input", "result", "progress", "stage", "outputs")

    def base_select(self) -> AnySelect:
        return select(Task)

    # output, sealed envelopes and output paths: up to 4 KiB, max_body_size and 256 KiB a
    # task, so a list answer holds them only when asked for (GET /task/<id> always does)
    optional = {"log_tail": ("log_tail",), "input": ("input",), "result": ("result",),
                "outputs": ("outputs",)}

    def weight(self, page: Page) -> ColumnElement[Any] | None:
        # ``outputs`` is JSON, measured as its text (PostgreSQL's length() takes no JSON)
        text = size_of(Task.__table__.c[c] for f, cs in self.optional.items()
                       if f != "outputs" and page.includes(f) for c in cs)
        if not page.includes("outputs"):
            return text
        outputs = json_size(Task.outputs)
        return outputs if text is None else text + outputs

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
            # what a compute task's progress lines said (hub/jobs/progress.py)
            "progress": t["progress"], "stage": t["stage"],
            "outputs": t["outputs"] or [] if "outputs" in t else None,
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
            raise Invalid("wrong_type", "'allow_duplicates' must be true or false",
                          field="allow_duplicates")
        added = await actions.add_tasks(ctx, job_id, tasks, allow)
        ctx.rt.work.notify()
        return {"success": True, **added}

    async def update_many(self, ctx: Ctx, job_id: str, body: Any) -> list[dict[str, Any]]:
        """Change status, priority or metadata of several tasks: all of them, or none."""
        changes = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(changes, list) or not changes or len(changes) > MAX_CHANGES:
            raise Invalid("invalid_body", f"body must be {{\"tasks\": [...]}} with 1 to "
                          f"{MAX_CHANGES} changes", field="tasks")
        for change in changes:
            _check_change(change)
        ids = await actions.change_tasks(ctx, job_id, changes)
        ctx.rt.work.notify()
        # as a find answers them (jobs.rst): large fields left out, as many as changed
        return await self.rows(ctx, Task.id.in_(ids), Page(limit=len(ids),
                                                          attributes=frozenset()))


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
