"""The servers database: the hubs a user or an agent names, in one JSON file.

``ServersDB`` is the only way in. It implements servers-database.rst:

* names are unique regardless of case; predefined servers (predefined.py) cannot be
  removed or edited, and no user-defined server takes a predefined or reserved name;
* each server has two service accesses, authentication and application (model.py),
  each with a protocol the package defines (protocols.py);
* a status per server ("Never reached", "Unavailable", "Running") that ``observe``
  moves after each request, and error messages (``problem``) that differ by status;
* a cache of slow-changing answers, used first and refreshed when old (``cached``);
* the file is created at first use, upgraded when the format or the predefined list
  changes (upgrade.py), and a corrupt one is moved aside and started again.

Every method reads or writes the file; nothing is kept between calls, so several
objects, threads and processes share one database. A change is a read-modify-write
under the file's lock, written atomically (file.py, store.py): no writer loses another's
change, and no reader sees half a file. Tokens are not in the file (secrets.py).

What the user must know (a server removed or renamed by an upgrade, a corrupt file
moved aside) is appended to ``warnings`` and logged as a warning.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import structlog

from core.errors import ApiError
from core.paths import roots
from servers.errors import ServersError
from servers.file import ServersFile
from servers.model import CacheEntry, Server, ServiceAccess, Status, check_name, fold
from servers.predefined import PREDEFINED, predefined_set
from servers.protocols import DEFAULT_PROTOCOL
from servers.secrets import SecretStore
from servers.upgrade import Document

__all__ = ["CACHE_KEYS", "Server", "ServersDB", "ServersError", "ServiceAccess", "Status",
           "answered"]

log = structlog.get_logger("ferry.servers")

T = TypeVar("T")
FILE_NAME = "servers.json"
CACHE_MAX_AGE = 24 * 3600.0  # "typically 24h"
CACHE_KEYS = ("description", "version", "shares", "collaborations")
CACHE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# a success or failure is written when it changes the status, or when the time stored
# is older than this: a busy agent does not rewrite the file on every request
TIME_RESOLUTION = 60.0


def answered(exc: BaseException) -> bool:
    """Whether a request that raised ``exc`` was still answered by the server, as
    servers-database.rst counts it: an application error (4xx with the hub's error
    body: wrong id, bad credentials, no result) is an answer; a transport or protocol
    failure (no connection, a timeout, a body that is not the protocol's, 5xx) is not."""
    return isinstance(exc, ApiError) and exc.status < 500


def _now() -> datetime:
    return datetime.now(UTC)


def _as_predefined(item: Server | Mapping[str, Any]) -> Server:
    if isinstance(item, Server):
        return replace(item, predefined=True)
    return Server.define(item["name"], item["url"], auth_url=item.get("auth_url"),
                         protocol=item.get("protocol", DEFAULT_PROTOCOL), predefined=True)


class ServersDB:
    """The servers database at ``path`` (default: ``servers.json`` in the user's or,
    with ``system``, the system's data folder). Making one does no I/O.

    ``predefined`` replaces the package's predefined servers (tests, embedding);
    ``secrets`` the token store (default: keyring, else a file next to ``path``).
    """

    def __init__(self, path: Path | None = None, *, system: bool = False,
                 predefined: Sequence[Server | Mapping[str, Any]] | None = None,
                 secrets: SecretStore | None = None, cache_max_age: float = CACHE_MAX_AGE,
                 lock_timeout: float = 10.0) -> None:
        self.path = path if path is not None else roots(system).data / FILE_NAME
        self.system = system
        self.package = tuple(_as_predefined(p) for p in
                             (PREDEFINED if predefined is None else predefined))
        if len({s.key for s in self.package}) != len(self.package):
            raise ServersError("two predefined servers have the same name")
        self.package_set = predefined_set(self.package)
        self.secrets = secrets if secrets is not None else SecretStore(
            self.path.with_name(self.path.stem + "-secrets.json"),
            service=f"ferry servers {self.path}")
        self.cache_max_age = cache_max_age
        self.warnings: list[str] = []
        self._file = ServersFile(self.path, self.package, self.package_set,
                                 lock_timeout=lock_timeout, system=system, warn=self._warn)

    # --- reading

    def list(self) -> builtins.list[Server]:
        """Every server, predefined ones first."""
        return builtins.list(self._file.read().servers)

    def get(self, name: str) -> Server:
        """The server called ``name`` (any case); ServersError naming the known ones."""
        return self._find(self._file.read(), name)

    def reserved(self) -> builtins.list[str]:
        """Names of formerly predefined servers, which user-defined ones cannot take."""
        return builtins.list(self._file.read().reserved)

    # --- editing

    def add(self, name: str, url: str, *, auth_url: str | None = None,
            protocol: str = DEFAULT_PROTOCOL) -> Server:
        """A new user-defined server; its authentication service is at ``url`` unless
        ``auth_url`` is given. Both services speak ``protocol``."""
        server = Server.define(name, url, auth_url=auth_url, protocol=protocol)
        with self._file.change() as doc:
            self._check_free(doc, name)
            doc.servers.append(server)
        return server

    def edit(self, name: str, *, url: str | None = None, auth_url: str | None = None,
             protocol: str | None = None, new_name: str | None = None) -> Server:
        """Change a user-defined server. An authentication URL that was the application
        URL follows it. A new application URL is a new server to talk to: its status and
        cache start again; a new authentication URL drops the token (it was issued by
        another service, and must not be sent to this one)."""
        with self._file.change() as doc:
            i = self._position(doc, name)
            old = doc.servers[i]
            if old.predefined:
                raise self._predefined_error(old, "edited")
            if new_name is not None and fold(check_name(new_name)) != old.key:
                self._check_free(doc, new_name)
            if auth_url is None and url is not None and old.authentication.url == old.url:
                auth_url = url
            authentication = ServiceAccess(auth_url or old.authentication.url,
                                           protocol or old.authentication.protocol)
            application = ServiceAccess(url or old.url, protocol or old.application.protocol)
            new = replace(old, name=new_name or old.name, authentication=authentication,
                          application=application)
            if application.url != old.url:
                new = replace(new, status=Status.NEVER_REACHED, last_success=None,
                              last_failure=None, cache={})
            doc.servers[i] = new
        if authentication.url != old.authentication.url:
            self._forget_token(old.name)
        elif new.key != old.key:
            self._move_token(old.name, new.name)
        return new

    def remove(self, name: str) -> None:
        """Remove a user-defined server, and its token."""
        with self._file.change() as doc:
            i = self._position(doc, name)
            server = doc.servers[i]
            if server.predefined:
                raise self._predefined_error(server, "removed")
            del doc.servers[i]
        self._forget_token(server.name)

    # --- status

    def observe(self, name: str, ok: bool, *, at: datetime | None = None) -> Server:
        """Record how a request to ``name`` went. ``ok`` is the caller's judgement:
        true for any expected answer, application errors included (see ``answered``);
        false only for transport or protocol failures. Success makes the server
        "Running"; failure makes it "Unavailable" if it was ever reached, else it stays
        "Never reached"."""
        at = at or _now()
        return self._update(name, lambda server: _observed(server, ok, at))

    def problem(self, name: str, error: str) -> str:
        """An error message about a failed request to ``name`` that says what the
        server's status suggests: a server never reached is probably misconfigured, one
        reached before is probably down for a while."""
        server = self.get(name)
        where = f"server '{server.name}' ({server.url})"
        if server.status == Status.NEVER_REACHED:
            hint = "" if server.predefined else \
                f" ('ferry servers edit {server.name} --url URL' changes it)"
            return (f"{where} has never been reached: {error}; check the URL and that the "
                    f"hub is running and reachable from here{hint}")
        if server.status == Status.UNAVAILABLE:
            since = f" (last answer {_ago(server.last_success)})" if server.last_success else ""
            return (f"{where} is unavailable: {error}; it was reachable before{since}; it may "
                    "be down for maintenance: try again later")
        return f"{where}: {error}"

    # --- cache

    def cached(self, name: str, key: str, fetch: Callable[[], T], *,
               max_age: float | None = None) -> T:
        """The value cached under ``key`` for ``name``, or what ``fetch()`` returns.

        The cache comes first: ``fetch`` is called only when there is no value or it is
        older than ``max_age`` seconds (default: the database's ``cache_max_age``,
        24 h). A fresh value is stored, and the server observed as answering. When
        ``fetch`` raises and a value is cached, the stale value is returned: the
        failure is recorded on the entry and in the status (as ``observe`` with
        ``answered(exc)``) and logged. With nothing cached the exception propagates.
        Values must be JSON: what comes back from the cache is the value decoded.
        """
        self._check_key(key)
        max_age = self.cache_max_age if max_age is None else max_age
        entry = self.get(name).cache.get(key)
        now = _now()
        if entry is not None and 0 <= entry.age(now) <= max_age:
            return cast(T, entry.value)
        try:
            fetched = fetch()
        except Exception as exc:
            failure, at = exc, _now()
            self._update(name, lambda server: _refresh_failed(
                _observed(server, answered(failure), at), key, failure, at))
            if entry is None:
                raise
            log.warning("server cache refresh failed; using the stale value", server=name,
                        key=key, age=round(entry.age(now)), error=str(exc))
            return cast(T, entry.value)
        value, at = _json(name, key, fetched), _now()
        self._update(name, lambda server: _observed(_with_value(server, key, value, at), True, at))
        return cast(T, value)

    def remember(self, name: str, key: str, value: Any, *, at: datetime | None = None) -> None:
        """Cache ``value`` (JSON) under ``key``, fetched ``at`` (now)."""
        self._check_key(key)
        value = _json(name, key, value)
        when = at or _now()
        self._update(name, lambda server: _with_value(server, key, value, when))

    def _update(self, name: str, change: Callable[[Server], Server]) -> Server:
        """Replace the server ``name`` with ``change(server)``, in one read-modify-write."""
        with self._file.change() as doc:
            i = self._position(doc, name)
            doc.servers[i] = new = change(doc.servers[i])
        return new

    @staticmethod
    def _check_key(key: str) -> None:
        if not CACHE_KEY.match(key):
            raise ServersError(f"invalid cache key {key!r}: use lower-case letters, digits "
                               f"and '_' (those in use: {', '.join(CACHE_KEYS)})")

    # --- tokens

    def set_token(self, name: str, token: str) -> None:
        self.secrets.set(self.get(name).name, token)

    def token(self, name: str) -> str | None:
        return self.secrets.get(self.get(name).name)

    def _forget_token(self, name: str) -> None:
        try:
            self.secrets.delete(name)
        except (ServersError, OSError) as exc:  # the server is gone; a stale token is harmless
            self._warn(f"could not delete the token of server '{name}': {exc}")

    def _move_token(self, old: str, new: str) -> None:
        try:
            token = self.secrets.get(old)
            if token is not None:
                self.secrets.set(new, token)
                self.secrets.delete(old)
        except (ServersError, OSError) as exc:
            self._warn(f"could not move the token of server '{old}' to '{new}': {exc}; "
                       "log in again")

    # --- rules

    def _find(self, doc: Document, name: str) -> Server:
        return doc.servers[self._position(doc, name)]

    def _position(self, doc: Document, name: str) -> int:
        i = doc.index(name)
        if i is None:
            known = ", ".join(s.name for s in doc.servers) or "none"
            raise ServersError(f"no server named '{name}'; known servers: {known}")
        return i

    @staticmethod
    def _check_free(doc: Document, name: str) -> None:
        check_name(name)
        i = doc.index(name)
        if i is not None and doc.servers[i].predefined:
            raise ServersError(f"'{name}' is the name of a predefined server "
                               f"('{doc.servers[i].name}'); choose another name")
        if i is not None:
            raise ServersError(f"a server named '{doc.servers[i].name}' already exists "
                               "(names are case-insensitive); choose another name")
        if doc.is_reserved(name):
            raise ServersError(f"'{name}' is reserved: it was the name of a predefined server "
                               "that Ferry no longer ships; choose another name")

    @staticmethod
    def _predefined_error(server: Server, done: str) -> ServersError:
        return ServersError(f"server '{server.name}' is predefined: it cannot be {done}; add a "
                            "server of your own under another name instead")

    def _warn(self, message: str) -> None:
        if message not in self.warnings:  # a read-only database says so once, not per read
            self.warnings.append(message)
            log.warning(message, file=str(self.path))


def _observed(server: Server, ok: bool, at: datetime) -> Server:
    if ok:
        return replace(server, status=Status.RUNNING, last_success=_later(server.last_success, at))
    status = Status.NEVER_REACHED if server.status == Status.NEVER_REACHED else Status.UNAVAILABLE
    return replace(server, status=status, last_failure=_later(server.last_failure, at))


def _with_value(server: Server, key: str, value: Any, at: datetime) -> Server:
    return replace(server, cache={**server.cache, key: CacheEntry(value, at)})


def _refresh_failed(server: Server, key: str, exc: Exception, at: datetime) -> Server:
    entry = server.cache.get(key)
    if entry is None:
        return server
    failed = replace(entry, failed=at, error=str(exc) or type(exc).__name__)
    return replace(server, cache={**server.cache, key: failed})


def _json(name: str, key: str, value: Any) -> Any:
    """``value`` as it will read back from the file; ServersError if it is not JSON."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ServersError(f"cannot cache {key!r} for server '{name}': not JSON ({exc})") \
            from None


def _later(stored: datetime | None, at: datetime) -> datetime:
    """``at``, unless the stored time is within TIME_RESOLUTION of it (or later)."""
    if stored is None or (at - stored).total_seconds() >= TIME_RESOLUTION:
        return at
    return stored


def _ago(when: datetime) -> str:
    seconds = max(0.0, (_now() - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
