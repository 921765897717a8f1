"""The hub shell's records: ``db.<Model>`` makes, gets and saves them through the entity
code of the API, each call one transaction on the shell's event loop (``Runner``).

A model is described by a ``Spec``: the entity it is, the fields a save may write, the
fields that hold other records (as ids), the relations a record offers as attributes, and
the reference's names for Ferry's fields (``aliases``). ``hub/shell_work.py`` adds the
reference's tasks and runs on top.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, and_

from core.errors import ApiError, FerryError
from hub import permissions
from hub.api.errors import as_api_error
from hub.entities import entity
from hub.errors import Refusal
from hub.runtime import Ctx

if TYPE_CHECKING:
    from hub.admin import AdminSession

T = TypeVar("T")
Where = Callable[[str], ColumnElement[bool]]  # an id -> which rows


@dataclass(frozen=True)
class Spec:
    entity: str  # what the API calls it
    writable: tuple[str, ...] = ()
    links: dict[str, str] = field(default_factory=dict)  # field -> model of the record it names
    lists: dict[str, str] = field(default_factory=dict)  # field -> model of the records it lists
    relations: dict[str, str] = field(default_factory=dict)  # the entity's relations, by model
    # relations of the shell's own: name -> (model, rows); before the entity's
    own: dict[str, tuple[str, Where]] = field(default_factory=dict)
    aliases: dict[str, Callable[[Any], Any]] = field(default_factory=dict)  # from a Record
    only: ColumnElement[bool] | None = None  # the entity's rows this model holds (None: all)
    finder: str = ""  # how to find one without its id, for messages: db.X.get_by_name("…")


class ShellError(FerryError):
    """A shell call that cannot work as written (it says what to write instead)."""


class Runner:
    """An event loop in a thread, holding the admin session; the shell waits on it."""

    def __init__(self, session: AdminSession) -> None:
        self.session = session
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hub-shell",
                                       daemon=True)
        self.thread.start()
        self.call(session.open())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the shell's loop. What the hub refuses raises as the API answers
        it: an ``ApiError`` with its status, code and message."""
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        except Refusal as refusal:
            raise as_api_error(refusal) from None

    def act(self, fn: Any, *args: Any) -> Any:
        """``fn(ctx, *args)`` in one transaction."""
        async def run() -> Any:
            async with self.session.transaction() as ctx:
                return await fn(ctx, *args)
        return self.call(run())

    def close(self) -> None:
        self.call(self.session.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class Record:
    """One record: its fields as attributes, its relations as lists of records."""

    def __init__(self, model: Model, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_data", dict(data))
        object.__setattr__(self, "_changes", {})
        object.__setattr__(self, "_lists", {})

    def __getattr__(self, name: str) -> Any:
        model: Model = self._model
        spec = model.spec
        if name in self._lists:
            return self._lists[name]
        if name in self._changes:
            return self._changes[name]
        ident = self._data.get("id")
        if ident and (name in spec.own or name in spec.relations):  # live, as in the reference
            if name in spec.own:
                target, where = spec.own[name]
                rows = model.db.runner.act(_rows, getattr(model.db, target), where(ident))
            else:
                target = spec.relations[name]
                rows = model.db.runner.act(_related, spec.entity, ident, name)
            other = getattr(model.db, target)
            self._lists[name] = [other.record(r) for r in rows]
            return self._lists[name]
        if name in spec.lists and name in self._data:
            other = getattr(model.db, spec.lists[name])
            self._lists[name] = [other.get(i) for i in self._data[name]]
            return self._lists[name]
        if name in spec.links and self._data.get(name):
            return getattr(model.db, spec.links[name]).get(self._data[name])
        if name in spec.aliases and ident:  # the reference's name, before Ferry's field
            return spec.aliases[name](self)
        if name in self._data:
            return self._data[name]
        raise AttributeError(f"{model.name} has no field or relation '{name}' "
                             f"(see db.{model.name}.help())")

    def __setattr__(self, name: str, value: Any) -> None:
        spec = self._model.spec
        if name not in spec.writable:
            raise AttributeError(f"{self._model.name}.{name} cannot be set (writable: "
                                 f"{', '.join(spec.writable) or 'none'})")
        if name in spec.lists:
            self._lists[name] = list(value)
        else:
            self._changes[name] = value

    def _body(self) -> dict[str, Any]:
        body = {k: ref(v) for k, v in self._changes.items()}
        for name, records in self._lists.items():
            if name not in self._model.spec.lists:
                continue  # a relation read, not a field to write
            ids = [ref(r) for r in records]
            if sorted(ids) != sorted(self._data.get(name) or []):
                body[name] = ids
        return body

    def save(self) -> Record:
        """Create or update through the API's validation, in one transaction."""
        body = self._body()
        if self._data.get("id") and not body:
            fresh = self._data
        else:
            fresh = self._model.write(self._data.get("id"), body)
        if "api_key" in fresh:
            print(f"api_key: {fresh['api_key']}  (shown once; only its hash is stored)")
        self._fresh(fresh)
        return self

    def _fresh(self, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", dict(data))
        object.__setattr__(self, "_changes", {})
        object.__setattr__(self, "_lists", {})

    def delete(self) -> None:
        self._model.db.runner.act(entity(self._model.spec.entity).delete, self._data["id"])

    def __repr__(self) -> str:
        label = self._data.get("name") or self._data.get("username") or \
            self._data.get("code") or ""
        return f"<{self._model.name} {self._data.get('id', '(unsaved)')} {label}>".replace(
            "  ", " ")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and other._data.get("id") == self._data.get("id")

    def __hash__(self) -> int:
        return hash(self._data.get("id"))


def ref(value: Any) -> Any:
    """A record stands for its id in a body."""
    if isinstance(value, Record):
        return value._data["id"]
    if isinstance(value, list):
        return [ref(v) for v in value]
    return value


async def _related(ctx: Ctx, name: str, ident: str, relation: str) -> list[dict[str, Any]]:
    target, where = entity(name).relations(ident)[relation]
    return await entity(target).rows(ctx, where)


async def _rows(ctx: Ctx, model: Model, where: ColumnElement[bool] | None
                ) -> list[dict[str, Any]]:
    only = model.spec.only
    both = where if only is None else only if where is None else and_(only, where)
    return await entity(model.spec.entity).rows(ctx, both)


class Model:
    """``db.Organization``: make (``db.Organization(name=…)``), get, help."""

    record_type: type[Record] = Record

    def __init__(self, db: Any, name: str, spec: Spec) -> None:
        self.db = db
        self.name = name
        self.spec = spec

    def __call__(self, **fields: Any) -> Record:
        made = self.record_type(self, {})
        for key, value in fields.items():
            setattr(made, key, value)
        return made

    def record(self, data: dict[str, Any]) -> Record:
        return self.record_type(self, data)

    def write(self, ident: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Create (``ident`` None) or update one record; the record as it now is."""
        kind = entity(self.spec.entity)
        if ident is None:
            made: dict[str, Any] = self.db.runner.act(kind.create, body)
            return made
        updated: dict[str, Any] = self.db.runner.act(kind.update, ident, body)
        return updated

    def get(self, ident: str | None = None) -> Any:
        """All records, or the one with this id."""
        if ident is None:
            return [self.record(r) for r in self.db.runner.act(_rows, self, None)]
        if not isinstance(ident, str):
            raise ShellError(
                f"db.{self.name}.get({ident!r}): ids are strings in Ferry, not numbers (they "
                f"are made at random, so no record is number 1). "
                + (f"Find one with {self.spec.finder}, or list" if self.spec.finder else "List")
                + f" them with [x.id for x in db.{self.name}.get()]")
        found = self.db.runner.act(_rows, self, entity(self.spec.entity).id_column() == ident)
        if found:
            return self.record(found[0])
        if self.spec.only is not None:
            raise ApiError(404, "not_found", f"no {self.name} with id '{ident}'")
        # as the API says it: 404, or the rule a caller lacks
        return self.record(self.db.runner.act(entity(self.spec.entity).get, ident))

    def _one(self, column: Any, value: str, label: str) -> Record:
        found = self.db.runner.act(_rows, self, column == value)
        if not found:
            raise ApiError(404, "not_found", f"no {self.name} with {label} '{value}'")
        return self.record(found[0])

    def get_by_name(self, name: str) -> Record:
        return self._one(entity(self.spec.entity).model.name, name, "name")

    def get_by_username(self, username: str) -> Record:
        return self._one(entity(self.spec.entity).model.username, username, "username")

    def get_by_(self, resource: str, scope: str, operation: str) -> Record:
        """A rule: ``db.Rule.get_by_("node", "organization", "view")``."""
        found: Record = self.get(permissions.rule_id(resource, operation, scope))
        return found

    def help(self) -> None:
        spec = self.spec
        print(f"db.{self.name}")
        print(f"  fields:    {', '.join(entity(spec.entity).schema.fields)}")
        if spec.aliases:
            print(f"  also:      {', '.join(spec.aliases)} (the reference's names)")
        print(f"  writable:  {', '.join(spec.writable) or 'none (read only)'}")
        relations = [*spec.relations, *spec.own]
        if relations:
            print(f"  relations: {', '.join(relations)}")
        print(f"  get(), get(id: a string){', ' + spec.finder if spec.finder else ''}, .save(), "
              ".delete()")

    def __repr__(self) -> str:
        return f"<db.{self.name}>"
