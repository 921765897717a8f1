"""``ferry hub shell``: a Python shell on a hub's database, with the ``db.`` models of
server-shell-v4.rst.

::

    >>> org = db.Organization(name="IKNL", domain="iknl.nl", country="Netherlands")
    >>> org.save()
    >>> db.Organization.get_by_name("IKNL").users
    >>> user = db.User.get_by_username("frank@iknl.nl"); user.firstname = "Frank"; user.save()
    >>> db.Rule.get_by_("node", "organization", "view")
    >>> db.Organization.help()

Unlike the reference's shell, every ``save()`` goes through the API's validation
and is one transaction: a refused save changes nothing and raises ``ApiError``
with the API's message. Records are fetched fresh on every ``get``.
"""

from __future__ import annotations

import asyncio
import code
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from core.errors import ApiError, FerryError
from hub import permissions
from hub.admin import AdminSession
from hub.api.errors import as_api_error
from hub.entities import entity
from hub.errors import Refusal
from hub.runtime import Ctx
from hub.storage.models import Base

T = TypeVar("T")

# per model: the fields a save may write, the fields that hold other records (as ids),
# and the relations a record offers as attributes
MODELS: dict[str, dict[str, Any]] = {
    "Organization": {"writable": ("name", "domain", "address1", "address2", "zipcode",
                                  "country", "public_key"),
                     "links": {},
                     "lists": {"collaborations": "Collaboration"},
                     "relations": {"users": "User", "nodes": "Node",
                                   "collaborations": "Collaboration", "jobs": "Job",
                                   "created_tasks": "Task", "roles": "Role"}},
    "Collaboration": {"writable": ("name", "encrypted", "organizations"), "links": {},
                      "lists": {"organizations": "Organization"},
                      "relations": {"organizations": "Organization", "nodes": "Node",
                                    "jobs": "Job", "tasks": "Task"}},
    "User": {"writable": ("username", "password", "email", "firstname", "lastname",
                          "organization", "roles", "rules"),
             "links": {"organization": "Organization"},
             "lists": {"roles": "Role", "rules": "Rule"},
             "relations": {"jobs": "Job"}},
    "Role": {"writable": ("name", "description", "organization", "rules"),
             "links": {"organization": "Organization"}, "lists": {"rules": "Rule"},
             "relations": {"users": "User"}},
    "Rule": {"writable": (), "links": {}, "lists": {}, "relations": {}},
    "Node": {"writable": ("name", "description", "organization", "collaboration", "api_key"),
             "links": {"organization": "Organization", "collaboration": "Collaboration"},
             "lists": {}, "relations": {}},
    "Client": {"writable": ("status", "description", "site", "benchmark", "metadata", "tags"),
               "links": {"node": "Node"}, "lists": {}, "relations": {}},
    "Job": {"writable": ("code", "priority", "status", "metadata", "compute", "source",
                         "destination", "collaboration", "queue"),
            "links": {"organization": "Organization"}, "lists": {}, "relations": {}},
    "Task": {"writable": (), "links": {"job": "Job"}, "lists": {}, "relations": {}},
    "Site": {"writable": ("name", "description"), "links": {}, "lists": {}, "relations": {}},
}


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
        spec = MODELS[model.name]
        if name in self._lists:
            return self._lists[name]
        if name in spec["relations"] and self._data.get("id"):  # live, as in the reference
            other = getattr(model.db, spec["relations"][name])
            rows = model.db.runner.act(_related, model.name, self._data["id"], name)
            self._lists[name] = [Record(other, r) for r in rows]
            return self._lists[name]
        if name in spec["lists"] and name in self._data:
            if name not in self._lists:
                other = getattr(model.db, spec["lists"][name])
                self._lists[name] = [other.get(i) for i in self._data[name]]
            return self._lists[name]
        if name in self._changes:
            return self._changes[name]
        if name in self._data:
            return self._data[name]
        if name in spec["links"] and self._data.get(name):
            return getattr(model.db, spec["links"][name]).get(self._data[name])
        raise AttributeError(f"{model.name} has no field or relation '{name}' "
                             f"(see db.{model.name}.help())")

    def __setattr__(self, name: str, value: Any) -> None:
        spec = MODELS[self._model.name]
        if name not in spec["writable"]:
            raise AttributeError(f"{self._model.name}.{name} cannot be set (writable: "
                                 f"{', '.join(spec['writable']) or 'none'})")
        if name in spec["lists"]:
            self._lists[name] = list(value)
        else:
            self._changes[name] = value

    def _body(self) -> dict[str, Any]:
        body = {k: _ref(v) for k, v in self._changes.items()}
        for name, records in self._lists.items():
            ids = [_ref(r) for r in records]
            if sorted(ids) != sorted(self._data.get(name) or []):
                body[name] = ids
        return body

    def save(self) -> Record:
        """Create or update through the API's validation, in one transaction."""
        body = self._body()
        kind = entity(self._model.name)
        if self._data.get("id") and not body:
            fresh = self._data
        elif self._data.get("id"):
            fresh = self._model.db.runner.act(kind.update, self._data["id"], body)
        else:
            fresh = self._model.db.runner.act(kind.create, body)
        if "api_key" in fresh:
            print(f"api_key: {fresh['api_key']}  (shown once; only its hash is stored)")
        object.__setattr__(self, "_data", dict(fresh))
        object.__setattr__(self, "_changes", {})
        object.__setattr__(self, "_lists", {})
        return self

    def delete(self) -> None:
        self._model.db.runner.act(entity(self._model.name).delete, self._data["id"])

    def __repr__(self) -> str:
        label = self._data.get("name") or self._data.get("username") or \
            self._data.get("code") or ""
        return f"<{self._model.name} {self._data.get('id', '(unsaved)')} {label}>".replace(
            "  ", " ")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and other._data.get("id") == self._data.get("id")

    def __hash__(self) -> int:
        return hash(self._data.get("id"))


