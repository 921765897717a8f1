"""Queues (accsyn's job ``parent``): where an organization's jobs wait, with a priority
and a state. Dispatch takes the jobs of open queues, highest queue priority first, then
job priority, then age (``hub/jobs/dispatch.py``); a paused queue's jobs start nothing new.

A queue belongs to one organization, and only that organization's jobs go into it. One
out of the caller's sight is answered as one that does not exist (404; ``owned.py``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.bodies import check_body, expect, name_value, priority_value
from hub.entities.owned import OwnedRecord
from hub.errors import Conflict, Invalid
from hub.jobs.queues import DEFAULT_PRIORITY, QueueStatus
from hub.query.fields import Choice, Number, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Job, Organization, Queue, iso

SCHEMA = Schema("Queue", {
    "id": Text(Queue.id),
    "name": Text(Queue.name, nocase=True),
    "priority": Number(Queue.priority, integer=True),
    "status": Choice(Queue.status, {s.value: s.value for s in QueueStatus}),
    "organization": Reference(Queue.organization_id, Organization.id, (Organization.name,)),
    "created": Timestamp(Queue.created),
    "modified": Timestamp(Queue.modified),
})
WRITABLE = ("name", "priority", "status", "organization")
READABLE = (*WRITABLE, "id", "created", "modified", "modifier")


class QueueEntity(OwnedRecord):
    name = "Queue"
    model = Queue
    schema = SCHEMA
    fields = READABLE
    resource = "queue"
    noun = "a queue"

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        q = row
        return {"id": q["id"], "name": q["name"], "priority": q["priority"],
                "status": q["status"], "organization": q["organization_id"],
                "created": iso(q["created"]), "modified": iso(q["modified"]),
                "modifier": q["modifier"]}

    @staticmethod
    def _values(body: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = name_value(body)
        if "priority" in body:
            values["priority"] = priority_value(body)
        if "status" in body:
            status = expect(body, "status", str, "open or paused")
            if status not in set(QueueStatus):
                raise Invalid("invalid_status", f"'{status}' is no queue status (open, "
                              "paused)", field="status")
            values["status"] = status
        return values

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE, ("name",))
        return await self.insert(ctx, body, {"priority": DEFAULT_PRIORITY,
                                             "status": QueueStatus.OPEN, **self._values(body)})

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE[:-1], READABLE)
        values = self._values(body)

        async def rename_jobs(conn: AsyncConnection, _: Any) -> None:
            if "name" in values:  # a job's ``uri`` is its queue's name
                await conn.execute(update(Job).where(Job.queue_id == entity_id)
                                   .values(queue=values["name"]))

        record = await self.change(ctx, entity_id, values, rename_jobs)
        if values.get("status") == QueueStatus.OPEN or "priority" in values:
            ctx.rt.work.notify()  # its jobs may run now, or run before others
        return record

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        async def unused(conn: AsyncConnection, found: Any) -> None:
            used = (await conn.execute(select(Job.id).where(  # deleted jobs no longer wait
                Job.queue_id == entity_id, Job.deleted.is_(None)).limit(1))).first()
            if used is not None:
                raise Conflict("in_use", f"queue '{found.name}' still has jobs; move or "
                               "delete them first")

        await self.remove(ctx, entity_id, unused)
