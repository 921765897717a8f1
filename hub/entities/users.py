"""Users of the hub. Passwords are stored as argon2 hashes and never shown.

Roles and rules arrive with the administration issue; until then every user
administers the hub.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from ferry.errors import ApiError
from hub.entities.base import Entity, check_body, expect, iso, name_value
from hub.query.fields import Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.security import check_password_strength, hash_secret_async
from hub.storage.models import User, new_id, utcnow

SCHEMA = Schema("User", {
    "id": Text(User.id),
    "username": Text(User.username),
    "email": Text(User.email),
    "firstname": Text(User.firstname),
    "lastname": Text(User.lastname),
    "role": Text(User.role),
    "created": Timestamp(User.created),
    "modified": Timestamp(User.modified),
})

ROOT = "root"
ROOT_ROLE = "root"

READABLE = ("id", "username", "email", "firstname", "lastname", "role", "created", "modified",
            "modifier")
WRITABLE = ("username", "password", "email", "firstname", "lastname")


class UserEntity(Entity):
    name = "User"
    model = User
    schema = SCHEMA

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        u = row
        return {
            "id": u["id"],
            "username": u["username"],
            "email": u["email"],
            "firstname": u["firstname"],
            "lastname": u["lastname"],
            "role": u["role"],
            "created": iso(u["created"]),
            "modified": iso(u["modified"]),
            "modifier": u["modifier"],
        }

    @staticmethod
    def _values(body: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "username" in body:
            values["username"] = name_value(body, "username")
        for key in ("email", "firstname", "lastname"):
            if key in body:
                values[key] = expect(body, key, str, "a string", nullable=key == "email")
        return values

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        self.visible(ctx)
        body = check_body(body, self.name, WRITABLE, READABLE, ("username", "password"))
        values = self._values(body)
        password = expect(body, "password", str, "a string", max_length=1024)
        check_password_strength(password)
        values["password_hash"] = await hash_secret_async(password)
        user_id = new_id()
        now = utcnow()
        try:
            async with ctx.db.write() as conn:
                await conn.execute(insert(User).values(
                    id=user_id, role="admin", created=now, modified=now,
                    modifier=ctx.principal.id, **values))
        except IntegrityError:
            raise ApiError(409, "duplicate", f"user '{values['username']}' already exists",
                           {"field": "username"}) from None
        return await self.get(ctx, user_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        self.visible(ctx)
        body = check_body(body, self.name, WRITABLE, READABLE)
        values = self._values(body)
        if "username" in values:
            async with ctx.db.read() as conn:
                current = (await conn.execute(select(User.username, User.role)
                                              .where(User.id == entity_id))).first()
            if current is not None and current.role == ROOT_ROLE \
                    and values["username"] != current.username:
                raise ApiError(409, "protected", "the root user cannot be renamed",
                               {"field": "username"})
            if current is not None and current.role != ROOT_ROLE and values["username"] == ROOT:
                raise ApiError(409, "protected", f"the username '{ROOT}' is reserved",
                               {"field": "username"})
        if "password" in body:
            password = expect(body, "password", str, "a string", max_length=1024)
            check_password_strength(password)
            values["password_hash"] = await hash_secret_async(password)
        try:
            async with ctx.db.write() as conn:
                values.update(modified=utcnow(), modifier=ctx.principal.id)
                done = await conn.execute(update(User).where(User.id == entity_id).values(**values))
                if done.rowcount == 0:
                    raise ApiError(404, "not_found", f"no User with id '{entity_id}'")
        except IntegrityError:
            raise ApiError(409, "duplicate", f"user '{values.get('username')}' already exists",
                           {"field": "username"}) from None
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        self.visible(ctx)
        if entity_id == ctx.principal.id:
            raise ApiError(409, "self_delete", "you cannot delete your own user")
        async with ctx.db.write() as conn:
            role = (await conn.execute(select(User.role).where(User.id == entity_id))).scalar()
            if role is None:
                raise ApiError(404, "not_found", f"no User with id '{entity_id}'")
            if role == ROOT_ROLE:
                raise ApiError(409, "protected", "the root user cannot be deleted")
            await conn.execute(delete(User).where(User.id == entity_id))


