"""Queryable fields, and turning a parsed condition into SQL.

Each entity maps field names (``type``, ``site``, ``job.id``) to a
``Field`` that knows its column, its value type and its human-readable
forms (``site=hq``, ``user=user@mail.com``, ``type=server``). The bare
values ``null`` and ``none`` mean SQL NULL (quote them for the text).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, true
from sqlalchemy.sql.elements import KeyedColumnElement

from core.errors import QueryError
from hub.query.parser import And, Comparison, Node, Or, Query
from hub.storage.models import Client, Share, Site, User

ORDERING = ("<", ">", "<=", ">=")
NULLS = ("null", "none")


@dataclass(frozen=True)
class Context:
    """What a condition may depend on besides its text."""

    now: datetime
    offline_grace: timedelta
    text: str = ""

    def error(self, message: str, position: int) -> QueryError:
        return QueryError(message, position=position, query=self.text or None)


Column = KeyedColumnElement[Any]


def _apply(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "=":
        return col == value  # type: ignore[no-any-return]
    if op == "!=":
        return col != value  # type: ignore[no-any-return]
    if op == "<":
        return col < value  # type: ignore[no-any-return]
    if op == ">":
        return col > value  # type: ignore[no-any-return]
    if op == "<=":
        return col <= value  # type: ignore[no-any-return]
    return col >= value  # type: ignore[no-any-return]


def _null(cmp: Comparison, col: Any, ctx: Context) -> ColumnElement[bool] | None:
    if cmp.quoted or cmp.value.lower() not in NULLS:
        return None
    if cmp.op == "=":
        return col.is_(None)  # type: ignore[no-any-return]
    if cmp.op == "!=":
        return col.is_not(None)  # type: ignore[no-any-return]
    raise ctx.error(f"'{cmp.value}' can only be compared with = or !=", cmp.value_position)


class Field:
    kind = "text"

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Field):
    column: Any
    kind = "text"

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        null = _null(cmp, self.column, ctx)
        return null if null is not None else _apply(self.column, cmp.op, cmp.value)


@dataclass(frozen=True)
class Number(Field):
    column: Any
    integer: bool = False

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "integer" if self.integer else "number"

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        null = _null(cmp, self.column, ctx)
        if null is not None:
            return null
        try:
            value: float = int(cmp.value) if self.integer else float(cmp.value)
        except ValueError:
            raise ctx.error(f"field '{cmp.field}' expects {'an integer' if self.integer else 'a number'}, "
                            f"got '{cmp.value}'", cmp.value_position) from None
        return _apply(self.column, cmp.op, value)


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class Boolean(Field):
    column: Any
    kind = "boolean"

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        if cmp.op not in ("=", "!="):
            raise ctx.error(f"field '{cmp.field}' is true or false; use = or !=", cmp.position)
        text = cmp.value.lower()
        if text not in _TRUE | _FALSE:
            raise ctx.error(f"field '{cmp.field}' expects true or false, got '{cmp.value}'",
                            cmp.value_position)
        return _apply(self.column, cmp.op, text in _TRUE)


def parse_time(text: str) -> datetime:
    """An ISO date or date-time as naive UTC."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


@dataclass(frozen=True)
class Timestamp(Field):
    column: Any
    kind = "date-time"

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        null = _null(cmp, self.column, ctx)
        if null is not None:
            return null
        try:
            value = parse_time(cmp.value)
        except (ValueError, OverflowError):
            raise ctx.error(f"field '{cmp.field}' expects an ISO date-time like "
                            f"2024-01-31T12:00:00, got '{cmp.value}'", cmp.value_position) from None
        return _apply(self.column, cmp.op, value)


