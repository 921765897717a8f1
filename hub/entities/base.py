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
from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import QueryError
from hub import permissions
from hub.entities.paging import (
    EVERY,
    TURN,
    Listing,
    Page,
    encode_cursor,
    fitting,
    restrict,
    size_of,
    window,
)
from hub.entities.paging import AnySelect as AnySelect  # noqa: PLC0414 (entities import it from here)
from hub.errors import Forbidden, Invalid, NotAllowed, NotFound
from hub.query import Query
from hub.query.fields import Context, Schema
from hub.runtime import Ctx


def iso(value: datetime | None) -> str | None:
    """Times are shown as UTC ISO 8601 to the millisecond, with a trailing Z."""
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


_AT = re.compile(r" - at (?P<key>`key` in )?`\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"(?:unknown|missing required) field `([^`]+)`")


def invalid(exc: msgspec.ValidationError, code: str = "invalid_body", prefix: str = "") -> Invalid:
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
    return Invalid(code, message + (f" ({where} '{field}')" if field else ""), field=field)


def check_body(body: Any, entity: str, writable: Iterable[str], readable: Iterable[str],
               required: Iterable[str] = ()) -> dict[str, Any]:
    """Refuse anything but a mapping of writable fields, naming the first wrong one."""
    if not isinstance(body, dict):
        raise Invalid("invalid_body", f"body must be a JSON object of {entity} fields")
    writable = set(writable)
    for key in body:
        if key not in writable:
            if key in set(readable):
                raise Invalid("read_only", f"field '{key}' of {entity} cannot be set", field=key)
            raise Invalid("unknown_field", f"unknown field '{key}' for {entity} "
                          f"(writable: {', '.join(sorted(writable))})", field=key)
    for key in required:
        if key not in body:
            raise Invalid("missing_field", f"field '{key}' is required", field=key)
    return body


def expect(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str,
           *, max_length: int | None = 255, nullable: bool = False) -> Any:
    """The value of ``key`` if it has the right type; 422 naming the field otherwise."""
    value = body[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise Invalid("wrong_type", f"field '{key}' must be {what}", field=key)
    if not isinstance(value, kind):
        raise Invalid("wrong_type", f"field '{key}' must be {what}, got "
                      f"{type(value).__name__}", field=key)
    if isinstance(value, str) and max_length is not None and len(value) > max_length:
        raise Invalid("too_long", f"field '{key}' is longer than {max_length} characters", field=key)
    return value


def name_value(body: Mapping[str, Any], key: str = "name") -> str:
    value: str = expect(body, key, str, "a string")
    value = value.strip()
    if not value:
        raise Invalid("invalid_value", f"field '{key}' must not be empty", field=key)
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

    def collaboration(self) -> Any:
        """An expression giving the collaboration a row belongs to (None in a row: none),
        for records that can belong to one (jobs, tasks, nodes, agents, shares). Then the
        ``collaboration`` scope reaches the rows of the caller's organization and those
        that belong to one of its collaborations, never a partner's other records. None:
        the scope reaches every record of a partner organization (users, organizations)."""
        return None

    def confine(self, ctx: Ctx) -> ColumnElement[bool] | None:
        """Rows a narrowed token (a docker run's) is confined to, whatever its rules say;
        None: no confinement. Only jobs and tasks are reachable by a run's token at all."""
        return None if ctx.caller.group is None else false()

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
        mine = false() if caller.organization is None else organization == caller.organization
        if scope == "organization":
            return mine
        collaboration = self.collaboration()
        if collaboration is not None:
            return or_(mine, collaboration.in_(sorted(caller.collaborations)))
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
        where = self.in_scope(ctx, widest or "global")
        confined = self.confine(ctx)
        if confined is None:
            return where
        return confined if where is None else and_(where, confined)

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
            raise NotFound("not_found", f"no {self.name} with id '{entity_id}'")
        if allowed is None:  # global: any record that exists
            return
        if ctx.caller.group is not None:  # a run's token, outside its job group
            raise Forbidden("forbidden", f"a run's token reaches only the jobs and tasks "
                            f"of its own job group; this {self.name.lower()} is not one of them")
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

    # -- lists: pages of records (the contract is in hub/entities/paging.py)
    # fields left out of list answers unless a request names them in ``attributes``, each
    # with the columns only it reads (left out of the query too)
    optional: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def attributes(self, names: Iterable[str]) -> frozenset[str]:
        """The left-out fields a request asks for; ``Invalid`` naming the first that is
        not one."""
        asked = frozenset(names)
        for name in sorted(asked):
            if name not in self.optional:
                known = ", ".join(self.optional) or "none"
                raise Invalid("unknown_field", f"'attributes' names '{name}', which is not "
                              f"a field {self.name} lists leave out (those: {known}; every "
                              "other field is always in the answer)", field="attributes")
        return asked

    def weight(self, page: Page) -> ColumnElement[Any] | None:
        """The characters of a row's large fields that ``page`` includes, as SQL; None when
        it includes none (every other field of a record is small)."""
        return size_of(self.model.__table__.c[c] for f, cs in self.optional.items()
                       if page.includes(f) for c in cs)

    def left_out(self, page: Page) -> set[str]:
        """The columns no field of ``page`` reads."""
        return {c for f, cs in self.optional.items() if not page.includes(f) for c in cs}

    async def rows(self, ctx: Ctx, where: ColumnElement[bool] | None, page: Page = EVERY
                   ) -> list[dict[str, Any]]:
        """The records of ``page`` among the rows matching ``where`` that the caller may
        see, in id order. Subclasses that add to records override this and call it."""
        stmt = self.base_select()
        left_out = self.left_out(page)
        if left_out:
            stmt = stmt.with_only_columns(*(c for c in stmt.selected_columns
                                            if getattr(c, "name", None) not in left_out))
        stmt = window(restrict(stmt, self.visible(ctx), where), self.id_column(), page)
        async with ctx.db.read() as conn:
            # fetched TURN rows at a time, each fetch an await: a page of 10,000 records
            # never holds the event loop (check-ins, claims) for long
            records: list[dict[str, Any]] = []
            async for part in (await conn.stream(stmt)).mappings().partitions(TURN):
                records.extend(self.serialize(row, ctx) for row in part)
            return records

    async def listing(self, ctx: Ctx, where: ColumnElement[bool] | None, page: Page) -> Listing:
        """One page of a list answer, and the cursor of the next (None on the last page)."""
        weight = self.weight(page) if page.max_bytes is not None else None
        if weight is None or page.max_bytes is None:
            records = await self.rows(ctx, where, page.with_limit(page.limit + 1))
            more = len(records) > page.limit  # the one more tells a page follows
            del records[page.limit:]
        else:
            # sizes first (no large value leaves the database), then only the records
            # that fit: the budget bounds what the hub holds, not just what it sends
            probe = window(restrict(select(self.id_column(), weight), self.visible(ctx), where),
                           self.id_column(), page, extra=1)
            async with ctx.db.read() as conn:
                weights = [row[1] for row in await conn.execute(probe)]
            take = min(fitting(weights, page.max_bytes), page.limit)
            records = await self.rows(ctx, where, page.with_limit(take))
            more = len(weights) > take
        return Listing(records, encode_cursor(records[-1]["id"]) if more and records else None)

    async def find(self, ctx: Ctx, query: Query, page: Page, *, finished: bool = False,
                   archived: bool = False) -> Listing:
        """One page of the records ``query`` matches."""
        if finished or archived:
            flag = "finished" if finished else "archived"
            raise QueryError(f"'{flag}' applies to jobs, not to {self.name}")
        qctx = Context(now=ctx.now, offline_grace=ctx.rt.offline_grace, text=query.text)
        return await self.listing(ctx, self.schema.compile(query, qctx), page)

    async def get(self, ctx: Ctx, entity_id: str) -> dict[str, Any]:
        """One record, with every field (the large ones too)."""
        found = await self.rows(ctx, self.id_column() == entity_id, Page(limit=1))
        if not found:
            async with ctx.db.read() as conn:
                await self.check(conn, ctx, "view", entity_id)  # NotFound, or Forbidden naming the rule
            raise NotFound("not_found", f"no {self.name} with id '{entity_id}'")
        return found[0]

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        raise NotAllowed("not_allowed", f"{self.name} records cannot be created through the API")

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        raise NotAllowed("not_allowed", f"{self.name} records cannot be modified")

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        raise NotAllowed("not_allowed", f"{self.name} records cannot be deleted")
