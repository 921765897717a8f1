"""Pages of records: what one list answer may hold, and how the next one is asked for.

Every list answer (``/find``, ``/{entity}/{id}/{relation}``) is one ``Page``: at most
``limit`` records in id order (ids grow with creation time), after the record a
``cursor`` names and ``skip`` more. The cursor is keyset paging: it encodes the last id
of the page before, and the page is the rows with a greater id, which an index on the id
(the primary key, or one that ends with it) finds without reading the rows before; a
skip of 100,000 makes the database read and drop 100,000 rows for every page.

A page also stops early once the large fields it holds (a task's ``result``, a job's
spec) pass a byte budget: the number of records alone does not bound an answer whose
records can each be a mebibyte. ``next`` then goes on from the last record given.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, String, cast, func

from hub.errors import Invalid

T = TypeVar("T")
R = TypeVar("R")
AnySelect = Select[*tuple[Any, ...]]

EVERY_FIELD = "*"  # in ``attributes``: every field a list gives unasked, and the large ones named
MAX_RESULTS = 100_000  # what an internal caller (a shell, a group update) gets at most
TURN = 500  # records built between two yields to the event loop
_CURSOR = "c1."  # a version, so that the encoding can change without misreading old ones


@dataclass(frozen=True)
class Page:
    """Which records one answer holds.

    ``attributes``: the fields a request named: its records hold only those (and ``id``),
    the large ones (``Entity.optional``) among them; with ``*``, every field but the
    large ones not named; empty: every field but the large ones; None: every field (one
    record by id, internal callers).
    ``max_bytes``: the budget of the large fields (``Entity.weight``); None: no budget.
    """

    limit: int = MAX_RESULTS
    skip: int = 0
    after: str | None = None
    attributes: frozenset[str] | None = None
    max_bytes: int | None = None

    def includes(self, field: str) -> bool:
        return self.attributes is None or field in self.attributes

    def with_limit(self, limit: int) -> Page:
        return replace(self, limit=limit)


EVERY = Page()


@dataclass(frozen=True)
class Listing:
    """One page of records, and the cursor of the next page (None: this is the last)."""

    records: list[dict[str, Any]]
    next: str | None


def encode_cursor(last_id: str) -> str:
    """The opaque cursor of the page after the record ``last_id``."""
    return _CURSOR + base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor continues after; ``Invalid`` naming ``cursor`` for anything not ours."""
    if cursor.startswith(_CURSOR):
        text = cursor[len(_CURSOR):]
        try:
            last = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            pass
        else:
            if 0 < len(last) <= 64 and last.isprintable():
                return last
    raise Invalid("invalid_cursor", "parameter 'cursor' is not a cursor this hub gave "
                  "(pass the 'next' of the previous answer as it is)", field="cursor")


def window(stmt: AnySelect, id_column: Any, page: Page, extra: int = 0) -> AnySelect:
    """``stmt`` restricted to ``page``: after its cursor, in id order, ``skip`` dropped, at
    most ``limit + extra`` rows (one more than the page tells whether another follows)."""
    if page.after is not None:
        stmt = stmt.where(id_column > page.after)
    return stmt.order_by(id_column).offset(page.skip).limit(page.limit + extra)


def restrict(stmt: AnySelect, *conditions: ColumnElement[bool] | None) -> AnySelect:
    """``stmt`` with each condition that is not None (None: no restriction)."""
    for condition in conditions:
        if condition is not None:
            stmt = stmt.where(condition)
    return stmt


def size_of(columns: Iterable[Any]) -> ColumnElement[Any] | None:
    """The characters of ``columns`` together, as SQL (None for no column)."""
    sizes = [func.coalesce(func.length(c), 0) for c in columns]
    if not sizes:
        return None
    total: ColumnElement[Any] = sizes[0]
    for size in sizes[1:]:
        total = total + size
    return total


def fitting(weights: Iterable[int | None], budget: int) -> int:
    """How many rows, in order, fit in ``budget`` characters (at least one: a page always
    moves on, however large its first record)."""
    total = count = 0
    for weight in weights:
        total += weight or 0
        if count and total > budget:
            break
        count += 1
    return count


async def in_turns(items: Iterable[T], build: Callable[[T], R]) -> list[R]:
    """``build`` applied to each item, yielding to the event loop every ``TURN`` items:
    a page of 10,000 records never holds the loop (check-ins, claims) for long."""
    out: list[R] = []
    for n, item in enumerate(items, 1):
        out.append(build(item))
        if n % TURN == 0:
            await asyncio.sleep(0)
    return out


def json_size(column: Any) -> ColumnElement[Any]:
    """The characters of a JSON column's text, as SQL (SQLite and PostgreSQL alike)."""
    size: ColumnElement[Any] = func.coalesce(func.length(cast(column, String)), 0)
    return size
