"""Roles (named sets of rules) and the rules themselves.

Rules are the hub's own: listed, never written. Default roles (root,
organization admin, researcher, viewer, node) are written at every start
and cannot be changed; an organization may define its own. Nobody can give
a rule they do not hold, through a role or directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, delete, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import permissions
from hub.bodies import check_body, expect, name_value
from hub.entities.base import Entity
from hub.entities.organizations import placed_in
from hub.entities.paging import EVERY, Page
from hub.errors import Conflict, Forbidden, Invalid
from hub.query.fields import Boolean, Choice, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import (
    Organization,
    Role,
    Rule,
    User,
    iso,
    new_id,
    role_rules,
    user_roles,
    utcnow,
)

RULE_SCHEMA = Schema("Rule", {
    "id": Text(Rule.id),
    "resource": Choice(Rule.resource, {r: r for r in permissions.RESOURCES}),
    "operation": Choice(Rule.operation, {o: o for r in permissions.RESOURCES
                                         for o in permissions.operations(r)}),
    "scope": Choice(Rule.scope, {s: s for s in permissions.SCOPES}),
})
ROLE_SCHEMA = Schema("Role", {
    "id": Text(Role.id),
    "name": Text(Role.name, nocase=True),
    "description": Text(Role.description),
    "organization": Reference(Role.organization_id, Organization.id, (Organization.name,)),
    "default": Boolean(Role.default),
    "created": Timestamp(Role.created),
    "modified": Timestamp(Role.modified),
})
ROLE_WRITABLE = ("name", "description", "organization", "rules")
ROLE_READABLE = ("id", *ROLE_WRITABLE, "default", "created", "modified", "modifier")


async def rule_ids(conn: AsyncConnection, given: Any, field: str = "rules") -> list[str]:
    """Rules given by id, as ``{"resource", "operation", "scope"}``, or as
    ``"operation resource (scope)"``; ``Invalid`` naming the first unknown one."""
    if not isinstance(given, list):
        raise Invalid("wrong_type", f"field '{field}' must be a list of rules", field=field)
    known = {r.id: (r.resource, r.operation, r.scope)
             for r in (await conn.execute(select(Rule))).all()}
    by_triple = {v: k for k, v in known.items()}
    ids = []
    for n, value in enumerate(given):
        if isinstance(value, dict) and set(value) == {"resource", "operation", "scope"}:
            found = by_triple.get((value["resource"], value["operation"], value["scope"]))
        elif isinstance(value, str):
            found = value if value in known else next(
                (i for t, i in by_triple.items() if permissions.rule_name(t) == value), None)
        else:
            found = None
        if found is None:
            raise Invalid("unknown_rule", f"{field}[{n}]: no rule {value!r} (a rule is "
                          "an id, {\"resource\", \"operation\", \"scope\"}, or 'view job "
                          "(organization)'; see GET /find?query=Rule)", field=field)
        ids.append(found)
    return sorted(set(ids))


async def role_ids(conn: AsyncConnection, given: Any, organization: str | None,
                   field: str = "roles") -> list[str]:
    """Roles by id or name: default roles, or roles of ``organization``."""
    if not isinstance(given, list):
        raise Invalid("wrong_type", f"field '{field}' must be a list of role ids or names", field=field)
    ids = []
    for n, value in enumerate(given):
        if not isinstance(value, str):
            raise Invalid("wrong_type", f"{field}[{n}] must be a role id or name", field=field)
        row = (await conn.execute(select(Role.id, Role.organization_id).where(
            or_(Role.id == value, Role.name == value)))).first()
        if row is None:
            raise Invalid("unknown_role", f"{field}[{n}]: no role '{value}' (default "
                          f"roles: {', '.join(permissions.DEFAULT_ROLES)})", field=field)
        if row.organization_id not in (None, organization):
            raise Invalid("foreign_role", f"{field}[{n}]: role '{value}' belongs to "
                          "another organization", field=field)
        ids.append(row.id)
    return sorted(set(ids))


async def check_grant(conn: AsyncConnection, ctx: Ctx, roles: Iterable[str],
                      rules: Iterable[str], field: str) -> None:
    """``Forbidden`` unless the caller holds every rule it is about to give."""
    wanted = set(rules)
    roles = list(roles)
    if roles:
        wanted |= set((await conn.execute(select(role_rules.c.rule_id).where(
            role_rules.c.role_id.in_(roles)))).scalars())
    if not wanted:
        return
    triples = (await conn.execute(select(Rule.resource, Rule.operation, Rule.scope).where(
        Rule.id.in_(sorted(wanted))))).all()
    missing = ctx.caller.holds(sorted((t.resource, t.operation, t.scope) for t in triples))
    if missing is not None:
        raise Forbidden("forbidden", f"cannot give rule '{permissions.rule_name(missing)}'"
                        " that you do not hold yourself", field=field)


class RuleEntity(Entity):
    name = "Rule"
    model = Rule
    schema = RULE_SCHEMA
    fields = ("id", "resource", "operation", "scope", "name")
    resource = "rule"

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        triple = (row["resource"], row["operation"], row["scope"])
        return {"id": row["id"], "resource": row["resource"], "operation": row["operation"],
                "scope": row["scope"], "name": permissions.rule_name(triple)}


class RoleEntity(Entity):
    name = "Role"
    model = Role
    schema = ROLE_SCHEMA
    fields = ("id", "name", "description", "organization", "default", "created", "modified",
              "modifier", "rules")
    resource = "role"

    def in_scope(self, ctx: Ctx, scope: str) -> ColumnElement[bool] | None:
        if scope == "global":
            return None
        mine = Role.organization_id == ctx.caller.organization
        # the default roles are everybody's to see, nobody's to change
        return or_(mine, Role.organization_id.is_(None)) if scope == "organization" else mine

    def organization(self) -> Any:
        return Role.organization_id

    async def rows(self, ctx: Ctx, where: ColumnElement[bool] | None, page: Page = EVERY
                   ) -> list[dict[str, Any]]:
        records = await super().rows(ctx, where, page)
        async with ctx.db.read() as conn:
            pairs = (await conn.execute(select(role_rules.c.role_id, role_rules.c.rule_id).where(
                role_rules.c.role_id.in_([r["id"] for r in records])))).all()
        for record in records:
            record["rules"] = sorted(rule for role, rule in pairs if role == record["id"])
        return records

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        r = row
        return {"id": r["id"], "name": r["name"], "description": r["description"],
                "organization": r["organization_id"], "default": r["is_default"],
                "created": iso(r["created"]), "modified": iso(r["modified"]),
                "modifier": r["modifier"]}

    def relations(self, entity_id: str) -> dict[str, tuple[str, ColumnElement[bool]]]:
        holders = select(user_roles.c.user_id).where(user_roles.c.role_id == entity_id)
        granted = select(role_rules.c.rule_id).where(role_rules.c.role_id == entity_id)
        return {"users": ("user", User.id.in_(holders)), "rules": ("rule", Rule.id.in_(granted))}

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, ROLE_WRITABLE, ROLE_READABLE, ("name",))
        name = name_value(body)
        description = expect(body, "description", str, "a string", max_length=4096) \
            if "description" in body else ""
        role_id, now = new_id(), utcnow()
        try:
            async with ctx.db.write() as conn:
                org = await placed_in(conn, ctx, body, "role")
                rules = await rule_ids(conn, body.get("rules", []))
                await check_grant(conn, ctx, (), rules, "rules")
                await conn.execute(insert(Role).values(
                    id=role_id, name=name, description=description, organization_id=org,
                    default=False, created=now, modified=now, modifier=ctx.principal.id))
                if rules:
                    await conn.execute(insert(role_rules), [
                        {"role_id": role_id, "rule_id": r} for r in rules])
        except IntegrityError:
            raise Conflict("duplicate", f"a role named '{name}' already exists", field="name") from None
        return await self.get(ctx, role_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, ("name", "description", "rules"), ROLE_READABLE)
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = name_value(body)
        if "description" in body:
            values["description"] = expect(body, "description", str, "a string",
                                           max_length=4096)
        try:
            async with ctx.db.write() as conn:
                await self._changeable(conn, ctx, "edit", entity_id)
                if "rules" in body:
                    rules = await rule_ids(conn, body["rules"])
                    await check_grant(conn, ctx, (), rules, "rules")
                    await conn.execute(delete(role_rules).where(
                        role_rules.c.role_id == entity_id))
                    if rules:
                        await conn.execute(insert(role_rules), [
                            {"role_id": entity_id, "rule_id": r} for r in rules])
                await conn.execute(update(Role).where(Role.id == entity_id).values(
                    modified=utcnow(), modifier=ctx.principal.id, **values))
        except IntegrityError:
            raise Conflict("duplicate", f"a role named '{values.get('name')}' already "
                           "exists", field="name") from None
        return await self.get(ctx, entity_id)

    async def _changeable(self, conn: AsyncConnection, ctx: Ctx, operation: str,
                          entity_id: str) -> None:
        await self.check(conn, ctx, operation, entity_id)
        default = (await conn.execute(select(Role.default).where(Role.id == entity_id))).scalar()
        if default:
            raise Conflict("protected", "default roles cannot be changed or deleted; "
                           "make a role of your own")

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        async with ctx.db.write() as conn:
            await self._changeable(conn, ctx, "delete", entity_id)
            await conn.execute(delete(Role).where(Role.id == entity_id))
