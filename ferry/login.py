"""``ferry login`` and ``ferry logout``, and how the operator's commands reach a hub.

``ferry login HUB`` takes a hub's URL or its name in the servers database (a URL not
in it yet is added under a name made from its host and port), asks for the password
(on a terminal, from ``FERRY_PASSWORD``, or with ``--password-stdin``), and keeps the
token where the servers database keeps tokens (the OS keyring, or an owner-only file).
That hub is then the default of every command that takes ``--hub``.

Exit codes of the operator's commands (``operate``): 0 ok, 1 the thing failed, 2 usage
(a bad flag, query or value), 3 not logged in or refused.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import write_atomic
from core.errors import ApiError, FerryError, HubError, NotLoggedIn, QueryError

if TYPE_CHECKING:  # loaded by the commands that run: every ferry process builds the parser
    from hub.session import Session
    from servers import ServersDB

OK, FAILED, USAGE, REFUSED = 0, 1, 2, 3
CURRENT_FILE = "login.json"  # beside the servers database: the hub last logged in to


class Usage(FerryError):
    """A command given something it cannot use: exit code 2."""


Command = Callable[[argparse.Namespace], int]


def operate(func: Command) -> Command:
    """``func`` with its errors said in one line and turned into the exit codes above."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except Usage as exc:
            return _fail(str(exc), USAGE)
        except NotLoggedIn as exc:
            return _fail(f"not logged in: {exc}", REFUSED)
        except QueryError as exc:
            return _fail(f"bad query: {str(exc).splitlines()[0]}", USAGE)
        except ApiError as exc:
            message = exc.message.splitlines()[0] if exc.message else exc.code
            if exc.code == "query_error":
                return _fail(f"bad query: {message}", USAGE)
            if exc.status in (401, 403):
                return _fail(f"refused: {message}", REFUSED)
            if exc.status in (400, 422):
                return _fail(message, USAGE)
            return _fail(message, FAILED)
        except (HubError, OSError) as exc:
            return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, FAILED)
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return 130

    run.__doc__ = func.__doc__
    return run


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def add_hub(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", metavar="HUB", help="a hub's URL or its name in the servers "
                        "database (default: the one last logged in to with ferry login)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON, nothing else")


def servers() -> ServersDB:
    from servers import ServersDB  # noqa: PLC0415 - keyring and the file only when needed

    return ServersDB()


def _current_path(db: ServersDB) -> Path:
    return db.path.with_name(CURRENT_FILE)


def current(db: ServersDB) -> str | None:
    """The hub last logged in to (its name in the servers database), if any."""
    try:
        name = json.loads(_current_path(db).read_text()).get("hub")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


def _set_current(db: ServersDB, name: str | None) -> None:
    path = _current_path(db)
    if name is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"hub": name}) + "\n")


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def server_name(db: ServersDB, hub: str, *, add: bool = False) -> str:
    """The servers database's name for ``hub`` (a URL or a name). A URL it does not hold
    is added under a name made from its host and port when ``add``."""
    from servers import ServersError  # noqa: PLC0415

    if not _is_url(hub):
        try:
            return db.get(hub).name
        except ServersError:
            raise Usage(f"unknown hub {hub!r}: give its URL (http://host:port) or a name "
                        "from 'ferry servers list'") from None
    url = hub.rstrip("/")
    for server in db.list():
        if str(server.application.url).rstrip("/") == url:
            return server.name
    if not add:
        raise NotLoggedIn(f"run 'ferry login {url}' first")
    parts = urllib.parse.urlsplit(url)
    base = "".join(c if c.isalnum() or c in "_.-" else "-"
                   for c in f"{parts.hostname}-{parts.port or parts.scheme}")[:60]
    taken = {s.name.casefold() for s in db.list()} | {n.casefold() for n in db.reserved()}
    name, n = base, 1
    while name.casefold() in taken:
        n += 1
        name = f"{base}-{n}"
    try:
        db.add(name, url)
    except ServersError as exc:
        raise Usage(str(exc)) from None
    return name


