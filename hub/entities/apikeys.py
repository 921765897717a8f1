"""A user's own API keys, for scripts: ``Session(url, api_key=...)``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, delete
from sqlalchemy.engine import RowMapping

from ferry.errors import ApiError
from hub.entities.base import Entity, check_body, expect, iso, require_user
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

    def visible(self, ctx: Ctx) -> ColumnElement[bool]:
        require_user(ctx)
        return ApiKey.user_id == ctx.principal.id

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        k = row
        return {"id": k["id"], "user": k["user_id"], "description": k["description"],
                "created": iso(k["created"]), "last_used": iso(k["last_used"])}

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        self.visible(ctx)
        body = check_body(body, self.name, ("description",), READABLE)
        description = expect(body, "description", str, "a string") if "description" in body else ""
        key = await new_key(ctx.rt)
        async with ctx.db.write() as conn:
            await conn.execute(key.insert(user_id=ctx.principal.id, description=description))
        record = await self.get(ctx, key.id)
        record["api_key"] = key.plain  # shown once; only its hash is stored
        return record

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        scope = self.visible(ctx)
        async with ctx.db.write() as conn:
            gone = await conn.execute(delete(ApiKey).where(ApiKey.id == entity_id, scope))
            if gone.rowcount == 0:
                raise ApiError(404, "not_found", f"no ApiKey with id '{entity_id}'")
