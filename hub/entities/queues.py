"""Queues (accsyn's job ``parent``): where an organization's jobs wait, with a priority
and a state. Dispatch takes the jobs of open queues, highest queue priority first, then
job priority, then age (``hub/jobs/dispatch.py``); a paused queue's jobs start nothing new.

A queue belongs to one organization, and only that organization's jobs go into it. One
out of the caller's sight is answered as one that does not exist (404).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.access import scope_of_organization
from hub.bodies import check_body, expect, name_value, priority_value
from hub.entities.base import Entity
from hub.entities.organizations import placed_in
from hub.entities.paging import Page
from hub.errors import Conflict, Invalid, NotFound
from hub.jobs.queues import DEFAULT_PRIORITY, QueueStatus
from hub.query.fields import Choice, Number, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Job, Organization, Queue, iso, new_id

SCHEMA = Schema("Queue", {
    "id": Text(Queue.id),
    "name": Text(Queue.name),
    "priority": Number(Queue.priority, integer=True),
    "status": Choice(Queue.status, {s.value: s.value for s in QueueStatus}),
    "organization": Reference(Queue.organization_id, Organization.id, (Organization.name,)),
    "created": Timestamp(Queue.created),
    "modified": Timestamp(Queue.modified),
})
WRITABLE = ("name", "priority", "status", "organization")
READABLE = (*WRITABLE, "id", "created", "modified", "modifier")


class QueueEntity(Entity):
    name = "Queue"
    model = Queue
    schema = SCHEMA
    resource = "queue"

    def organization(self) -> Any:
        return Queue.organization_id

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        q = row
        return {"id": q["id"], "name": q["name"], "priority": q["priority"],
                "status": q["status"], "organization": q["organization_id"],
                "created": iso(q["created"]), "modified": iso(q["modified"]),
                "modifier": q["modifier"]}

    async def get(self, ctx: Ctx, entity_id: str) -> dict[str, Any]:
        found = await self.rows(ctx, Queue.id == entity_id, Page(limit=1))
        if not found:  # out of sight or missing: the same answer
            raise NotFound("not_found", f"no Queue with id '{entity_id}'")
        return found[0]

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

    async def _reach(self, conn: AsyncConnection, ctx: Ctx, queue_id: str, operation: str
                     ) -> Any:
        """The queue, once the caller may ``operation`` it; one it may not see is one
        that does not exist."""
        visible = self.visible(ctx)
        stmt = select(Queue.name, Queue.organization_id).where(Queue.id == queue_id)
        found = (await conn.execute(stmt if visible is None else stmt.where(visible))).first()
        if found is None:
            raise NotFound("not_found", f"no Queue with id '{queue_id}'")
        ctx.caller.need("queue", operation, scope_of_organization(ctx, found.organization_id))
        return found

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE, ("name",))
        values = {"priority": DEFAULT_PRIORITY, "status": QueueStatus.OPEN,
                  **self._values(body)}
        queue_id, now = new_id(), ctx.now
        try:
            async with ctx.db.write() as conn:
                organization = await placed_in(conn, ctx, body, "queue")
                await conn.execute(insert(Queue).values(
                    id=queue_id, organization_id=organization, created=now, modified=now,
                    modifier=ctx.principal.id, **values))
        except IntegrityError:
            raise _duplicate(values["name"]) from None
        return await self.get(ctx, queue_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE[:-1], READABLE)
        values = self._values(body)
        try:
            async with ctx.db.write() as conn:
                await self._reach(conn, ctx, entity_id, "edit")
                await conn.execute(update(Queue).where(Queue.id == entity_id).values(
                    **values, modified=ctx.now, modifier=ctx.principal.id))
                if "name" in values:  # a job's ``uri`` is its queue's name
                    await conn.execute(update(Job).where(Job.queue_id == entity_id)
                                       .values(queue=values["name"]))
        except IntegrityError:
            raise _duplicate(values.get("name")) from None
        if values.get("status") == QueueStatus.OPEN or "priority" in values:
            ctx.rt.work.notify()  # its jobs may run now, or run before others
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        async with ctx.db.write() as conn:
            found = await self._reach(conn, ctx, entity_id, "delete")
            used = (await conn.execute(select(Job.id).where(Job.queue_id == entity_id)
                                       .limit(1))).first()
            if used is not None:
                raise Conflict("in_use", f"queue '{found.name}' still has jobs; move or "
                               "delete them first")
            await conn.execute(delete(Queue).where(Queue.id == entity_id))


def _duplicate(name: str | None) -> Conflict:
    return Conflict("duplicate", f"the organization already has a queue named '{name}'",
                    field="name")