def connect(args: argparse.Namespace) -> Session:
    """A session with the hub ``--hub`` names, else the one last logged in to; with no
    login at all, the one ``FERRY_HUB`` and its credentials in the environment name."""
    from hub.session import Session  # noqa: PLC0415 - see the import above

    hub = getattr(args, "hub", None)
    if hub is None:
        db = servers()
        hub = current(db)
        if hub is None:
            if os.environ.get("FERRY_HUB") and (os.environ.get("FERRY_API_KEY") or (
                    os.environ.get("FERRY_USERNAME") and os.environ.get("FERRY_PASSWORD"))):
                return Session()
            raise NotLoggedIn("run 'ferry login HUB' first (or give --hub)")
        return Session(server=hub)
    db = servers()
    return Session(server=server_name(db, hub))


def _password(args: argparse.Namespace, username: str) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise Usage("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    if os.environ.get("FERRY_PASSWORD") is not None:
        return os.environ["FERRY_PASSWORD"]
    if sys.stdin.isatty():
        return getpass.getpass(f"password of {username}: ")
    raise Usage(f"no password for {username}: not on a terminal; use --password-stdin or "
                "set FERRY_PASSWORD")


def cmd_login(args: argparse.Namespace) -> int:
    from hub.session import Session  # noqa: PLC0415

    db = servers()
    known = {s.name for s in db.list()}
    name = server_name(db, args.hub, add=True)  # an unknown hub before any question
    try:
        username = args.username or os.environ.get("FERRY_USERNAME")
        if not username:
            if not sys.stdin.isatty() or args.password_stdin:
                raise Usage("no username: give --username (or set FERRY_USERNAME)")
            username = input("username: ").strip()
            if not username:
                raise Usage("no username given")
        password = _password(args, username)
        try:
            session = Session(server=name, username=username, password=password)
        except ApiError as exc:
            if exc.status == 401:
                raise NotLoggedIn(f"the hub refused the login of {username}: "
                                  f"{exc.message}") from None
            raise
    except BaseException:
        if name not in known:  # a hub added for this login goes with it
            db.remove(name)
        raise
    if not db.token(name):
        raise HubError(f"logged in, but the token could not be kept in {db.secrets.where}")
    _set_current(db, name)
    role = session.user.get("role", "")
    print(f"logged in to {name} ({session.url}) as {username}"
          + (f" ({role})" if role else "") + f"; the token is kept in {db.secrets.where}")
    return OK


def cmd_logout(args: argparse.Namespace) -> int:
    db = servers()
    last = current(db)
    hub = args.hub or last
    if hub is None:
        print("not logged in to any hub")
        return OK
    name = server_name(db, hub)
    had = db.token(name) is not None
    db.secrets.delete(name)
    if last is not None and last.casefold() == name.casefold():
        _set_current(db, None)
    print(f"logged out of {name}: its token is forgotten here (the hub lets it expire)"
          if had else f"not logged in to {name}")
    return OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "log in to a hub; its token is kept for the commands that follow"
    login = sub.add_parser("login", help=text, description=text + ". HUB is a URL "
                           "(http://host:port; added to the servers database) or a name from "
                           "it. The password is asked for on a terminal, or read from "
                           "FERRY_PASSWORD, or from standard input with --password-stdin; "
                           "never from a flag.")
    login.add_argument("hub", metavar="HUB", help="the hub's URL or its name in the servers "
                       "database")
    login.add_argument("--username", metavar="U", help="who logs in (default: "
                       "FERRY_USERNAME, else asked for)")
    login.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")
    login.set_defaults(func=operate(cmd_login))
    text = "forget the token of a hub (default: the one last logged in to)"
    logout = sub.add_parser("logout", help=text, description=text + ".")
    logout.add_argument("hub", metavar="HUB", nargs="?", help="the hub's URL or name")
    logout.set_defaults(func=operate(cmd_logout))


def dump(value: Any) -> None:
    """``--json``: the hub's records as they came."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))
