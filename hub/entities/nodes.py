"""Nodes: what an agent enrolls with. The API key is shown once, on create."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from ferry.errors import ApiError
from hub.entities.base import AnySelect, Entity, check_body, expect, iso, name_value
from hub.entities.clients import user_hr
from hub.keys import new_key
from hub.query.fields import Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import ApiKey, Client, Node, User, new_id, utcnow

Enrolled = aliased(Client)

SCHEMA = Schema("Node", {
    "id": Text(Node.id),
    "name": Text(Node.name),
    "description": Text(Node.description),
    "user": Reference(Node.user_id, User.id, (User.username, User.email)),
    "created": Timestamp(Node.created),
    "modified": Timestamp(Node.modified),
})

READABLE = ("id", "name", "description", "user", "user_hr", "client", "created", "modified",
            "modifier", "api_key")


class NodeEntity(Entity):
    name = "Node"
    model = Node
    schema = SCHEMA

    def base_select(self) -> AnySelect:
        client = (select(Enrolled.id).where(Enrolled.node_id == Node.id,
                                            Enrolled.parent_id.is_(None))
                  .order_by(Enrolled.id.desc()).limit(1).scalar_subquery())
        return (select(Node, User.username.label("user_name"), User.role.label("user_role"),
                       client.label("client_id"))
                .outerjoin(User, User.id == Node.user_id))

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        n = row
        return {
            "id": n["id"],
            "name": n["name"],
            "description": n["description"],
            "user": n["user_id"],
            "user_hr": user_hr(row["user_name"], row["user_role"]),
            "client": row["client_id"],
            "created": iso(n["created"]),
            "modified": iso(n["modified"]),
            "modifier": n["modifier"],
        }

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        self.visible(ctx)
        body = check_body(body, self.name, ("name", "description"), READABLE, ("name",))
        name = name_value(body)
        description = expect(body, "description", str, "a string", max_length=4096) \
            if "description" in body else ""
        node_id = new_id()
        key = await new_key(ctx.rt)
        try:
            async with ctx.db.write() as conn:
                now = utcnow()
                await conn.execute(insert(Node).values(
                    id=node_id, name=name, description=description, user_id=ctx.principal.id,
                    created=now, modified=now, modifier=ctx.principal.id))
                await conn.execute(key.insert(node_id=node_id, description="node key"))
        except IntegrityError:
            raise ApiError(409, "duplicate", f"a node named '{name}' already exists",
                           {"field": "name"}) from None
        record = await self.get(ctx, node_id)
        record["api_key"] = key.plain  # shown once; only its hash is stored
        return record

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        self.visible(ctx)
        body = check_body(body, self.name, ("name", "description", "api_key"), READABLE)
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = name_value(body)
        if "description" in body:
            values["description"] = expect(body, "description", str, "a string", max_length=4096)
        reset = "api_key" in body
        if reset and body["api_key"] != "reset":
            raise ApiError(422, "invalid_value", "field 'api_key' can only be set to "
                           "'reset' (the hub makes the new key)", {"field": "api_key"})
        key = await new_key(ctx.rt) if reset else None
        try:
            async with ctx.db.write() as conn:
                found = (await conn.execute(select(Node.id).where(Node.id == entity_id))).first()
                if found is None:
                    raise ApiError(404, "not_found", f"no Node with id '{entity_id}'")
                values.update(modified=utcnow(), modifier=ctx.principal.id)
                await conn.execute(update(Node).where(Node.id == entity_id).values(**values))
                if key is not None:
                    await conn.execute(delete(ApiKey).where(ApiKey.node_id == entity_id))
                    await conn.execute(key.insert(node_id=entity_id, description="node key"))
        except IntegrityError:
            raise ApiError(409, "duplicate", f"a node named '{values.get('name')}' already "
                           "exists", {"field": "name"}) from None
        record = await self.get(ctx, entity_id)
        if key is not None:
            record["api_key"] = key.plain
        return record

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        """Deleting a node revokes its key; its client record stays until deleted itself."""
        self.visible(ctx)
        async with ctx.db.write() as conn:
            await conn.execute(delete(ApiKey).where(ApiKey.node_id == entity_id))
            gone = await conn.execute(delete(Node).where(Node.id == entity_id))
            if gone.rowcount == 0:
                raise ApiError(404, "not_found", f"no Node with id '{entity_id}'")
