"""Nodes: what an agent enrolls with. The API key is shown once, on create."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from hub.access import scope_of_organization
from hub.bodies import check_body, expect, name_value
from hub.entities.base import AnySelect, Entity
from hub.entities.clients import user_hr
from hub.entities.organizations import collaboration_id, organization_id
from hub.errors import Conflict, Invalid, NotFound
from hub.keys import new_key
from hub.query.fields import Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import (
    ApiKey,
    Client,
    Collaboration,
    Node,
    Organization,
    User,
    iso,
    members,
    new_id,
    utcnow,
)

Enrolled = aliased(Client)

SCHEMA = Schema("Node", {
    "id": Text(Node.id),
    "name": Text(Node.name, nocase=True),
    "description": Text(Node.description),
    "user": Reference(Node.user_id, User.id, (User.username, User.email)),
    "organization": Reference(Node.organization_id, Organization.id, (Organization.name,)),
    "collaboration": Reference(Node.collaboration_id, Collaboration.id, (Collaboration.name,)),
    "created": Timestamp(Node.created),
    "modified": Timestamp(Node.modified),
})

READABLE = ("id", "name", "description", "user", "user_hr", "client", "created", "modified",
            "modifier", "api_key", "organization", "collaboration")
WRITABLE = ("name", "description", "organization", "collaboration", "api_key")
MIN_GIVEN_KEY = 16  # a key given by an admin (the import file's): no shorter than this


def given_key(body: dict[str, Any]) -> str | None:
    """The ``api_key`` of a create: None (the hub makes one) or one given, long enough."""
    if "api_key" not in body:
        return None
    plain: str = expect(body, "api_key", str, "a string", max_length=1024)
    if len(plain) < MIN_GIVEN_KEY or plain != plain.strip():
        raise Invalid("invalid_value", f"field 'api_key' must have at least "
                      f"{MIN_GIVEN_KEY} characters and no surrounding spaces", field="api_key")
    return plain


class NodeEntity(Entity):
    name = "Node"
    model = Node
    schema = SCHEMA
    fields = tuple(f for f in READABLE if f != "api_key")  # shown once, when made
    resource = "node"

    def organization(self) -> Any:
        return Node.organization_id

    def collaboration(self) -> Any:
        return Node.collaboration_id

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
            "organization": n["organization_id"],
            "collaboration": n["collaboration_id"],
            "client": row["client_id"],
            "created": iso(n["created"]),
            "modified": iso(n["modified"]),
            "modifier": n["modifier"],
        }

    @staticmethod
    async def _placement(conn: Any, ctx: Ctx, body: dict[str, Any], organization: str | None,
                         collaboration: str | None) -> tuple[str | None, str | None]:
        """The node's organization and collaboration after this write, checked."""
        if "organization" in body:
            organization = await organization_id(conn, expect(body, "organization", str,
                                                              "an organization id or name"))
        if "collaboration" in body:
            given = expect(body, "collaboration", str, "a collaboration id or name",
                           nullable=True)
            collaboration = None if given is None else await collaboration_id(conn, given)
        if collaboration is not None:
            member = (await conn.execute(select(members.c.organization_id).where(
                members.c.collaboration_id == collaboration,
                members.c.organization_id == organization))).first()
            if member is None:
                raise Invalid("not_a_member", "the node's organization is not in "
                              "collaboration '{}'".format(body.get("collaboration")), field="collaboration")
        return organization, collaboration

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE, ("name",))
        name = name_value(body)
        description = expect(body, "description", str, "a string", max_length=4096) \
            if "description" in body else ""
        key = await new_key(ctx.rt, given_key(body))
        node_id = new_id()
        try:
            async with ctx.db.write() as conn:
                organization, collaboration = await self._placement(
                    conn, ctx, body, ctx.caller.organization, None)
                ctx.caller.need("node", "create", scope_of_organization(ctx, organization))
                now = utcnow()
                await conn.execute(insert(Node).values(
                    id=node_id, name=name, description=description, user_id=ctx.principal.id,
                    organization_id=organization, collaboration_id=collaboration,
                    created=now, modified=now, modifier=ctx.principal.id))
                await conn.execute(key.insert(node_id=node_id, description="node key"))
        except IntegrityError:
            raise _duplicate(name) from None
        record = await self.get(ctx, node_id)
        record["api_key"] = key.plain  # shown once; only its hash is stored
        return record

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE)
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = name_value(body)
        if "description" in body:
            values["description"] = expect(body, "description", str, "a string", max_length=4096)
        reset = "api_key" in body
        if reset and body["api_key"] != "reset":
            raise Invalid("invalid_value", "field 'api_key' can only be set to "
                          "'reset' (the hub makes the new key)", field="api_key")
        key = await new_key(ctx.rt) if reset else None
        try:
            async with ctx.db.write() as conn:
                await self.check(conn, ctx, "edit", entity_id)
                found = (await conn.execute(select(Node.organization_id, Node.collaboration_id)
                                            .where(Node.id == entity_id))).first()
                if found is None:
                    raise NotFound("not_found", f"no Node with id '{entity_id}'")
                if "organization" in body or "collaboration" in body:
                    org, collab = await self._placement(conn, ctx, body, found.organization_id,
                                                        found.collaboration_id)
                    ctx.caller.need("node", "edit", scope_of_organization(ctx, org))
                    values.update(organization_id=org, collaboration_id=collab)
                values.update(modified=utcnow(), modifier=ctx.principal.id)
                await conn.execute(update(Node).where(Node.id == entity_id).values(**values))
                if key is not None:
                    await conn.execute(delete(ApiKey).where(ApiKey.node_id == entity_id))
                    await conn.execute(key.insert(node_id=entity_id, description="node key"))
        except IntegrityError:
            raise _duplicate(values.get("name")) from None
        record = await self.get(ctx, entity_id)
        if key is not None:
            record["api_key"] = key.plain
        return record

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        """Deleting a node revokes its key; its client record stays until deleted itself."""
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "delete", entity_id)
            await conn.execute(delete(ApiKey).where(ApiKey.node_id == entity_id))
            gone = await conn.execute(delete(Node).where(Node.id == entity_id))
            if gone.rowcount == 0:
                raise NotFound("not_found", f"no Node with id '{entity_id}'")


def _duplicate(name: str | None) -> Conflict:
    return Conflict("duplicate", f"a node named '{name}' already exists, or the "
                    "organization already has a node in this collaboration (one per "
                    "organization per collaboration)", field="name")
