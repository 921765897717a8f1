"""A user's own API keys, for scripts: ``Session(url, api_key=...)``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import RowMapping

from hub.bodies import check_body, expect
from hub.entities.base import AnySelect, Entity
from hub.errors import Forbidden, Invalid, NotFound, Unauthenticated
from hub.keys import new_key
from hub.query.fields import Schema, Text, Timestamp, parse_time
from hub.runtime import Ctx
from hub.security import password_version
from hub.storage.models import ApiKey, User, iso

SCHEMA = Schema("ApiKey", {
    "id": Text(ApiKey.id),
    "description": Text(ApiKey.description),
    "created": Timestamp(ApiKey.created),
    "last_used": Timestamp(ApiKey.last_used),
    "expires": Timestamp(ApiKey.expires),
})
READABLE = ("id", "user", "description", "created", "last_used", "expires", "api_key")
MAX_LIFETIME = timedelta(days=3660)  # ten years: an expiry further away is a typo


class ApiKeyEntity(Entity):
    name = "ApiKey"
    model = ApiKey
    schema = SCHEMA
    fields = tuple(f for f in READABLE if f != "api_key")  # shown once, when made

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
                "created": iso(k["created"]), "last_used": iso(k["last_used"]),
                "expires": iso(k["expires"])}

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        if ctx.principal.kind != "user":
            raise Forbidden("forbidden", "API keys are for users; an agent has its node's")
        ctx.caller.need("apikey", "create", "own")
        if ctx.principal.run is not None:
            raise Forbidden("forbidden", "a run's token cannot make API keys")
        body = check_body(body, self.name, ("description", "expires"), READABLE)
        description = expect(body, "description", str, "a string") if "description" in body else ""
        expires = _expiry(body, ctx) if body.get("expires") is not None else None
        key = await new_key(ctx.rt)
        async with ctx.db.write() as conn:
            stored = (await conn.execute(select(User.password_hash)
                                         .where(User.id == ctx.principal.id))).scalar()
            if stored is None:
                raise Unauthenticated("token_revoked", "the user of this token no longer exists")
            # the key lives only as long as the password it was made under
            await conn.execute(key.insert(user_id=ctx.principal.id, description=description,
                                          password_version=password_version(stored),
                                          expires=expires))
        record = await self.get(ctx, key.id)
        record["api_key"] = key.plain  # shown once; only its hash is stored
        return record

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "delete", entity_id)
            gone = await conn.execute(delete(ApiKey).where(ApiKey.id == entity_id))
            if gone.rowcount == 0:
                raise NotFound("not_found", f"no ApiKey with id '{entity_id}'")


def _expiry(body: dict[str, Any], ctx: Ctx) -> datetime:
    """``expires``: an ISO 8601 time (UTC unless it says otherwise), in the future."""
    text = expect(body, "expires", str, "an ISO 8601 time, e.g. 2027-06-30T00:00:00Z")
    try:
        when = parse_time(text)
    except (ValueError, OverflowError):
        raise Invalid("invalid_value", f"field 'expires': '{text}' is not an ISO 8601 "
                      "time, e.g. 2027-06-30T00:00:00Z", field="expires") from None
    if when <= ctx.now:
        raise Invalid("invalid_value", "field 'expires' is in the past", field="expires")
    if when > ctx.now + MAX_LIFETIME:
        raise Invalid("invalid_value", "field 'expires' is more than ten years away", field="expires")
    return when