def _ref(value: Any) -> Any:
    """A record stands for its id in a body."""
    if isinstance(value, Record):
        return value._data["id"]
    if isinstance(value, list):
        return [_ref(v) for v in value]
    return value


async def _related(ctx: Ctx, name: str, ident: str, relation: str) -> list[dict[str, Any]]:
    kind = entity(name)
    target, where = kind.relations(ident)[relation]
    return await entity(target).rows(ctx, where)


async def _find(ctx: Ctx, name: str, field: str | None, value: Any) -> list[dict[str, Any]]:
    kind = entity(name)
    where = None if field is None else getattr(kind.model, field) == value
    return await kind.rows(ctx, where)


class Model:
    """``db.Organization``: make (``db.Organization(name=…)``), get, help."""

    def __init__(self, db: Db, name: str) -> None:
        self.db = db
        self.name = name

    def __call__(self, **fields: Any) -> Record:
        record = Record(self, {})
        for key, value in fields.items():
            setattr(record, key, value)
        return record

    def get(self, ident: str | None = None) -> Any:
        """All records, or the one with this id."""
        if ident is None:
            return [Record(self, r) for r in self.db.runner.act(_find, self.name, None, None)]
        return Record(self, self.db.runner.act(entity(self.name).get, ident))

    def _one(self, field: str, value: str) -> Record:
        found = self.db.runner.act(_find, self.name, field, value)
        if not found:
            raise ApiError(404, "not_found", f"no {self.name} with {field} '{value}'")
        return Record(self, found[0])

    def get_by_name(self, name: str) -> Record:
        return self._one("name", name)

    def get_by_username(self, username: str) -> Record:
        return self._one("username", username)

    def get_by_(self, resource: str, scope: str, operation: str) -> Record:
        """A rule: ``db.Rule.get_by_("node", "organization", "view")``."""
        found: Record = self.get(permissions.rule_id(resource, operation, scope))
        return found

    def help(self) -> None:
        spec = MODELS[self.name]
        kind = entity(self.name)
        print(f"db.{self.name}")
        print(f"  fields:    {', '.join(kind.schema.fields)}")
        print(f"  writable:  {', '.join(spec['writable']) or 'none (read only)'}")
        if spec["relations"]:
            print(f"  relations: {', '.join(spec['relations'])}")
        print(f"  get(), get(id), {'get_by_username' if self.name == 'User' else 'get_by_name'}"
              "(…), .save(), .delete()")

    def __repr__(self) -> str:
        return f"<db.{self.name}>"


class Db:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        for name in MODELS:
            setattr(self, name, Model(self, name))

    def drop_all(self) -> None:
        """Delete every record: only when the config says ``allow_drop_all: true``."""
        session = self.runner.session
        if not session.config.allow_drop_all:
            raise FerryError("drop_all is refused: this hub's config has allow_drop_all: false "
                             "(set it to true on test hubs only)")
        self.runner.call(_drop_all(session))
        print("all records deleted; the next start of the hub makes root and hq again")


async def _drop_all(session: AdminSession) -> None:
    assert session.db is not None
    async with session.db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in {"rules", "roles", "role_rules"}:
                await conn.execute(table.delete())
        await conn.execute(Base.metadata.tables["roles"].delete().where(
            Base.metadata.tables["roles"].c.is_default.is_(False)))


BANNER = """Ferry hub shell: the root user on {uri}
db.Organization, db.User, db.Role, db.Rule, db.Collaboration, db.Node, db.Client, db.Job,
db.Task, db.Site: get(), get(id), get_by_name(…), get_by_username(…), .save(), .help()
Every save is checked as the API checks it. Ctrl-D leaves."""


def run_shell(session: AdminSession, *, script: str | None = None) -> int:
    runner = Runner(session)
    db = Db(runner)
    namespace: dict[str, Any] = {"db": db, "ApiError": ApiError}
    try:
        if script is not None:  # ``ferry hub shell -c "..."``: one command, no prompt
            exec(compile(script, "<ferry hub shell -c>", "exec"), namespace)
            return 0
        uri = session.db.url.split("@")[-1] if session.db else ""
        code.interact(banner=BANNER.format(uri=uri), local=namespace, exitmsg="")
        return 0
    finally:
        runner.close()
