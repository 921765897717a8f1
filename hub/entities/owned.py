"""Records one organization owns and only its own jobs use: queues, limits, engines.

Each has a name unique within its organization, and a caller reaches it only through the
organization scope of its rules (``hub/permissions.py``: ``organization`` and ``global``,
never ``collaboration``). One out of the caller's sight is answered as one that does not
exist (404), and a job naming it gets the answer for a name no record has: no
organization can use, change or learn of another's. What differs between them (their
fields, what a change wakes, what keeps one from being deleted) is each subclass's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.access import scope_of_organization
from hub.entities.base import Entity
from hub.entities.organizations import placed_in
from hub.entities.paging import Page
from hub.errors import Conflict, NotFound
from hub.runtime import Ctx
from hub.storage.models import new_id

# more work in a write's own transaction, once the record is reached: it may add values
# to the record's update (an engine checks its whole spec), or refuse (a record in use)
Also = Callable[[AsyncConnection, Any], Awaitable[dict[str, Any] | None]]


class OwnedRecord(Entity):
    """An organization's named record (``model`` has ``name`` and ``organization_id``)."""

    noun: ClassVar[str]  # "a queue", "an engine": for the duplicate name's message

    def organization(self) -> Any:
        return self.model.organization_id

    async def get(self, ctx: Ctx, entity_id: str) -> dict[str, Any]:
        found = await self.rows(ctx, self.model.id == entity_id, Page(limit=1))
        if not found:  # out of sight or missing: the same answer
            raise NotFound("not_found", f"no {self.name} with id '{entity_id}'")
        return found[0]

    async def reach(self, conn: AsyncConnection, ctx: Ctx, entity_id: str, operation: str
                    ) -> Any:
        """The record's row, once the caller may ``operation`` it; one it may not see is
        one that does not exist."""
        visible = self.visible(ctx)
        stmt = select(self.model).where(self.model.id == entity_id)
        found = (await conn.execute(stmt if visible is None else stmt.where(visible))).first()
        if found is None:
            raise NotFound("not_found", f"no {self.name} with id '{entity_id}'")
        ctx.caller.need(self.resource, operation,
                        scope_of_organization(ctx, found.organization_id))
        return found

    async def insert(self, ctx: Ctx, body: dict[str, Any], values: dict[str, Any]
                     ) -> dict[str, Any]:
        """A new record of ``values`` (checked already) in the organization the body
        names, or the caller's, once the caller may create one there."""
        record_id, now = new_id(), ctx.now
        try:
            async with ctx.db.write() as conn:
                organization = await placed_in(conn, ctx, body, self.resource)
                await conn.execute(insert(self.model).values(
                    id=record_id, organization_id=organization, created=now, modified=now,
                    modifier=ctx.principal.id, **values))
        except IntegrityError:
            raise self.duplicate(values["name"]) from None
        return await self.get(ctx, record_id)

    async def change(self, ctx: Ctx, entity_id: str, values: dict[str, Any],
                     also: Also | None = None) -> dict[str, Any]:
        """Write ``values`` (and what ``also`` adds) to the record, in one transaction."""
        try:
            async with ctx.db.write() as conn:
                found = await self.reach(conn, ctx, entity_id, "edit")
                if also is not None:
                    values = {**values, **(await also(conn, found) or {})}
                await conn.execute(update(self.model).where(self.model.id == entity_id)
                                   .values(**values, modified=ctx.now,
                                           modifier=ctx.principal.id))
        except IntegrityError:
            raise self.duplicate(values.get("name")) from None
        return await self.get(ctx, entity_id)

    async def remove(self, ctx: Ctx, entity_id: str, unless: Also | None = None) -> None:
        """Delete the record, unless ``unless`` refuses (it raises)."""
        async with ctx.db.write() as conn:
            found = await self.reach(conn, ctx, entity_id, "delete")
            if unless is not None:
                await unless(conn, found)
            await conn.execute(delete(self.model).where(self.model.id == entity_id))

    def duplicate(self, name: str | None) -> Conflict:
        return Conflict("duplicate", f"the organization already has {self.noun} named "
                        f"'{name}'", field="name")
