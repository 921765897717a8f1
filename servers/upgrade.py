"""The servers file's formats, and how a file moves to this package's format and
predefined list (servers-database.rst, "Upgrade").

Format 2 (this one)::

    {"format": 2, "predefined_set": "sha256:…", "reserved": ["old-name", …],
     "servers": [{"name": "local", "predefined": true,
                  "authentication": {"url": "http://…", "protocol": "ferry-v1"},
                  "application": {"url": "http://…", "protocol": "ferry-v1"},
                  "status": "Running", "last_success": "2026-…+00:00", "last_failure": null,
                  "cache": {"version": {"value": {…}, "fetched": "…", "failed": null,
                                        "error": null}}}, …]}

Format 1 (Ferry before service accesses) had one ``url`` per server, no protocol (the
hub spoke ``ferry-v1``), no reserved names, names compared with their case and
allowed any character: ``{"format": 1, "predefined_set": "…", "servers": [{"name",
"predefined", "url", "status"}]}``.

``settle()`` reads either and returns the file as it must be now. When the format or
the predefined set differs:

* predefined servers are dropped and the package's are created afresh;
* predefined names that disappear are reserved: no user-defined server may take them,
  a later package may predefine them again;
* a user-defined server named like a (new) predefined or reserved name is renamed with
  ``_user_defined`` appended, then treated like the others;
* user-defined servers are kept, converted when the format changed, if they are valid
  now; the others are returned in ``removed`` with the reason, for the caller to back
  up and warn about.

A file of the current format and set is settled the same way, keeping the statuses
and caches of predefined servers: so a hand-edited file comes back to the rules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from core.errors import FerryError
from servers.errors import ServersError
from servers.model import CacheEntry, Server, ServiceAccess, Status, fold
from servers.protocols import DEFAULT_PROTOCOL

FORMAT = 2
SUFFIX = "_user_defined"


class Corrupt(FerryError):
    """The file's top level is not a servers database of any format."""


class Incompatible(FerryError):
    """One stored server cannot be used with this format; the message says why."""


@dataclass
class Document:
    """The whole database as it is written."""

    predefined_set: str
    reserved: list[str] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)

    def encode(self) -> dict[str, Any]:
        return {"format": FORMAT, "predefined_set": self.predefined_set,
                "reserved": list(self.reserved), "servers": [encode(s) for s in self.servers]}

    def index(self, name: str) -> int | None:
        key = fold(name)
        return next((i for i, s in enumerate(self.servers) if s.key == key), None)

    def is_reserved(self, name: str) -> bool:
        return fold(name) in {fold(r) for r in self.reserved}


@dataclass
class Settled:
    document: Document
    upgraded: bool  # the format or the predefined set changed
    old_format: int
    removed: list[tuple[Any, str]] = field(default_factory=list)  # stored entry, why
    notes: list[str] = field(default_factory=list)  # renames, for the user


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def encode(server: Server) -> dict[str, Any]:
    return {
        "name": server.name,
        "predefined": server.predefined,
        "authentication": {"url": server.authentication.url,
                           "protocol": server.authentication.protocol},
        "application": {"url": server.application.url, "protocol": server.application.protocol},
        "status": server.status.value,
        "last_success": _time(server.last_success),
        "last_failure": _time(server.last_failure),
        "cache": {key: {"value": e.value, "fetched": _time(e.fetched), "failed": _time(e.failed),
                        "error": e.error} for key, e in server.cache.items()},
    }


# --- reading stored entries; every problem is Incompatible with a reason


def _parse_time(raw: Mapping[str, Any], key: str) -> datetime | None:
    value = raw.get(key)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Incompatible(f"'{key}' is not a time with a zone: {value!r}")
    return parsed


def _status(raw: Mapping[str, Any]) -> Status:
    value = raw.get("status", Status.NEVER_REACHED.value)
    try:
        return Status(value)
    except ValueError:
        raise Incompatible(f"unknown status {value!r}") from None


def _access(raw: Mapping[str, Any], key: str) -> ServiceAccess:
    value = raw.get(key)
    if not isinstance(value, dict) or not isinstance(value.get("url"), str) \
            or not isinstance(value.get("protocol"), str):
        raise Incompatible(f"its {key} service has no URL and protocol")
    return ServiceAccess(value["url"], value["protocol"])


def _cache(raw: Mapping[str, Any]) -> dict[str, CacheEntry]:
    value = raw.get("cache", {})
    if not isinstance(value, dict):
        raise Incompatible("its cache is not an object")
    cache = {}
    for key, entry in value.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise Incompatible(f"cache entry {key!r} has no value")
        fetched = _parse_time(entry, "fetched")
        if fetched is None:
            raise Incompatible(f"cache entry {key!r} has no fetch time")
        error = entry.get("error")
        cache[key] = CacheEntry(entry["value"], fetched, _parse_time(entry, "failed"),
                                error if isinstance(error, str) else None)
    return cache


