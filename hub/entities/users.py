"""Users of the hub. Passwords are stored as argon2 hashes and never shown.

A user belongs to an organization and holds roles, and maybe rules of
their own (hub/permissions.py). Unless told otherwise a new user is a
``viewer`` of the creator's organization. Nobody gives a rule they lack.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import permissions
from hub.access import scope_of_organization
from hub.bodies import check_body, expect, name_value
from hub.callers import load_caller
from hub.entities.base import Entity
from hub.entities.organizations import organization_id, placed_in
from hub.entities.paging import EVERY, Page
from hub.entities.roles import check_grant, role_ids, rule_ids
from hub.errors import Conflict, Forbidden, Invalid
from hub.query.fields import Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.security import check_password_strength, hash_secret_async, verify_secret_async
from hub.storage.models import (
    Job,
    Organization,
    Role,
    User,
    iso,
    new_id,
    user_roles,
    user_rules,
    utcnow,
)

SCHEMA = Schema("User", {
    "id": Text(User.id),
    "username": Text(User.username, nocase=True),
    "email": Text(User.email, nocase=True),
    "firstname": Text(User.firstname),
    "lastname": Text(User.lastname),
    "role": Text(User.role),
    "organization": Reference(User.organization_id, Organization.id, (Organization.name,)),
    "created": Timestamp(User.created),
    "modified": Timestamp(User.modified),
})

ROOT = "root"
ROOT_ROLE = permissions.ROOT

READABLE = ("id", "username", "email", "firstname", "lastname", "role", "organization",
            "roles", "rules", "created", "modified", "modifier")
WRITABLE = ("username", "password", "email", "firstname", "lastname", "organization", "roles",
            "rules")
# a user who sets their own password through PATCH says the current one too
UPDATABLE = (*WRITABLE, "current_password")


class UserEntity(Entity):
    name = "User"
    model = User
    schema = SCHEMA
    fields = READABLE
    resource = "user"

    def owner(self, ctx: Ctx) -> Any:
        return User.id if ctx.principal.kind == "user" else None

    def organization(self) -> Any:
        return User.organization_id

    async def rows(self, ctx: Ctx, where: ColumnElement[bool] | None, page: Page = EVERY
                   ) -> list[dict[str, Any]]:
        records = await super().rows(ctx, where, page)
        ids = [r["id"] for r in records]
        async with ctx.db.read() as conn:
            roles = (await conn.execute(select(user_roles.c.user_id, user_roles.c.role_id)
                                        .where(user_roles.c.user_id.in_(ids)))).all()
            rules = (await conn.execute(select(user_rules.c.user_id, user_rules.c.rule_id)
                                        .where(user_rules.c.user_id.in_(ids)))).all()
        for record in records:
            record["roles"] = sorted(r for u, r in roles if u == record["id"])
            record["rules"] = sorted(r for u, r in rules if u == record["id"])
        return records

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        u = row
        return {
            "id": u["id"],
            "username": u["username"],
            "email": u["email"],
            "firstname": u["firstname"],
            "lastname": u["lastname"],
            "role": u["role"],
            "organization": u["organization_id"],
            "created": iso(u["created"]),
            "modified": iso(u["modified"]),
            "modifier": u["modifier"],
        }

    def relations(self, entity_id: str) -> dict[str, tuple[str, ColumnElement[bool]]]:
        held = select(user_roles.c.role_id).where(user_roles.c.user_id == entity_id)
        return {"roles": ("role", Role.id.in_(held)),
                "jobs": ("job", and_(Job.user_id == entity_id, Job.deleted.is_(None)))}

    @staticmethod
    def _values(body: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "username" in body:
            values["username"] = name_value(body, "username")
        for key in ("email", "firstname", "lastname"):
            if key in body:
                values[key] = expect(body, key, str, "a string", nullable=key == "email")
        return values

    @staticmethod
    async def _grants(conn: AsyncConnection, ctx: Ctx, body: dict[str, Any],
                      organization: str | None) -> tuple[list[str] | None, list[str] | None]:
        """The roles and rules the body gives (None: unchanged), checked against what the
        caller holds itself."""
        roles = await role_ids(conn, body["roles"], organization) if "roles" in body else None
        rules = await rule_ids(conn, body["rules"]) if "rules" in body else None
        await check_grant(conn, ctx, roles or (), rules or (),
                          "roles" if roles else "rules")
        return roles, rules

    @staticmethod
    async def _write_grants(conn: AsyncConnection, user_id: str, roles: list[str] | None,
                            rules: list[str] | None) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if roles is not None:
            await conn.execute(delete(user_roles).where(user_roles.c.user_id == user_id))
            if roles:
                await conn.execute(insert(user_roles), [{"user_id": user_id, "role_id": r}
                                                        for r in roles])
                first = (await conn.execute(select(Role.name).where(Role.id == roles[0])
                                            )).scalar()
                values["role"] = str(first)[:32]
            else:
                values["role"] = ""
        if rules is not None:
            await conn.execute(delete(user_rules).where(user_rules.c.user_id == user_id))
            if rules:
                await conn.execute(insert(user_rules), [{"user_id": user_id, "rule_id": r}
                                                        for r in rules])
        return values

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE, ("username", "password"))
        values = self._values(body)
        if values["username"] == ROOT:
            raise Conflict("protected", f"the username '{ROOT}' is reserved", field="username")
        password = expect(body, "password", str, "a string", max_length=1024)
        check_password_strength(password)
        values["password_hash"] = await hash_secret_async(password)
        body.setdefault("roles", [permissions.LEAST])  # least privilege unless told otherwise
        user_id = new_id()
        now = utcnow()
        try:
            async with ctx.db.write() as conn:
                org = await placed_in(conn, ctx, body, "user")
                roles, rules = await self._grants(conn, ctx, body, org)
                await conn.execute(insert(User).values(
                    id=user_id, created=now, modified=now, organization_id=org,
                    modifier=ctx.principal.id, **values))
                role = await self._write_grants(conn, user_id, roles, rules)
                await conn.execute(update(User).where(User.id == user_id).values(**role))
        except IntegrityError:
            raise Conflict("duplicate", f"user '{values['username']}' already exists",
                           field="username") from None
        return await self.get(ctx, user_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, UPDATABLE, READABLE)
        current_password = body.pop("current_password", None)
        values = self._values(body)
        if "password" in body:
            password = expect(body, "password", str, "a string", max_length=1024)
            if ctx.principal.run is not None:
                raise Forbidden("forbidden", "a run's token changes no password")
            async with ctx.db.read() as conn:  # may it at all? before anything is guessed
                await self.check(conn, ctx, "edit", entity_id)
                await self._not_above(conn, ctx, entity_id)
            check_password_strength(password)
            if entity_id == ctx.principal.id and not ctx.principal.local:
                await self._current_password(ctx, entity_id, current_password)
            values["password_hash"] = await hash_secret_async(password)
            values["password_change_required"] = False
        elif current_password is not None:
            raise Invalid("invalid_body", "'current_password' goes with a new "
                          "'password'", field="current_password")
        try:
            async with ctx.db.write() as conn:
                await self.check(conn, ctx, "edit", entity_id)
                await self._not_above(conn, ctx, entity_id)
                current = (await conn.execute(select(User.username, User.role,
                                                     User.organization_id)
                                              .where(User.id == entity_id))).one()
                if current.role == ROOT_ROLE and ({"roles", "rules", "organization"} & set(body)
                                                  or values.get("username", ROOT) != ROOT):
                    raise Conflict("protected", "the root user cannot be renamed, moved or "
                                   "given other roles", field="username")
                if current.role != ROOT_ROLE and values.get("username") == ROOT:
                    raise Conflict("protected", f"the username '{ROOT}' is reserved", field="username")
                org = current.organization_id
                if "organization" in body:
                    org = await organization_id(conn, expect(
                        body, "organization", str, "an organization id or name"))
                    ctx.caller.need("user", "edit", scope_of_organization(ctx, org))
                    values["organization_id"] = org
                if {"roles", "rules"} & set(body) and entity_id == ctx.principal.id \
                        and ctx.caller.widest("user", "edit") == "own":
                    ctx.caller.need("user", "edit", "organization")  # no self-promotion
                roles, rules = await self._grants(conn, ctx, body, org)
                values.update(await self._write_grants(conn, entity_id, roles, rules))
                values.update(modified=utcnow(), modifier=ctx.principal.id)
                await conn.execute(update(User).where(User.id == entity_id).values(**values))
        except IntegrityError:
            raise Conflict("duplicate", f"user '{values.get('username')}' already exists",
                           field="username") from None
        return await self.get(ctx, entity_id)

    @staticmethod
    async def _current_password(ctx: Ctx, user_id: str, given: Any) -> None:
        """One's own password changes only with the current one, on every path: a stolen
        token (or a run's) must not be enough to take the account over."""
        if not isinstance(given, str) or not given:
            raise Invalid("current_password_required", "to change your own password, "
                          "send your current one too: {\"password\": <new>, "
                          "\"current_password\": <current>}", field="current_password")
        # guesses are limited as logins are, per user (a stolen token is one user's)
        guesses = f"password change of user {user_id}"
        ctx.rt.logins.check(guesses)
        async with ctx.db.read() as conn:
            stored = (await conn.execute(select(User.password_hash)
                                         .where(User.id == user_id))).scalar()
        if stored is None or not await verify_secret_async(stored, given[:1024]):
            ctx.rt.logins.failed(guesses)
            raise Forbidden("wrong_password", "the current password is wrong", field="current_password")

    @staticmethod
    async def _not_above(conn: AsyncConnection, ctx: Ctx, entity_id: str) -> None:
        """Nobody changes (their password, say) or deletes a user holding a rule they lack:
        an organization admin cannot take over root."""
        if entity_id == ctx.principal.id:
            return
        target = await load_caller(conn, "user", entity_id)
        missing = ctx.caller.holds(sorted(target.rules - permissions.ALWAYS))
        if missing is not None:
            raise Forbidden("forbidden", f"this user holds the rule "
                            f"'{permissions.rule_name(missing)}' that you do not; only someone "
                            "who holds all of their rules may change or delete them",
                            rule=dict(zip(("resource", "operation", "scope"), missing,
                                          strict=True)))

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        if entity_id == ctx.principal.id:
            raise Conflict("self_delete", "you cannot delete your own user")
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "delete", entity_id)
            await self._not_above(conn, ctx, entity_id)
            role = (await conn.execute(select(User.role).where(User.id == entity_id))).scalar()
            if role == ROOT_ROLE:
                raise Conflict("protected", "the root user cannot be deleted")
            await conn.execute(delete(User).where(User.id == entity_id))
