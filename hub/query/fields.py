"""Queryable fields, and turning a parsed condition into SQL.

Each entity maps field names (``type``, ``site``, ``job.id``) to a
``Field`` that knows its column, its value type and its human-readable
forms (``site=hq``, ``user=user@mail.com``, ``type=server``). The bare
values ``null`` and ``none`` mean SQL NULL (quote them for the text).

``contains`` and ``matches`` (a glob: ``*`` any run, ``?`` one character,
``[*]``, ``[?]`` and ``[[]`` the character itself) become SQL ``LIKE`` with
every ``%`` and ``_`` of the value escaped: a value is never a pattern of
its own, and no regular expression reaches the database. Both compare
without regard to case, the same on SQLite and PostgreSQL (whose ``LIKE``
alone would differ). ``=`` and the others ignore case only on the fields
made with ``nocase`` (names, codes, usernames, emails: what people type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, true
from sqlalchemy.sql.elements import KeyedColumnElement

from core.errors import QueryError
from hub.query.parser import WORDS, And, Comparison, Member, Node, Or, Query
from hub.storage.models import Client, Share, Site, User
from protocol.paths import PathRefused, join, split_share_path

ORDERING = ("<", ">", "<=", ">=")
NULLS = ("null", "none")
TEXT_OPS = (*WORDS, *(f"not {w}" for w in WORDS))  # contains, matches, and their negations
ESCAPE = "!"  # LIKE's escape character: not a backslash, which SQL dialects read apart


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


def _literal(text: str) -> str:
    return "".join(ESCAPE + ch if ch in f"%_{ESCAPE}" else ch for ch in text)


def like_pattern(cmp: Comparison) -> str:
    """The lower-case ``LIKE`` pattern of a ``contains`` or ``matches`` comparison."""
    text = cmp.value.lower()
    if cmp.op.endswith("contains"):
        return f"%{_literal(text)}%"
    out, i = [], 0
    while i < len(text):
        if text[i:i + 3] in ("[*]", "[?]", "[[]"):
            out.append(_literal(text[i + 1]))
            i += 3
            continue
        out.append({"*": "%", "?": "_"}.get(text[i]) or _literal(text[i]))
        i += 1
    return "".join(out)


def like(columns: tuple[Any, ...], cmp: Comparison) -> ColumnElement[bool]:
    """Whether any of ``columns`` contains or matches the value (``cmp.op`` with or
    without its ``not``), without regard to case."""
    pattern = like_pattern(cmp)
    return or_(*(func.lower(c).like(pattern, escape=ESCAPE) for c in columns))


def _same(col: Any, value: str, nocase: bool) -> ColumnElement[bool]:
    return func.lower(col) == value.lower() if nocase else col == value


class Field:
    kind = "text"
    text_ops = False  # whether contains and matches apply

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Field):
    """Text; ``nocase``: compared without regard to case by every operator."""

    column: Any
    nocase: bool = False
    kind = "text"
    text_ops = True

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        if cmp.op in TEXT_OPS:  # a NULL holds nothing: "not contains" matches it
            found = like((self.column,), cmp)
            return or_(self.column.is_(None), not_(found)) if cmp.op.startswith("not ") \
                else found
        null = _null(cmp, self.column, ctx)
        if null is not None:
            return null
        if self.nocase:
            return _apply(func.lower(self.column), cmp.op, cmp.value.lower())
        return _apply(self.column, cmp.op, cmp.value)


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
    target_names: tuple[Any, ...]  # names, compared without regard to case
    kind = "reference"
    text_ops = True  # on the names

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        if cmp.op in TEXT_OPS:
            named = like(self.target_names, cmp)
            condition = self.column.in_(select(self.target_id).where(named))
            if cmp.op.startswith("not "):
                return or_(self.column.is_(None), not_(condition))
            return condition  # type: ignore[no-any-return]
        null = _null(cmp, self.column, ctx)
        if null is not None:
            return null
        if cmp.op not in ("=", "!="):
            raise ctx.error(f"field '{cmp.field}' can only be compared with = or !=", cmp.position)
        matches = or_(self.target_id == cmp.value,
                      *(_same(n, cmp.value, True) for n in self.target_names))
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
        if isinstance(node, Member):
            # each value as its own comparison: = for in, != for not in
            if node.negated:
                return and_(*(found.compile(replace(i, op="!="), ctx) for i in node.items))
            return or_(*(found.compile(i, ctx) for i in node.items))
        if node.op in TEXT_OPS and not found.text_ops:
            raise ctx.error(f"field '{node.field}' is a {found.kind} field: contains and "
                            "matches apply to text fields (use =, != or in)", node.position)
        return found.compile(node, ctx)


@dataclass(frozen=True)
class Party(Field):
    """A ``<scope>:<id>`` party (jobs.rst): ``source=hq``, ``destination="stockholm"``.

    The value is a name or id of a site, user (username or email), client (code)
    or share; ``site:hq`` or ``user:lars@edit.com`` pins the scope. Names are
    compared without regard to case. A transfer job's party is a share (its
    ``path`` the JSON text of the path inside it): a site or a client matches it
    when the share is served by that client or by a client at that site, so
    ``source=hq`` lists the downloads from hq. ``share=projects/thefilm`` names
    a share path: the jobs whose path is that one or lies below it.
    """

    scope: Any
    ident: Any
    path: Any
    kind = "party"

    def compile(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        if cmp.op not in ("=", "!="):
            raise ctx.error(f"field '{cmp.field}' can only be compared with =, != or in",
                            cmp.position)
        matches = self._shared(cmp, ctx) if cmp.value.startswith("share=") else \
            self._named(cmp.value)
        return matches if cmp.op == "=" else not_(matches)

    def _named(self, text: str) -> ColumnElement[bool]:
        scope, sep, value = text.partition(":")
        if not sep or scope not in ("site", "user", "client", "share"):
            scope, value = "", text
        sites = select(Site.id).where(or_(Site.id == value, _same(Site.name, value, True)))
        clients = select(Client.id).where(or_(Client.id == value,
                                              _same(Client.code, value, True)))
        lookups = {
            "site": sites,
            "user": select(User.id).where(or_(User.id == value,
                                              _same(User.username, value, True),
                                              _same(User.email, value, True))),
            "client": clients,
            "share": select(Share.id).where(or_(Share.id == value,
                                                _same(Share.name, value, True))),
        }
        served = {  # shares served at a site, or by a client
            "site": select(Share.id).join(Client, Client.id == Share.client_id)
            .where(Client.site_id.in_(sites)),
            "client": select(Share.id).where(Share.client_id.in_(clients)),
        }
        return or_(*(and_(self.scope == name, self.ident.in_(ids))
                     for name, ids in lookups.items() if scope in ("", name)),
                   *(and_(self.scope == "share", self.ident.in_(ids))
                     for name, ids in served.items() if scope in ("", name)))

    def _shared(self, cmp: Comparison, ctx: Context) -> ColumnElement[bool]:
        try:
            name, parts = split_share_path(cmp.value)
        except PathRefused as exc:
            raise ctx.error(f"field '{cmp.field}': {exc}", cmp.value_position) from None
        share = and_(self.scope == "share", self.ident.in_(
            select(Share.id).where(_same(Share.name, name, True))))
        if not parts:
            return share
        path = join(parts)  # paths keep their case: a prefix by substr, not LIKE (SQLite's
        below = f"{path}/"  # LIKE ignores case), so that SQLite and PostgreSQL agree
        return and_(share, or_(self.path == path,
                               func.substr(self.path, 1, len(below)) == below))
