"""Limits (issue 18): counted resources across the farm, such as a renderer's licences.
At most ``max`` buckets of the jobs that name a limit are leased at once, whichever hub
process leases them (``hub/jobs/limits.py``); ``in_use`` is how many are now.

A limit belongs to one organization, and only that organization's jobs name it. One
out of the caller's sight is answered as one that does not exist (404), as for queues.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, delete, exists, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.access import scope_of_organization
from hub.bodies import check_body, expect, name_value
from hub.entities.base import Entity
from hub.entities.organizations import placed_in
from hub.entities.paging import EVERY, Page
from hub.errors import Conflict, Invalid, NotFound
from hub.jobs.limits import MAX, in_use
from hub.query.fields import Number, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Job, Limit, Organization, iso, job_limits, new_id

SCHEMA = Schema("Limit", {
    "id": Text(Limit.id),
    "name": Text(Limit.name),
    "max": Number(Limit.max, integer=True),
    "organization": Reference(Limit.organization_id, Organization.id, (Organization.name,)),
    "created": Timestamp(Limit.created),
    "modified": Timestamp(Limit.modified),
})
WRITABLE = ("name", "max", "organization")
READABLE = (*WRITABLE, "id", "in_use", "created", "modified", "modifier")


class LimitEntity(Entity):
    name = "Limit"
    model = Limit
    schema = SCHEMA
    resource = "limit"

    def organization(self) -> Any:
        return Limit.organization_id

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        return {"id": row["id"], "name": row["name"], "max": row["max"],
                "organization": row["organization_id"], "created": iso(row["created"]),
                "modified": iso(row["modified"]), "modifier": row["modifier"]}

    async def rows(self, ctx: Ctx, where: ColumnElement[bool] | None, page: Page = EVERY
                   ) -> list[dict[str, Any]]:
        records = await super().rows(ctx, where, page)
        async with ctx.db.read() as conn:
            used = await conn.run_sync(in_use, [r["id"] for r in records])
        for record in records:
            record["in_use"] = used[record["id"]]
        return records

    async def get(self, ctx: Ctx, entity_id: str) -> dict[str, Any]:
        found = await self.rows(ctx, Limit.id == entity_id, Page(limit=1))
        if not found:  # out of sight or missing: the same answer
            raise NotFound("not_found", f"no Limit with id '{entity_id}'")
        return found[0]

    @staticmethod
    def _values(body: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = name_value(body)
        if "max" in body:
            most = expect(body, "max", int, f"an integer from 0 to {MAX}")
            if not 0 <= most <= MAX:
                raise Invalid("invalid_value", f"field 'max' must be from 0 to {MAX}",
                              field="max")
            values["max"] = most
        return values

    async def _reach(self, conn: AsyncConnection, ctx: Ctx, limit_id: str, operation: str
                     ) -> Any:
        """The limit, once the caller may ``operation`` it; one it may not see is one
        that does not exist."""
        visible = self.visible(ctx)
        stmt = select(Limit.name, Limit.organization_id).where(Limit.id == limit_id)
        found = (await conn.execute(stmt if visible is None else stmt.where(visible))).first()
        if found is None:
            raise NotFound("not_found", f"no Limit with id '{limit_id}'")
        ctx.caller.need("limit", operation, scope_of_organization(ctx, found.organization_id))
        return found

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE, ("name", "max"))
        values = self._values(body)
        limit_id, now = new_id(), ctx.now
        try:
            async with ctx.db.write() as conn:
                organization = await placed_in(conn, ctx, body, "limit")
                await conn.execute(insert(Limit).values(
                    id=limit_id, organization_id=organization, created=now, modified=now,
                    modifier=ctx.principal.id, **values))
        except IntegrityError:
            raise _duplicate(values["name"]) from None
        return await self.get(ctx, limit_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE[:-1], READABLE)
        values = self._values(body)
        try:
            async with ctx.db.write() as conn:
                await self._reach(conn, ctx, entity_id, "edit")
                await conn.execute(update(Limit).where(Limit.id == entity_id).values(
                    **values, modified=ctx.now, modifier=ctx.principal.id))
        except IntegrityError:
            raise _duplicate(values.get("name")) from None
        if "max" in values:
            ctx.rt.work.notify()  # a raised limit lets waiting jobs run now
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        """A limit that a job not yet finished holds stays (its count would vanish
        mid-job); finished jobs let go of it."""
        async with ctx.db.write() as conn:
            found = await self._reach(conn, ctx, entity_id, "delete")
            held = (await conn.execute(select(exists().where(
                job_limits.c.limit_id == entity_id, job_limits.c.job_id == Job.id,
                Job.finished.is_(None))))).scalar()
            if held:
                raise Conflict("in_use", f"limit '{found.name}' is held by jobs not yet "
                               "finished; let them finish or delete them first")
            await conn.execute(delete(Limit).where(Limit.id == entity_id))


def _duplicate(name: str | None) -> Conflict:
    return Conflict("duplicate", f"the organization already has a limit named '{name}'",
                    field="name")
