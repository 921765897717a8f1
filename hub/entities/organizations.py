"""Organizations and collaborations (server-shell-v4.rst).

An organization has users, nodes and the jobs its users start; a
collaboration is a set of organizations working together, with one node
per organization. Relations are read with ``GET /organization/<id>/users``
(``session.related("Organization", id, "users")``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.access import scope_of_organization
from hub.bodies import check_body, expect, name_value
from hub.entities.base import Entity
from hub.entities.paging import EVERY, Page
from hub.errors import Conflict, Invalid
from hub.query.fields import Boolean, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import (
    Collaboration,
    Job,
    Node,
    Organization,
    Role,
    Task,
    User,
    iso,
    members,
    new_id,
    utcnow,
)

ORG_SCHEMA = Schema("Organization", {
    "id": Text(Organization.id),
    "name": Text(Organization.name, nocase=True),
    "domain": Text(Organization.domain),
    "address1": Text(Organization.address1),
    "address2": Text(Organization.address2),
    "zipcode": Text(Organization.zipcode),
    "country": Text(Organization.country),
    "created": Timestamp(Organization.created),
    "modified": Timestamp(Organization.modified),
})
ORG_TEXT = ("domain", "address1", "address2", "zipcode", "country")
ORG_WRITABLE = ("name", *ORG_TEXT, "public_key")
ORG_READABLE = ("id", *ORG_WRITABLE, "collaborations", "created", "modified", "modifier")

COLLAB_SCHEMA = Schema("Collaboration", {
    "id": Text(Collaboration.id),
    "name": Text(Collaboration.name, nocase=True),
    "encrypted": Boolean(Collaboration.encrypted),
    "created": Timestamp(Collaboration.created),
    "modified": Timestamp(Collaboration.modified),
})
COLLAB_WRITABLE = ("name", "encrypted", "organizations")
COLLAB_READABLE = ("id", *COLLAB_WRITABLE, "created", "modified", "modifier")


async def _named(conn: AsyncConnection, model: Any, what: str, value: str,
                 field: str) -> str:
    found = (await conn.execute(select(model.id).where(
        or_(model.id == value, model.name == value)))).scalar()
    if found is None:
        raise Invalid(f"unknown_{what}", f"no {what} '{value}'", field=field)
    return str(found)


async def organization_id(conn: AsyncConnection, value: str, field: str = "organization"
                          ) -> str:
    """The id of the organization with this id or name; ``Invalid`` naming ``field`` otherwise."""
    return await _named(conn, Organization, "organization", value, field)


async def collaboration_id(conn: AsyncConnection, value: str, field: str = "collaboration"
                           ) -> str:
    return await _named(conn, Collaboration, "collaboration", value, field)


async def placed_in(conn: AsyncConnection, ctx: Ctx, body: dict[str, Any], resource: str,
                    operation: str = "create") -> str | None:
    """The organization a new record lands in (the body's ``organization``, by id or name,
    else the caller's), once the caller may ``operation`` ``resource`` there
    (``Forbidden`` naming the rule otherwise)."""
    org = await organization_id(conn, expect(body, "organization", str,
                                             "an organization id or name")) \
        if "organization" in body else ctx.caller.organization
    ctx.caller.need(resource, operation, scope_of_organization(ctx, org))
    return org


def check_public_key(value: str) -> str:
    """A public key as the reference stores it: base64 of a PEM ``PUBLIC KEY`` (or empty)."""
    if not value:
        return value
    try:
        load_pem_public_key(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, TypeError):
        raise Invalid("invalid_value", "field 'public_key' must be base64 of a PEM public "
                      "key (-----BEGIN PUBLIC KEY-----)", field="public_key") from None
    return value


async def with_members(conn: AsyncConnection, records: list[dict[str, Any]], field: str,
                       own: Any, other: Any) -> None:
    """Give each record the sorted ids of the other side of the membership table."""
    pairs = (await conn.execute(select(own, other).where(
        own.in_([r["id"] for r in records])))).all()
    for record in records:
        record[field] = sorted(o for mine, o in pairs if mine == record["id"])


class OrganizationEntity(Entity):
    name = "Organization"
    model = Organization
    schema = ORG_SCHEMA
    fields = ("id", "name", *ORG_TEXT, "public_key", "created", "modified", "modifier",
              "collaborations")
    resource = "organization"

    def organization(self) -> Any:
        return Organization.id

    async def rows(self, ctx: Ctx, where: ColumnElement[bool] | None, page: Page = EVERY
                   ) -> list[dict[str, Any]]:
        records = await super().rows(ctx, where, page)
        async with ctx.db.read() as conn:
            await with_members(conn, records, "collaborations", members.c.organization_id,
                               members.c.collaboration_id)
        return records

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        o = row
        return {"id": o["id"], "name": o["name"], **{k: o[k] for k in ORG_TEXT},
                "public_key": o["public_key"], "created": iso(o["created"]),
                "modified": iso(o["modified"]), "modifier": o["modifier"]}

    @staticmethod
    def values(body: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = name_value(body)
        for key in ORG_TEXT:
            if key in body:  # the reference's import leaves address2 empty (null)
                values[key] = expect(body, key, str, "a string", nullable=True) or ""
        if "public_key" in body:
            values["public_key"] = check_public_key(
                expect(body, "public_key", str, "a string", max_length=65536, nullable=True)
                or "")
        return values

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        ctx.caller.need("organization", "create", "global")
        values = self.values(check_body(body, self.name, ORG_WRITABLE, ORG_READABLE,
                                        ("name",)))
        org_id, now = new_id(), utcnow()
        try:
            async with ctx.db.write() as conn:
                await conn.execute(insert(Organization).values(
                    id=org_id, created=now, modified=now, modifier=ctx.principal.id,
                    **{**dict.fromkeys((*ORG_TEXT, "public_key"), ""), **values}))
        except IntegrityError:
            raise _duplicate("organization", values["name"]) from None
        return await self.get(ctx, org_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        values = self.values(check_body(body, self.name, ORG_WRITABLE, ORG_READABLE))
        try:
            async with ctx.db.write() as conn:
                await self.check(conn, ctx, "edit", entity_id)
                await conn.execute(update(Organization).where(Organization.id == entity_id)
                                   .values(modified=utcnow(), modifier=ctx.principal.id,
                                           **values))
        except IntegrityError:
            raise _duplicate("organization", values.get("name")) from None
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "delete", entity_id)
            users = (await conn.execute(select(func.count()).where(
                User.organization_id == entity_id))).scalar()
            nodes = (await conn.execute(select(func.count()).where(
                Node.organization_id == entity_id))).scalar()
            if users or nodes:
                raise Conflict("in_use", f"the organization has {users} users and {nodes} "
                               "nodes; delete or move them first")
            await conn.execute(delete(Role).where(Role.organization_id == entity_id))
            await conn.execute(delete(members).where(members.c.organization_id == entity_id))
            await conn.execute(delete(Organization).where(Organization.id == entity_id))

    def relations(self, entity_id: str) -> dict[str, tuple[str, ColumnElement[bool]]]:
        mine = select(members.c.collaboration_id).where(members.c.organization_id == entity_id)
        jobs = select(Job.id).where(Job.organization_id == entity_id)
        return {
            "users": ("user", User.organization_id == entity_id),
            "nodes": ("node", Node.organization_id == entity_id),
            "collaborations": ("collaboration", Collaboration.id.in_(mine)),
            "jobs": ("job", and_(Job.organization_id == entity_id, Job.deleted.is_(None))),
            "created_tasks": ("task", Task.job_id.in_(jobs)),
            "roles": ("role", Role.organization_id == entity_id),
        }


class CollaborationEntity(Entity):
    name = "Collaboration"
    model = Collaboration
    schema = COLLAB_SCHEMA
    fields = ("id", "name", "encrypted", "created", "modified", "modifier", "organizations")
    resource = "collaboration"

    def in_scope(self, ctx: Ctx, scope: str) -> ColumnElement[bool] | None:
        if scope == "global":
            return None
        return Collaboration.id.in_(select(members.c.collaboration_id).where(
            members.c.organization_id == ctx.caller.organization))

    async def rows(self, ctx: Ctx, where: ColumnElement[bool] | None, page: Page = EVERY
                   ) -> list[dict[str, Any]]:
        records = await super().rows(ctx, where, page)
        async with ctx.db.read() as conn:
            await with_members(conn, records, "organizations", members.c.collaboration_id,
                               members.c.organization_id)
        return records

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        c = row
        return {"id": c["id"], "name": c["name"], "encrypted": c["encrypted"],
                "created": iso(c["created"]), "modified": iso(c["modified"]),
                "modifier": c["modifier"]}

    @staticmethod
    async def _organizations(conn: AsyncConnection, body: dict[str, Any]) -> list[str]:
        given = expect(body, "organizations", list, "a list of organization ids or names")
        ids = []
        for n, value in enumerate(given):
            if not isinstance(value, str):
                raise Invalid("wrong_type", f"organizations[{n}] must be an organization "
                              "id or name", field="organizations")
            ids.append(await organization_id(conn, value, "organizations"))
        return sorted(set(ids))

    @staticmethod
    def _values(body: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = name_value(body)
        if "encrypted" in body:
            values["encrypted"] = expect(body, "encrypted", bool, "true or false")
        return values

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        ctx.caller.need("collaboration", "create", "global")
        body = check_body(body, self.name, COLLAB_WRITABLE, COLLAB_READABLE, ("name",))
        values = {"encrypted": False, **self._values(body)}
        collab_id, now = new_id(), utcnow()
        try:
            async with ctx.db.write() as conn:
                orgs = await self._organizations(conn, body) if "organizations" in body else []
                await conn.execute(insert(Collaboration).values(
                    id=collab_id, created=now, modified=now, modifier=ctx.principal.id,
                    **values))
                if orgs:
                    await conn.execute(insert(members), [
                        {"collaboration_id": collab_id, "organization_id": o} for o in orgs])
        except IntegrityError:
            raise _duplicate("collaboration", values["name"]) from None
        return await self.get(ctx, collab_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, COLLAB_WRITABLE, COLLAB_READABLE)
        values = self._values(body)
        try:
            async with ctx.db.write() as conn:
                await self.check(conn, ctx, "edit", entity_id)
                await conn.execute(update(Collaboration).where(Collaboration.id == entity_id)
                                   .values(modified=utcnow(), modifier=ctx.principal.id,
                                           **values))
                if "organizations" in body:
                    await self._members(conn, entity_id, await self._organizations(conn, body))
        except IntegrityError:
            raise _duplicate("collaboration", values.get("name")) from None
        return await self.get(ctx, entity_id)

    @staticmethod
    async def _members(conn: AsyncConnection, entity_id: str, orgs: list[str]) -> None:
        """Set the members; an organization with a node in the collaboration stays."""
        placed = set((await conn.execute(select(Node.organization_id).where(
            Node.collaboration_id == entity_id))).scalars())
        leaving = sorted(o for o in placed - set(orgs) if o is not None)
        if leaving:
            name = (await conn.execute(select(Organization.name).where(
                Organization.id == leaving[0]))).scalar()
            raise Conflict("in_use", f"organization '{name}' has a node in this "
                           "collaboration; delete the node first", field="organizations")
        await conn.execute(delete(members).where(members.c.collaboration_id == entity_id))
        if orgs:
            await conn.execute(insert(members), [
                {"collaboration_id": entity_id, "organization_id": o} for o in orgs])

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "delete", entity_id)
            nodes = (await conn.execute(select(func.count()).where(
                Node.collaboration_id == entity_id))).scalar()
            if nodes:
                raise Conflict("in_use", f"the collaboration has {nodes} nodes; delete "
                               "them first")
            await conn.execute(delete(members).where(members.c.collaboration_id == entity_id))
            await conn.execute(delete(Collaboration).where(Collaboration.id == entity_id))

    def relations(self, entity_id: str) -> dict[str, tuple[str, ColumnElement[bool]]]:
        orgs = select(members.c.organization_id).where(members.c.collaboration_id == entity_id)
        jobs = select(Job.id).where(Job.collaboration_id == entity_id)
        return {
            "organizations": ("organization", Organization.id.in_(orgs)),
            "nodes": ("node", Node.collaboration_id == entity_id),
            "jobs": ("job", and_(Job.collaboration_id == entity_id, Job.deleted.is_(None))),
            "tasks": ("task", Task.job_id.in_(jobs)),
        }


def _duplicate(what: str, name: str | None) -> Conflict:
    return Conflict("duplicate", f"a {what} named '{name}' already exists", field="name")
