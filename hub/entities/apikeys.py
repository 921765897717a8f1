"""A user's own API keys, for scripts: ``Session(url, api_key=...)``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import RowMapping

from ferry.errors import ApiError
from hub.entities.base import AnySelect, Entity, check_body, expect, iso
from hub.keys import new_key
from hub.query.fields import Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import ApiKey

SCHEMA = Schema("ApiKey", {
    "id": Text(ApiKey.id),
    "description": Text(ApiKey.description),
    "created": Timestamp(ApiKey.created),
    "last_used": Timestamp(ApiKey.last_used),
})
READABLE = ("id", "user", "description", "created", "last_used", "api_key")


class ApiKeyEntity(Entity):
    name = "ApiKey"
    model = ApiKey
    schema = SCHEMA

    resource = "apikey"

    def base_select(self) -> AnySelect:
        return select(ApiKey).where(ApiKey.user_id.is_not(None))  # a node's key is its node's

    def id_column(self) -> Any:
        return ApiKey.id

    def owner(self, ctx: Ctx) -> Any:
        return ApiKey.user_id if ctx.principal.kind == "user" else None

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        k = row
        return {"id": k["id"], "user": k["user_id"], "description": k["description"],
                "created": iso(k["created"]), "last_used": iso(k["last_used"])}

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        if ctx.principal.kind != "user":
            raise ApiError(403, "forbidden", "API keys are for users; an agent has its node's")
        ctx.caller.need("apikey", "create", "own")
        body = check_body(body, self.name, ("description",), READABLE)
        description = expect(body, "description", str, "a string") if "description" in body else ""
        key = await new_key(ctx.rt)
        async with ctx.db.write() as conn:
            await conn.execute(key.insert(user_id=ctx.principal.id, description=description))
        record = await self.get(ctx, key.id)
        record["api_key"] = key.plain  # shown once; only its hash is stored
        return record

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "delete", entity_id)
            gone = await conn.execute(delete(ApiKey).where(ApiKey.id == entity_id))
            if gone.rowcount == 0:
                raise ApiError(404, "not_found", f"no ApiKey with id '{entity_id}'")
