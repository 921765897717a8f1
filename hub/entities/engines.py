"""Engines (issue 18): programs a farm runs, that compute jobs name with their arguments
instead of a command (``hub/jobs/engines.py`` makes the command).

An engine belongs to one organization, and only that organization's jobs may name it.
One out of the caller's sight is answered as one that does not exist (404), and a job
naming it gets the answer for an engine that does not exist (``422 unknown_engine``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.access import scope_of_organization
from hub.bodies import check_body, name_value
from hub.entities.base import Entity
from hub.entities.organizations import placed_in
from hub.entities.paging import Page
from hub.errors import Conflict, NotFound
from hub.jobs.engines import EngineSpec, arguments, check_spec
from hub.query.fields import Number, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Engine, Organization, iso, new_id

SCHEMA = Schema("Engine", {
    "id": Text(Engine.id),
    "name": Text(Engine.name),
    "bucket_size": Number(Engine.bucket_size, integer=True),
    "organization": Reference(Engine.organization_id, Organization.id, (Organization.name,)),
    "created": Timestamp(Engine.created),
    "modified": Timestamp(Engine.modified),
})
SPEC = ("argv", "env", "bucket_size", "clients")
WRITABLE = ("name", *SPEC, "organization")
READABLE = (*WRITABLE, "id", "arguments", "created", "modified", "modifier")


class EngineEntity(Entity):
    name = "Engine"
    model = Engine
    schema = SCHEMA
    resource = "engine"

    def organization(self) -> Any:
        return Engine.organization_id

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        e = row
        return {"id": e["id"], "name": e["name"], "argv": e["argv"],
                # what a job of it gives in ``args``: the argv's placeholders
                "arguments": arguments(e["argv"]), "env": e["env"],
                "bucket_size": e["bucket_size"], "clients": e["clients"],
                "organization": e["organization_id"], "created": iso(e["created"]),
                "modified": iso(e["modified"]), "modifier": e["modifier"]}

    async def get(self, ctx: Ctx, entity_id: str) -> dict[str, Any]:
        found = await self.rows(ctx, Engine.id == entity_id, Page(limit=1))
        if not found:  # out of sight or missing: the same answer
            raise NotFound("not_found", f"no Engine with id '{entity_id}'")
        return found[0]

    async def _reach(self, conn: AsyncConnection, ctx: Ctx, engine_id: str, operation: str
                     ) -> Any:
        """The engine, once the caller may ``operation`` it; one it may not see is one
        that does not exist."""
        visible = self.visible(ctx)
        stmt = select(Engine).where(Engine.id == engine_id)
        found = (await conn.execute(stmt if visible is None else stmt.where(visible))).first()
        if found is None:
            raise NotFound("not_found", f"no Engine with id '{engine_id}'")
        ctx.caller.need("engine", operation, scope_of_organization(ctx, found.organization_id))
        return found

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE, ("name", "argv"))
        name = name_value(body)
        spec = check_spec({k: body[k] for k in SPEC if k in body})
        engine_id, now = new_id(), ctx.now
        try:
            async with ctx.db.write() as conn:
                organization = await placed_in(conn, ctx, body, "engine")
                await conn.execute(insert(Engine).values(
                    id=engine_id, name=name, organization_id=organization, created=now,
                    modified=now, modifier=ctx.principal.id, **msgspec.to_builtins(spec)))
        except IntegrityError:
            raise _duplicate(name) from None
        return await self.get(ctx, engine_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE[:-1], READABLE)
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = name_value(body)
        try:
            async with ctx.db.write() as conn:
                found = await self._reach(conn, ctx, entity_id, "edit")
                if set(SPEC) & set(body):  # the whole spec checked as it will be
                    spec: EngineSpec = check_spec({**{k: getattr(found, k) for k in SPEC},
                                                   **{k: body[k] for k in SPEC if k in body}})
                    values.update(msgspec.to_builtins(spec))
                await conn.execute(update(Engine).where(Engine.id == entity_id).values(
                    **values, modified=ctx.now, modifier=ctx.principal.id))
        except IntegrityError:
            raise _duplicate(values.get("name")) from None
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        """Jobs made from it keep their command: it was made when each was created."""
        async with ctx.db.write() as conn:
            await self._reach(conn, ctx, entity_id, "delete")
            await conn.execute(delete(Engine).where(Engine.id == entity_id))


def _duplicate(name: str | None) -> Conflict:
    return Conflict("duplicate", f"the organization already has an engine named '{name}'",
                    field="name")
