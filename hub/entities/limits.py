"""Limits (issue 18): counted resources across the farm, such as a renderer's licences.
At most ``max`` buckets of the jobs that name a limit are leased at once, whichever hub
process leases them (``hub/jobs/limits.py``); ``in_use`` is how many are now.

A limit belongs to one organization, and only that organization's jobs name it. One
out of the caller's sight is answered as one that does not exist (404), as for queues
(``owned.py``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.bodies import check_body, expect, name_value
from hub.entities.owned import OwnedRecord
from hub.entities.paging import EVERY, Page
from hub.errors import Conflict, Invalid
from hub.jobs.limits import MAX, in_use
from hub.query.fields import Number, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Job, Limit, Organization, iso, job_limits

SCHEMA = Schema("Limit", {
    "id": Text(Limit.id),
    "name": Text(Limit.name, nocase=True),
    "max": Number(Limit.max, integer=True),
    "organization": Reference(Limit.organization_id, Organization.id, (Organization.name,)),
    "created": Timestamp(Limit.created),
    "modified": Timestamp(Limit.modified),
})
WRITABLE = ("name", "max", "organization")
READABLE = (*WRITABLE, "id", "in_use", "created", "modified", "modifier")


class LimitEntity(OwnedRecord):
    name = "Limit"
    model = Limit
    schema = SCHEMA
    fields = READABLE
    resource = "limit"
    noun = "a limit"

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

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE, ("name", "max"))
        return await self.insert(ctx, body, self._values(body))

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE[:-1], READABLE)
        values = self._values(body)
        record = await self.change(ctx, entity_id, values)
        if "max" in values:
            ctx.rt.work.notify()  # a raised limit lets waiting jobs run now
        return record

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        """A limit that a job not yet finished holds stays (its count would vanish
        mid-job); finished jobs let go of it."""
        async def unheld(conn: AsyncConnection, found: Any) -> None:
            held = (await conn.execute(select(exists().where(
                job_limits.c.limit_id == entity_id, job_limits.c.job_id == Job.id,
                Job.finished.is_(None))))).scalar()
            if held:
                raise Conflict("in_use", f"limit '{found.name}' is held by jobs not yet "
                               "finished; let them finish or delete them first")

        await self.remove(ctx, entity_id, unheld)