@dataclass(frozen=True)
class Choice(Field):
    """A column with a closed set of values, each with a human-readable name."""

    column: Any
    names: Mapping[str, Any]  # accepted text -> stored value
    kind = "choice"

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        if cmp.value not in self.names:
            shown = ", ".join(sorted({str(k) for k in self.names}))
            raise ctx.error(f"field '{cmp.field}' has no value '{cmp.value}' (expected one of: "
                            f"{shown})", cmp.value_position)
        value = self.names[cmp.value]
        if cmp.op in ORDERING and not isinstance(value, int | float):
            raise ctx.error(f"field '{cmp.field}' can only be compared with = or !=", cmp.position)
        return _apply(self.column, cmp.op, value)


@dataclass(frozen=True)
class Reference(Field):
    """A link to another record, matched by its id or by its name."""

    column: Any
    target_id: Any
    target_names: tuple[Any, ...]
    kind = "reference"

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        null = _null(cmp, self.column, ctx)
        if null is not None:
            return null
        if cmp.op not in ("=", "!="):
            raise ctx.error(f"field '{cmp.field}' can only be compared with = or !=", cmp.position)
        matches = or_(self.target_id == cmp.value, *(n == cmp.value for n in self.target_names))
        condition = self.column.in_(select(self.target_id).where(matches))
        if cmp.op == "!=":
            return or_(self.column.is_(None), not_(condition))
        return condition  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Derived(Field):
    """A value computed from other columns (a client's ``status``)."""

    conditions: Callable[[Context], Mapping[str, ColumnElement[bool]]]
    kind = "choice"

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        options = self.conditions(ctx)
        if cmp.value not in options:
            raise ctx.error(f"field '{cmp.field}' has no value '{cmp.value}' (expected one of: "
                            f"{', '.join(options)})", cmp.value_position)
        if cmp.op not in ("=", "!="):
            raise ctx.error(f"field '{cmp.field}' can only be compared with = or !=", cmp.position)
        condition = options[cmp.value]
        return condition if cmp.op == "=" else not_(condition)


@dataclass(frozen=True)
class Schema:
    """The queryable fields of one entity."""

    entity: str
    fields: Mapping[str, Field] = field(default_factory=dict)

    def compile(self, query: Query, ctx: Context) -> ColumnElement[bool]:
        if query.where is None:
            return true()
        return self._node(query.where, ctx)

    def _node(self, node: Node, ctx: Context) -> ColumnElement[bool]:
        if isinstance(node, And):
            return and_(*(self._node(n, ctx) for n in node.items))
        if isinstance(node, Or):
            return or_(*(self._node(n, ctx) for n in node.items))
        found = self.fields.get(node.field)
        if found is None:
            raise ctx.error(f"unknown field '{node.field}' for {self.entity} (fields: "
                            f"{', '.join(sorted(self.fields))})", node.position)
        return found.compile(node, ctx)


@dataclass(frozen=True)
class Party(Field):
    """A ``<scope>:<id>`` party (jobs.rst): ``source=hq``, ``destination="stockholm"``.

    The value is a name or id of a site, user (username or email), client (code)
    or share; ``site:hq`` or ``user:lars@edit.com`` pins the scope.
    """

    scope: Any
    ident: Any
    kind = "party"

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        if cmp.op not in ("=", "!="):
            raise ctx.error(f"field '{cmp.field}' can only be compared with = or !=", cmp.position)
        scope, sep, value = cmp.value.partition(":")
        if not sep or scope not in ("site", "user", "client", "share"):
            scope, value = "", cmp.value
        lookups = {
            "site": select(Site.id).where(or_(Site.id == value, Site.name == value)),
            "user": select(User.id).where(or_(User.id == value, User.username == value,
                                              func.lower(User.email) == value.lower())),
            "client": select(Client.id).where(or_(Client.id == value, Client.code == value)),
            "share": select(Share.id).where(or_(Share.id == value, Share.name == value)),
        }
        matches = or_(*(and_(self.scope == name, self.ident.in_(ids))
                        for name, ids in lookups.items() if scope in ("", name)))
        return matches if cmp.op == "=" else not_(matches)
