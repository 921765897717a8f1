"""``ferry servers …``: list, show, add, edit, remove and check the hubs users name.

Errors are ServersError, printed by ``ferry.commands.run`` as ``error: …`` with exit
status 1; the database is written only by a command that succeeds. What the database
has to tell (an upgrade that removed or renamed a server, a corrupt file moved aside)
is printed as ``warning: …`` on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from core.errors import FerryError
from protocol import API_PREFIX
from servers.db import ServersDB
from servers.errors import ServersError
from servers.model import Server, Status
from servers.protocols import PROTOCOLS

VERSION_PATH = f"{API_PREFIX}/version"  # the hub's one request that needs no log-in
MAX_ANSWER = 1024 * 1024


def _db(args: argparse.Namespace) -> ServersDB:
    return ServersDB(args.file, system=args.system)


@contextlib.contextmanager
def _reporting(db: ServersDB) -> Iterator[None]:
    """Print the database's warnings on stderr, even when the command fails; its log
    lines would go to stdout unless logging is set up, so they are muted meanwhile."""
    muted = not structlog.is_configured()
    if muted:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        yield
    finally:
        if muted:
            structlog.reset_defaults()
        for warning in db.warnings:
            print(f"warning: {warning}", file=sys.stderr)


def _command(func: Callable[[ServersDB, argparse.Namespace], int]
             ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        db = _db(args)
        with _reporting(db):
            return func(db, args)

    return run


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def cmd_list(db: ServersDB, args: argparse.Namespace) -> int:
    rows: list[tuple[str, ...]] = [("NAME", "KIND", "STATUS", "APPLICATION URL", "PROTOCOL")]
    rows += [(s.name, s.kind, s.status.value, s.url, s.application.protocol) for s in db.list()]
    _table(rows)
    return 0


def _when(value: datetime | None) -> str:
    if value is None:
        return "never"
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({_age(value)} ago)"


def _age(value: datetime) -> str:
    seconds = max(0.0, (datetime.now(UTC) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def cmd_show(db: ServersDB, args: argparse.Namespace) -> int:
    server = db.get(args.name)
    try:
        token = f"stored in {db.secrets.where}" if db.token(server.name) else "none"
    except (ServersError, OSError) as exc:
        token = f"unknown ({exc})"
    rows = [
        ("name", server.name),
        ("kind", server.kind),
        ("status", server.status.value),
        ("application", f"{server.application.url} ({server.application.protocol})"),
        ("authentication", f"{server.authentication.url} ({server.authentication.protocol})"),
        ("last success", _when(server.last_success)),
        ("last failure", _when(server.last_failure)),
        ("token", token),
    ]
    if not server.cache:
        rows.append(("cache", "empty"))
    for i, (key, entry) in enumerate(sorted(server.cache.items())):
        stale = " (stale)" if entry.age(datetime.now(UTC)) > db.cache_max_age else ""
        line = f"{key}: {_age(entry.fetched)} old{stale}"
        if entry.failed is not None:
            line += f"; refresh failed {_age(entry.failed)} ago: {entry.error}"
        rows.append(("cache" if i == 0 else "", line))
    rows.append(("database", str(db.path)))
    for label, value in rows:
        print(f"{label:<15} {value}".rstrip())
    return 0


def cmd_add(db: ServersDB, args: argparse.Namespace) -> int:
    server = db.add(args.name, args.url, auth_url=args.auth_url, protocol=args.protocol)
    print(f"added server '{server.name}': {server.url} ({server.application.protocol})"
          + (f", authentication at {server.authentication.url}"
             if server.authentication.url != server.url else ""))
    return 0


def cmd_edit(db: ServersDB, args: argparse.Namespace) -> int:
    if args.url is None and args.auth_url is None and args.protocol is None \
            and args.new_name is None:
        raise ServersError("nothing to change: give --url, --auth-url, --protocol or --name")
    server = db.edit(args.name, url=args.url, auth_url=args.auth_url, protocol=args.protocol,
                     new_name=args.new_name)
    print(f"server '{server.name}': {server.url} ({server.application.protocol}), "
          f"authentication at {server.authentication.url}")
    return 0


def cmd_remove(db: ServersDB, args: argparse.Namespace) -> int:
    name = db.get(args.name).name
    db.remove(name)
    print(f"removed server '{name}'")
    return 0


class _NoAnswer(FerryError):
    """The request got no answer of the protocol: a transport or protocol failure."""


def _get_version(server: Server, timeout: float) -> tuple[int, Any]:
    """Status and decoded JSON body of ``GET <application>/api/v1/version``."""
    request = urllib.request.Request(server.url + VERSION_PATH,
                                      headers={"Accept": "application/json"})
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                status, raw = resp.status, resp.read(MAX_ANSWER)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read(MAX_ANSWER)
    except urllib.error.URLError as exc:
        raise _NoAnswer(f"cannot connect ({exc.reason})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _NoAnswer(f"no answer ({exc or type(exc).__name__})") from None
    try:
        return status, json.loads(raw)
    except ValueError:
        raise _NoAnswer(f"HTTP {status} with a body that is not JSON: is this a Ferry hub?") \
            from None


def cmd_check(db: ServersDB, args: argparse.Namespace) -> int:
    server = db.get(args.name)
    try:
        status, body = _get_version(server, args.timeout)
        if status == 200 and isinstance(body, dict) and isinstance(body.get("version"), str):
            answer = None
        elif 400 <= status < 600 and isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            answer = f"HTTP {status} {error.get('code')}: {error.get('message')}"
            if status >= 500:
                raise _NoAnswer(answer)
        else:
            raise _NoAnswer(f"HTTP {status} with an answer that is not the hub's: is this a "
                            "Ferry hub?")
    except _NoAnswer as exc:
        db.observe(server.name, False)
        print(f"error: {db.problem(server.name, str(exc))}", file=sys.stderr)
        print(f"status: {db.get(server.name).status.value}", file=sys.stderr)
        return 1
    db.observe(server.name, True)
    if answer is not None:  # an application error is an answer: the hub runs
        print(f"server '{server.name}' is {Status.RUNNING.value}; it answered {answer}")
        return 0
    db.remember(server.name, "version", body)
    print(f"server '{server.name}' is {Status.RUNNING.value}: ferry {body['version']}, protocol "
          f"{body.get('protocol')}" + (f", {body['description']!r}"
                                       if body.get("description") else ""))
    if body.get("protocol") and body.get("protocol") != server.application.protocol:
        print(f"warning: the hub speaks '{body['protocol']}' but server '{server.name}' is "
              f"defined with '{server.application.protocol}' (ferry servers edit "
              f"{server.name} --protocol …)", file=sys.stderr)
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--system", action="store_true",
                       help="the system's servers database (the one system agents use)")
    where.add_argument("--file", type=Path, metavar="PATH",
                       help="this servers database file instead of the user's")


COMMANDS: dict[str, tuple[Callable[[ServersDB, argparse.Namespace], int], str]] = {
    "list": (cmd_list, "list the servers: name, kind, status, application URL, protocol"),
    "show": (cmd_show, "show everything about one server (never its token)"),
    "add": (cmd_add, "define a server of your own"),
    "edit": (cmd_edit, "change a server of your own"),
    "remove": (cmd_remove, "remove a server of your own, and its token"),
    "check": (cmd_check, "ask a server for its version, and record its status"),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ferry servers`` and its verbs to the ``ferry`` command's groups."""
    text = "the hubs (servers) you name: list, add, edit, remove, check"
    parser = sub.add_parser("servers", help=text, description=text + ". Predefined servers "
                            "ship with Ferry and cannot be changed.")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    protocols = ", ".join(PROTOCOLS)
    for verb, (func, help_text) in COMMANDS.items():
        p = verbs.add_parser(verb, help=help_text, description=help_text)
        _common(p)
        if verb != "list":
            p.add_argument("name", metavar="NAME", help="the server's name (any case)")
        if verb == "add":
            p.add_argument("url", metavar="URL", help="the hub's URL (its application service)")
            p.add_argument("--auth-url", metavar="URL",
                           help="the authentication service's URL (default: URL)")
            p.add_argument("--protocol", default=next(iter(PROTOCOLS)),
                           help=f"the protocol both services speak ({protocols})")
        if verb == "edit":
            p.add_argument("--url", help="a new application URL (the authentication URL "
                           "follows when it was the same)")
            p.add_argument("--auth-url", metavar="URL", help="a new authentication URL")
            p.add_argument("--protocol", help=f"a new protocol for both services ({protocols})")
            p.add_argument("--name", dest="new_name", metavar="NEW", help="a new name")
        if verb == "check":
            p.add_argument("--timeout", type=_seconds, default=5.0, metavar="SECONDS",
                           help="give up after this long (default: 5)")
        p.set_defaults(func=_command(func))