def _state(server: Server, raw: Mapping[str, Any]) -> Server:
    """``server`` with the status, times and cache stored in ``raw`` (format 2)."""
    return replace(server, status=_status(raw), last_success=_parse_time(raw, "last_success"),
                   last_failure=_parse_time(raw, "last_failure"), cache=_cache(raw))


def _user_server(fmt: int, raw: Mapping[str, Any]) -> Server:
    """A user-defined server from a stored entry of format ``fmt``."""
    try:
        if fmt == 1:
            url = raw.get("url")
            if not isinstance(url, str):
                raise Incompatible("it has no URL")
            access = ServiceAccess(url, DEFAULT_PROTOCOL)
            # format 1 kept no times and a cache of another shape: it is fetched again
            return Server(raw["name"], False, access, access, status=_status(raw))
        server = Server(raw["name"], False, _access(raw, "authentication"),
                        _access(raw, "application"))
        return _state(server, raw)
    except ServersError as exc:
        raise Incompatible(str(exc)) from None


# --- the whole file


def _top(raw: Any) -> tuple[int, list[Any], list[str], Any]:
    """Format, entries, reserved names and predefined set of a stored file."""
    if not isinstance(raw, dict):
        raise Corrupt("it is not a JSON object")
    fmt = raw.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise Corrupt(f"it has no valid 'format' ({fmt!r})")
    if fmt > FORMAT:
        raise ServersError(f"the servers database was written by a newer Ferry (format {fmt}; "
                           f"this one reads up to format {FORMAT}): upgrade Ferry")
    entries = raw.get("servers")
    if not isinstance(entries, list):
        raise Corrupt("its 'servers' is not a list")
    reserved = raw.get("reserved", []) if fmt >= 2 else []
    if not isinstance(reserved, list) or not all(isinstance(r, str) for r in reserved):
        raise Corrupt("its 'reserved' is not a list of names")
    return fmt, entries, reserved, raw.get("predefined_set")


def _free(name: str, blocked: set[str]) -> str:
    new = name + SUFFIX
    while fold(new) in blocked:
        new += SUFFIX
    return new


def settle(raw: Any, package: Sequence[Server], package_set: str) -> Settled:
    """The database ``raw`` (a decoded file) must become with the package's predefined
    ``package`` (fingerprint ``package_set``). Raises Corrupt when ``raw`` is no
    servers database, ServersError when a newer Ferry wrote it."""
    fmt, entries, stored_reserved, stored_set = _top(raw)
    upgraded = fmt != FORMAT or stored_set != package_set
    settled = Settled(Document(package_set), upgraded, fmt)
    predefined: list[Mapping[str, Any]] = []
    users: list[Mapping[str, Any]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                or not isinstance(entry.get("predefined", False), bool):
            settled.removed.append((entry, f"entry {i + 1} is not a server definition"))
            continue
        (predefined if entry.get("predefined") else users).append(entry)

    package_keys = {s.key for s in package}
    # names that stop being predefined stay reserved; a predefined one is no more reserved
    reserved: dict[str, str] = {}
    for name in [*stored_reserved, *(e["name"] for e in predefined)]:
        if fold(name) not in package_keys:
            reserved.setdefault(fold(name), name)
    settled.document.reserved = sorted(reserved.values(), key=fold)

    # the package's predefined servers; their statuses and caches survive unless upgrading
    states = {} if upgraded else {fold(e["name"]): e for e in predefined}
    for shipped in package:
        server = replace(shipped, predefined=True)
        stored = states.get(server.key)
        # a state we cannot read is a state we start again
        with contextlib.suppress(Incompatible):
            server = _state(server, stored) if stored is not None else server
        settled.document.servers.append(server)

    taken = set(package_keys)
    for entry in users:
        name = entry["name"]
        blocked = taken | reserved.keys()
        if fold(name) in package_keys or fold(name) in reserved:
            new = _free(name, blocked)
            why = ("this Ferry predefines a server of that name" if fold(name) in package_keys
                   else "that name belonged to a predefined server and stays reserved")
            settled.notes.append(f"user-defined server '{name}' was renamed '{new}': {why}")
            name = new
        try:
            server = _user_server(fmt, {**entry, "name": name})
            if server.key in taken:
                raise Incompatible(f"another server is already named '{name}' "
                                   "(names are case-insensitive now)")
        except Incompatible as exc:
            settled.removed.append((entry, str(exc)))
            continue
        taken.add(server.key)
        settled.document.servers.append(server)
    return settled


def backup_record(raw: Any, removed: list[tuple[Any, str]]) -> dict[str, Any]:
    """What the backup of removed servers holds: each one as it was stored, with why,
    and the whole file before the upgrade."""
    return {"removed": [{"reason": why, "server": entry} for entry, why in removed],
            "original": raw}
