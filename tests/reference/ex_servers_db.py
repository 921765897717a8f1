"""The examples of servers-database.rst (docs/REFERENCE.md says what each shows)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT_PASSWORD, free_port
from tests.reference.conftest import Ref
from tests.reference.examples import example

# no code: its rules, run through `ferry servers` and Session(server=…) against the hub

def servers(*args: str) -> tuple[int, str, str]:
    """``ferry servers …`` in this process (the user's database, under the test's home)."""
    from ferry.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["servers", *args])
    return code, out.getvalue(), err.getvalue()


def user_server(ref: Ref, name: str, url: str | None = None) -> None:
    code, _, err = servers("remove", name)  # what an earlier run of the example left
    code, _, err = servers("add", name, url or ref.hub.url)
    assert code == 0, err


@example("servers-database: identification (one name, any case)")
def servers_identification(ref: Ref) -> None:
    user_server(ref, "Studio")
    code, out, _ = servers("check", "STUDIO")  # used by its name, in any case
    assert code == 0 and "Running" in out, out
    code, _, err = servers("add", "studio", "http://127.0.0.1:9")
    assert code == 1 and "exists" in err, err  # unique whatever the case
    from hub import Session

    session = Session(server="studio", username="root", password=ROOT_PASSWORD)
    assert session.url == ref.hub.url and session.user["username"] == "root"


@example("servers-database: predefined and user defined servers")
def servers_predefined(ref: Ref) -> None:
    code, out, _ = servers("list")
    assert code == 0 and re.search(r"^local\s+predefined", out, re.M), out
    code, _, err = servers("remove", "local")
    assert code == 1 and "predefined" in err  # predefined servers cannot be deleted
    code, _, err = servers("add", "LOCAL", ref.hub.url)
    assert code == 1 and "predefined" in err  # nor their names taken
    user_server(ref, "mine")
    assert servers("remove", "mine")[0] == 0  # a user's own is removed


@example("servers-database: definition details (two services and their protocol)")
def servers_definition(ref: Ref) -> None:
    servers("remove", "sso")
    code, _, err = servers("add", "sso", ref.hub.url, "--auth-url", "https://sso.example")
    assert code == 0, err
    code, out, _ = servers("show", "sso")
    assert re.search(r"authentication:?\s+https://sso\.example\s+\(?ferry-v1", out), out
    assert re.search(rf"application:?\s+{re.escape(ref.hub.url)}\s+\(?ferry-v1", out), out


@example("servers-database: server status")
def servers_status(ref: Ref) -> None:
    from tests.proxy import ThreadedProxy

    relay = ThreadedProxy(int(ref.hub.url.rsplit(":", 1)[1]))
    port = relay.start()
    user_server(ref, "relayed", f"http://127.0.0.1:{port}")
    user_server(ref, "nowhere", f"http://127.0.0.1:{free_port()}")
    assert "Never reached" in servers("show", "relayed")[1]
    assert servers("check", "nowhere")[0] == 1
    assert "Never reached" in servers("show", "nowhere")[1]  # failures keep it so
    code, out, _ = servers("check", "relayed")
    assert code == 0 and "Running" in out
    relay.stop()  # under maintenance
    code, _, err = servers("check", "relayed")
    assert code == 1 and "status: Unavailable" in err and "maintenance" in err, err


@example("servers-database: server cache")
def servers_cache(ref: Ref) -> None:
    from servers import ServersDB

    user_server(ref, "cached")
    assert servers("check", "cached")[0] == 0
    db = ServersDB()
    assert db.cache_max_age == 24 * 3600  # typically 24 h
    fetched = db.get("cached").cache["version"]
    assert db.cached("cached", "version", lambda: pytest.fail("not from the cache")) == \
        fetched.value


@example("servers-database: creation (where the database is)")
def servers_location(ref: Ref) -> None:
    servers("list")
    # Linux: $HOME/.local/share/<the client's name>; Ferry's is ferry, in XDG_DATA_HOME
    path = Path(ref.env["XDG_DATA_HOME"]) / "ferry" / "servers.json"
    assert json.loads(path.read_text())["servers"][0]["name"] == "local"


@example("servers-database: upgrade")
def servers_upgrade(ref: Ref) -> None:
    from servers import SecretStore, ServersDB

    folder = ref.tmp / "upgrade"
    folder.mkdir(exist_ok=True)

    def db(predefined: list[dict[str, str]]) -> ServersDB:
        return ServersDB(folder / "servers.json", predefined=predefined,
                         secrets=SecretStore(folder / "secrets.json", backend=None))

    local = {"name": "local", "url": "http://127.0.0.1:7700"}
    db([local, {"name": "old", "url": "https://old.example"}]).add("Studio",
                                                                  "https://mine.example")
    new = db([local, {"name": "studio", "url": "https://studio.example"}])
    names = [(s.name, s.predefined) for s in new.list()]
    # removed predefined servers go; a new predefined name renames the user's server
    assert names == [("local", True), ("studio", True), ("Studio_user_defined", False)]
    assert "renamed 'Studio_user_defined'" in new.warnings[0]
    assert new.reserved() == ["old"]  # and a removed predefined name is never reused
