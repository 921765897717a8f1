"""Engines (issue 18): programs a farm runs, that compute jobs name with their arguments
instead of a command (``hub/jobs/engines.py`` makes the command).

An engine belongs to one organization, and only that organization's jobs may name it.
One out of the caller's sight is answered as one that does not exist (404; ``owned.py``),
and a job
naming it gets the answer for an engine that does not exist (``422 unknown_engine``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.bodies import check_body, name_value
from hub.entities.owned import OwnedRecord
from hub.jobs.engines import EngineSpec, arguments, check_spec
from hub.query.fields import Number, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Engine, Organization, iso

SCHEMA = Schema("Engine", {
    "id": Text(Engine.id),
    "name": Text(Engine.name, nocase=True),
    "bucket_size": Number(Engine.bucket_size, integer=True),
    "organization": Reference(Engine.organization_id, Organization.id, (Organization.name,)),
    "created": Timestamp(Engine.created),
    "modified": Timestamp(Engine.modified),
})
SPEC = ("argv", "env", "bucket_size", "clients")
WRITABLE = ("name", *SPEC, "organization")
READABLE = (*WRITABLE, "id", "arguments", "created", "modified", "modifier")


class EngineEntity(OwnedRecord):
    name = "Engine"
    model = Engine
    schema = SCHEMA
    fields = READABLE
    resource = "engine"
    noun = "an engine"

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        e = row
        return {"id": e["id"], "name": e["name"], "argv": e["argv"],
                # what a job of it gives in ``args``: the argv's placeholders
                "arguments": arguments(e["argv"]), "env": e["env"],
                "bucket_size": e["bucket_size"], "clients": e["clients"],
                "organization": e["organization_id"], "created": iso(e["created"]),
                "modified": iso(e["modified"]), "modifier": e["modifier"]}

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE, ("name", "argv"))
        name = name_value(body)
        spec = check_spec({k: body[k] for k in SPEC if k in body})
        return await self.insert(ctx, body, {"name": name, **msgspec.to_builtins(spec)})

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE[:-1], READABLE)
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = name_value(body)

        async def respec(_: AsyncConnection, found: Any) -> dict[str, Any] | None:
            if not set(SPEC) & set(body):
                return None
            # the whole spec checked as it will be
            spec: EngineSpec = check_spec({**{k: getattr(found, k) for k in SPEC},
                                           **{k: body[k] for k in SPEC if k in body}})
            return dict(msgspec.to_builtins(spec))

        return await self.change(ctx, entity_id, values, respec)

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        """Jobs made from it keep their command: it was made when each was created."""
        await self.remove(ctx, entity_id)
