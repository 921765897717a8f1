"""What every entity offers: find, get, create, update, delete.

Subclasses say which fields can be queried (``schema``), how a row becomes
the dict users see (``serialize``), and which writes they allow. Bodies are
checked field by field before anything is written, and every write runs in
one transaction: a refused request changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.engine import RowMapping

from core.errors import QueryError
from hub.access import Access
from hub.entities.paging import (
    EVERY,
    EVERY_FIELD,
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
from hub.errors import Invalid, NotAllowed, NotFound
from hub.query import Query
from hub.query.fields import Context, Schema
from hub.runtime import Ctx


class Entity(Access):
    """Records of one kind as the API shows them; who may reach them is its ``Access``."""

    schema: ClassVar[Schema]

    def base_select(self) -> AnySelect:
        """The rows (and joined columns) that ``serialize`` turns into records."""
        return select(self.model)

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        raise NotImplementedError

    def relations(self, entity_id: str) -> dict[str, tuple[str, ColumnElement[bool]]]:
        """Related records by relation name: the entity they are, and which rows."""
        return {}

    # -- lists: pages of records (the contract is in hub/entities/paging.py)
    # the fields of a record, which ``attributes`` may name (tests hold them to the records)
    fields: ClassVar[tuple[str, ...]] = ()
    # fields left out of list answers unless a request names them in ``attributes``, each
    # with the columns only it reads (left out of the query too)
    optional: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def attributes(self, names: Iterable[str]) -> frozenset[str]:
        """The fields a request asks for (its answer holds those and ``id``; ``*``: every
        field a list gives unasked); ``Invalid`` naming the first that is not a field."""
        asked = frozenset(names)
        for name in sorted(asked):
            if name not in self.fields and name != EVERY_FIELD:
                raise Invalid("unknown_field", f"'attributes' names '{name}', which is not "
                              f"a field of {self.name} (fields: {', '.join(self.fields)}; or *, every "
                              "field a list gives unasked)",
                              field="attributes")
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
        if page.attributes and EVERY_FIELD not in page.attributes:  # those, and the id
            keep = page.attributes | {"id"}
            records = [{k: v for k, v in r.items() if k in keep} for r in records]
        return Listing(records, encode_cursor(records[-1]["id"]) if more and records else None)

    async def find(self, ctx: Ctx, query: Query, page: Page, *, finished: bool = False,
                   archived: bool = False, inactive: bool = False) -> Listing:
        """One page of the records ``query`` matches."""
        if finished or archived or inactive:
            flag = "finished" if finished else "archived" if archived else "inactive"
            raise QueryError(f"'{flag}' applies to jobs, not to {self.name}")
        qctx = Context(now=ctx.now, offline_grace=ctx.rt.offline_grace, text=query.text)
        return await self.listing(ctx, self.schema.compile(query, qctx), page)

    async def get(self, ctx: Ctx, entity_id: str) -> dict[str, Any]:
        """One record, with every field (the large ones too)."""
        live = self.live()  # a deleted job is as one that never was
        where = self.id_column() == entity_id
        found = await self.rows(ctx, where if live is None else and_(where, live), Page(limit=1))
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
