"""What every entity offers: find, get, create, update, delete.

Subclasses say which fields can be queried (``schema``), how a row becomes
the dict users see (``serialize``), and which writes they allow. Bodies are
checked field by field before anything is written, and every write runs in
one transaction: a refused request changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

import msgspec
from sqlalchemy import ColumnElement, Select, false, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ferry.errors import ApiError, QueryError
from hub import permissions
from hub.query import Query
from hub.query.fields import Context, Schema
from hub.runtime import Ctx

MAX_RESULTS = 100_000

AnySelect = Select[*tuple[Any, ...]]


def iso(value: datetime | None) -> str | None:
    """Times are shown as UTC ISO 8601 to the millisecond, with a trailing Z."""
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


_AT = re.compile(r" - at (?P<key>`key` in )?`\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"(?:unknown|missing required) field `([^`]+)`")


def invalid(exc: msgspec.ValidationError, code: str = "invalid_body", prefix: str = "") -> ApiError:
    """A 422 naming the field a msgspec validation error is about."""
    text = str(exc)
    at = _AT.search(text)
    field = at.group("path") if at else ""
    named = _NAMED.search(text)
    if named:
        field = f"{field}.{named.group(1)}" if field else named.group(1)
    field = ".".join(p for p in (prefix, field) if p) or None
    message = _AT.sub("", text)
    where = "a key of field" if at and at.group("key") else "field"
    return ApiError(422, code, message + (f" ({where} '{field}')" if field else ""),
                    {"field": field})


def check_body(body: Any, entity: str, writable: Iterable[str], readable: Iterable[str],
               required: Iterable[str] = ()) -> dict[str, Any]:
    """Refuse anything but a mapping of writable fields, naming the first wrong one."""
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", f"body must be a JSON object of {entity} fields")
    writable = set(writable)
    for key in body:
        if key not in writable:
            if key in set(readable):
                raise ApiError(422, "read_only", f"field '{key}' of {entity} cannot be set",
                               {"field": key})
            raise ApiError(422, "unknown_field", f"unknown field '{key}' for {entity} "
                           f"(writable: {', '.join(sorted(writable))})", {"field": key})
    for key in required:
        if key not in body:
            raise ApiError(422, "missing_field", f"field '{key}' is required", {"field": key})
    return body


def expect(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str,
           *, max_length: int | None = 255, nullable: bool = False) -> Any:
    """The value of ``key`` if it has the right type; 422 naming the field otherwise."""
    value = body[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ApiError(422, "wrong_type", f"field '{key}' must be {what}", {"field": key})
    if not isinstance(value, kind):
        raise ApiError(422, "wrong_type", f"field '{key}' must be {what}, got "
                       f"{type(value).__name__}", {"field": key})
    if isinstance(value, str) and max_length is not None and len(value) > max_length:
        raise ApiError(422, "too_long", f"field '{key}' is longer than {max_length} characters",
                       {"field": key})
    return value


def name_value(body: Mapping[str, Any], key: str = "name") -> str:
    value: str = expect(body, key, str, "a string")
    value = value.strip()
    if not value:
        raise ApiError(422, "invalid_value", f"field '{key}' must not be empty", {"field": key})
    return value


def scope_of_organization(ctx: Ctx, organization: str | None) -> str:
    """The scope a record of ``organization`` falls in, for this caller."""
    if organization is not None and organization == ctx.caller.organization:
        return "organization"
    if organization is not None and organization in ctx.caller.partners:
        return "collaboration"
    return "global"


class Entity:
    name: ClassVar[str]
    schema: ClassVar[Schema]
    resource: ClassVar[str]  # its name in rules (hub/permissions.py)

    model: ClassVar[Any]  # the mapped class whose rows this entity shows

    def base_select(self) -> AnySelect:
        """The rows (and joined columns) that ``serialize`` turns into records."""
        return select(self.model)

    def id_column(self) -> Any:
        return self.model.id

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        raise NotImplementedError

    # -- permissions
    def owner(self, ctx: Ctx) -> Any:
        """The column naming the user (or, for an agent's token, the agent) a row is
        ``own`` to; None: no row is anybody's own."""
        return None

    def organization(self) -> Any:
        """An expression giving the organization a row belongs to; None: no organization."""
        return None

    def in_scope(self, ctx: Ctx, scope: str) -> ColumnElement[bool] | None:
        """Rows within ``scope`` of this caller (None: all of them)."""
        caller = ctx.caller
        if scope == "global":
            return None
        if scope == "own":
            owner = self.owner(ctx)
            return false() if owner is None else owner == caller.id
        organization = self.organization()
        if organization is None:
            return false()
        if scope == "organization":
            return false() if caller.organization is None \
                else organization == caller.organization
        within: ColumnElement[bool] = organization.in_(sorted(caller.partners))
        return within

    def allowed(self, ctx: Ctx, operation: str = "view", resource: str | None = None
                ) -> ColumnElement[bool] | None:
        """Rows the caller may ``operation``: 403 naming the rule when it may do it to none.
        ``resource``: the rules of another resource that lives in these rows (a job's
        tasks)."""
        resource = resource or self.resource
        widest = ctx.caller.widest(resource, operation)
        if widest is None:
            ctx.caller.need(resource, operation, permissions.RESOURCES[resource][0])
        return self.in_scope(ctx, widest or "global")

    async def check(self, conn: AsyncConnection, ctx: Ctx, operation: str,
                    entity_id: str, resource: str | None = None) -> None:
        """May the caller ``operation`` this record? 404 when there is no such record,
        403 naming the narrowest missing rule when it is out of the caller's reach."""
        resource = resource or self.resource
        allowed = self.allowed(ctx, operation, resource)
        exists = select(self.id_column()).where(self.id_column() == entity_id)
        if allowed is not None and (await conn.execute(exists.where(allowed))).first():
            return
        if (await conn.execute(exists)).first() is None:
            raise ApiError(404, "not_found", f"no {self.name} with id '{entity_id}'")
        if allowed is None:  # global: any record that exists
            return
        for scope in permissions.RESOURCES[resource]:
            where = self.in_scope(ctx, scope)
            if where is None or (await conn.execute(exists.where(where))).first() is not None:
                ctx.caller.need(resource, operation, scope)
        ctx.caller.need(resource, operation, "global")

    def visible(self, ctx: Ctx) -> ColumnElement[bool] | None:
        """Rows this caller may see."""
        return self.allowed(ctx, "view")

    def relations(self, entity_id: str) -> dict[str, tuple[str, ColumnElement[bool]]]:
        """Related records by relation name: the entity they are, and which rows."""
        return {}

    async def rows(self, ctx: Ctx, where: ColumnElement[bool] | None,
                   limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        stmt = self.base_select()
        scope = self.visible(ctx)
        if scope is not None:
            stmt = stmt.where(scope)
        if where is not None:
            stmt = stmt.where(where)
        stmt = stmt.order_by(self.id_column()).offset(offset).limit(min(limit or MAX_RESULTS, MAX_RESULTS))
        async with ctx.db.read() as conn:
            result = await conn.execute(stmt)
            return [self.serialize(r, ctx) for r in result.mappings()]

    async def find(self, ctx: Ctx, query: Query, *, limit: int | None = None, offset: int = 0,
                   finished: bool = False, archived: bool = False) -> list[dict[str, Any]]:
        if finished or archived:
            flag = "finished" if finished else "archived"
            raise QueryError(f"'{flag}' applies to jobs, not to {self.name}")
        qctx = Context(now=ctx.now, offline_grace=ctx.rt.offline_grace, text=query.text)
        return await self.rows(ctx, self.schema.compile(query, qctx), limit, offset)

    async def get(self, ctx: Ctx, entity_id: str) -> dict[str, Any]:
        found = await self.rows(ctx, self.id_column() == entity_id, 1)
        if not found:
            async with ctx.db.read() as conn:
                await self.check(conn, ctx, "view", entity_id)  # 404, or 403 naming the rule
            raise ApiError(404, "not_found", f"no {self.name} with id '{entity_id}'")
        return found[0]

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        raise ApiError(405, "not_allowed", f"{self.name} records cannot be created through the API")

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        raise ApiError(405, "not_allowed", f"{self.name} records cannot be modified")

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        raise ApiError(405, "not_allowed", f"{self.name} records cannot be deleted")
