"""The servers database (servers-database.rst): one test per rule, on a real file in
tmp_path, with real processes for the concurrent writers."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from core.errors import ApiError
from core.paths import roots
from protocol import PROTOCOL_VERSION
from servers import (
    PROTOCOLS,
    Protocol,
    SecretStore,
    Server,
    ServersDB,
    ServersError,
    ServiceAccess,
    Status,
    answered,
    require,
)
from servers.predefined import LOCAL_HUB
from servers.upgrade import FORMAT

DATA = Path(__file__).parent / "data"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_db(folder: Path, **kwargs: Any) -> ServersDB:
    """A database in ``folder`` whose tokens go to a file there, never to a keyring."""
    kwargs.setdefault("secrets", SecretStore(folder / "servers-secrets.json", backend=None))
    return ServersDB(folder / "servers.json", **kwargs)


@pytest.fixture
def db(tmp_path: Path) -> ServersDB:
    return make_db(tmp_path)


def stored(db: ServersDB) -> dict[str, Any]:
    return json.loads(db.path.read_text())  # type: ignore[no-any-return]


def names(db: ServersDB) -> list[str]:
    return [s.name for s in db.list()]


# --- identification


def test_names_are_unique_regardless_of_case(db: ServersDB) -> None:
    db.add("Studio", "https://hub.studio.example")
    for name in ("studio", "STUDIO", "Studio"):
        with pytest.raises(ServersError, match="a server named 'Studio' already exists"):
            db.add(name, "https://elsewhere.example")
    db.add("lab", "https://lab.example")
    with pytest.raises(ServersError, match="already exists"):
        db.edit("lab", new_name="STUDIO")
    db.edit("lab", new_name="LAB")  # its own name in another case is no conflict
    assert names(db) == ["local", "Studio", "LAB"]


def test_a_server_is_used_by_its_name_in_any_case(db: ServersDB) -> None:
    db.add("Studio", "https://hub.studio.example")
    assert db.get("sTuDiO").name == "Studio"  # the name as given
    assert db.get("LOCAL").name == "local"
    with pytest.raises(ServersError, match=r"no server named 'nope'; known servers: local, Studio"):
        db.get("nope")


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "héllo", "a/b", "ok?"])
def test_names_are_letters_digits_and_three_signs(db: ServersDB, name: str) -> None:
    with pytest.raises(ServersError, match="invalid server name"):
        db.add(name, "https://hub.example")
    assert db.add("a-b_c.1" + "x" * 57, "https://hub.example").name == "a-b_c.1" + "x" * 57


# --- predefined and user-defined servers


def test_predefined_servers_ship_with_the_package(db: ServersDB) -> None:
    local = db.get("local")
    assert local.predefined and local.kind == "predefined"
    assert local.url == LOCAL_HUB == "http://127.0.0.1:7700"  # hub/config.py's defaults
    assert [e["predefined"] for e in stored(db)["servers"]] == [True]


def test_predefined_servers_cannot_be_removed(db: ServersDB) -> None:
    with pytest.raises(ServersError, match="server 'local' is predefined: it cannot be removed"):
        db.remove("LOCAL")
    assert names(db) == ["local"]


def test_predefined_servers_cannot_be_edited(db: ServersDB) -> None:
    with pytest.raises(ServersError, match="server 'local' is predefined: it cannot be edited"):
        db.edit("local", url="http://127.0.0.1:9999")
    assert db.get("local").url == LOCAL_HUB


def test_a_user_defined_server_cannot_take_a_predefined_name(db: ServersDB) -> None:
    for name in ("local", "Local", "LOCAL"):
        with pytest.raises(ServersError, match="is the name of a predefined server"):
            db.add(name, "https://hub.example")
    db.add("mine", "https://hub.example")
    with pytest.raises(ServersError, match="is the name of a predefined server"):
        db.edit("mine", new_name="Local")


def test_user_defined_servers_are_edited_and_removed(db: ServersDB) -> None:
    db.add("mine", "https://hub.example")
    assert not db.get("mine").predefined
    db.edit("mine", new_name="ours", protocol="ferry-v1")
    assert names(db) == ["local", "ours"]
    db.remove("OURS")
    assert names(db) == ["local"]
    with pytest.raises(ServersError, match="no server named 'ours'"):
        db.remove("ours")


# --- definition: two service accesses, protocols of the package


def test_a_server_has_an_authentication_and_an_application_service(db: ServersDB) -> None:
    same = db.add("same", "https://hub.example/")
    assert same.authentication == same.application == ServiceAccess("https://hub.example",
                                                                     "ferry-v1")
    split = db.add("split", "https://app.example", auth_url="https://auth.example/login")
    assert split.application.url == "https://app.example"
    assert split.authentication.url == "https://auth.example/login"
    entry = stored(db)["servers"][2]
    assert entry["authentication"] == {"url": "https://auth.example/login", "protocol": "ferry-v1"}
    assert entry["application"] == {"url": "https://app.example", "protocol": "ferry-v1"}
    # an authentication URL that was the application's follows it; a separate one stays
    assert db.edit("same", url="https://moved.example").authentication.url == \
        "https://moved.example"
    assert db.edit("split", url="https://app2.example").authentication.url == \
        "https://auth.example/login"


@pytest.mark.parametrize(("url", "why"), [
    ("hub.example", "http:// or https://"), ("ftp://hub.example", "http:// or https://"),
    ("https://", "names no host"), ("https://user:pw@hub.example", "no user name or password"),
    ("https://hub.example/?a=1", "no '?query'"), ("https://hub.example:99999", "invalid URL"),
    (" https://hub.example", "invalid URL"), ("", "invalid URL")])
def test_a_service_url_is_http_or_https_with_a_host(db: ServersDB, url: str, why: str) -> None:
    with pytest.raises(ServersError, match=re.escape(why)):
        db.add("bad", url)
    with pytest.raises(ServersError, match=re.escape(why)):
        db.add("bad", "https://hub.example", auth_url=url or "x")
    assert names(db) == ["local"]


def test_protocols_are_defined_in_the_package(db: ServersDB) -> None:
    assert next(iter(PROTOCOLS)) == "ferry-v1" == PROTOCOL_VERSION  # the hub's own
    with pytest.raises(ServersError, match="unknown protocol 'resto-v2': this Ferry knows "
                                           "'ferry-v1'"):
        db.add("old", "https://hub.example", protocol="resto-v2")
    server = db.add("hub", "https://hub.example")
    for request in ("token", "enroll", "checkin", "claim", "heartbeat", "report", "reset",
                    "find", "get", "create", "update", "delete", "version", "description",
                    "shares", "collaborations"):
        assert require(server, request).name == "ferry-v1"


def test_a_request_the_servers_protocol_lacks_is_refused(db: ServersDB,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROTOCOLS, "tiny-v0", Protocol("tiny-v0", frozenset({"version"})))
    server = db.add("tiny", "https://tiny.example", protocol="tiny-v0")
    assert require(server, "version").name == "tiny-v0"
    with pytest.raises(ServersError, match="server 'tiny' speaks protocol 'tiny-v0', which has no "
                                           "request 'claim'"):
        require(server, "claim")
    with pytest.raises(ServersError, match="which has no request 'teleport'"):
        require(db.get("local"), "teleport")


# --- status


def test_a_new_server_is_never_reached_and_failures_keep_it_so(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")
    assert db.get("hub").status == Status.NEVER_REACHED == "Never reached"
    failed = db.observe("hub", False, at=T0)
    assert failed.status == Status.NEVER_REACHED and failed.last_failure == T0
    assert db.get("hub").status == Status.NEVER_REACHED


def test_status_moves_running_unavailable_running(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")
    assert db.observe("hub", True, at=T0).status == Status.RUNNING
    later = T0 + timedelta(minutes=5)
    server = db.observe("hub", False, at=later)
    assert server.status == Status.UNAVAILABLE == "Unavailable"
    assert (server.last_success, server.last_failure) == (T0, later)
    assert db.observe("hub", False, at=later + timedelta(minutes=5)).status == Status.UNAVAILABLE
    assert db.observe("hub", True, at=later + timedelta(minutes=10)).status == Status.RUNNING
    assert stored(db)["servers"][1]["status"] == "Running"


def test_application_errors_count_as_answers() -> None:
    for status in (401, 404, 409, 422):
        assert answered(ApiError(status, "x", "an application error"))
    assert not answered(ApiError(503, "x", "maintenance"))
    assert not answered(ConnectionRefusedError())
    assert not answered(TimeoutError())
    assert not answered(ValueError("not JSON"))


def test_an_application_error_leaves_a_server_running(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")

    def not_found() -> Any:
        raise ApiError(404, "not_found", "no such record")

    with pytest.raises(ApiError):
        db.cached("hub", "shares", not_found)
    assert db.get("hub").status == Status.RUNNING


def test_error_messages_differ_by_status(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")
    never = db.problem("hub", "connection refused")
    assert "has never been reached: connection refused; check the URL" in never
    db.observe("hub", True, at=T0)
    assert db.problem("hub", "no such job") == "server 'hub' (https://hub.example): no such job"
    db.observe("hub", False, at=T0 + timedelta(hours=1))
    unavailable = db.problem("hub", "timed out")
    assert "is unavailable: timed out; it was reachable before" in unavailable
    assert "down for maintenance" in unavailable
    assert len({never, unavailable}) == 2


def test_statuses_are_kept_between_uses(db: ServersDB) -> None:
    db.observe("local", True, at=T0)
    again = make_db(db.path.parent)
    assert again.get("local").status == Status.RUNNING
    assert again.get("local").last_success == T0


# --- cache


def test_the_cache_is_used_first(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")
    calls: list[int] = []

    def fetch() -> dict[str, Any]:
        calls.append(1)
        return {"version": "1.0", "protocol": "ferry-v1"}

    assert db.cached("hub", "version", fetch) == {"version": "1.0", "protocol": "ferry-v1"}
    assert make_db(db.path.parent).cached("hub", "version", fetch)["version"] == "1.0"
    assert len(calls) == 1
    assert db.get("hub").status == Status.RUNNING
    assert stored(db)["servers"][1]["cache"]["version"]["value"]["version"] == "1.0"


def test_the_cache_is_refreshed_when_older_than_max_age(tmp_path: Path) -> None:
    db = make_db(tmp_path, cache_max_age=3600)
    db.add("hub", "https://hub.example")
    now = datetime.now(UTC)
    db.remember("hub", "description", "old", at=now - timedelta(minutes=30))
    assert db.cached("hub", "description", lambda: "new") == "old"  # younger than an hour
    db.remember("hub", "description", "old", at=now - timedelta(hours=2))
    assert db.cached("hub", "description", lambda: "new") == "new"
    assert db.cached("hub", "description", lambda: "newer", max_age=0) == "newer"
    assert ServersDB(tmp_path / "x.json").cache_max_age == 24 * 3600  # the default: 24 h


def test_a_failed_refresh_returns_the_stale_value(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")
    db.observe("hub", True, at=T0)
    db.remember("hub", "collaborations", ["A", "B"], at=T0)

    def down() -> list[str]:
        raise ConnectionRefusedError("connection refused")

    assert db.cached("hub", "collaborations", down) == ["A", "B"]
    server = db.get("hub")
    assert server.status == Status.UNAVAILABLE  # the failure is recorded
    entry = server.cache["collaborations"]
    assert entry.fetched == T0 and entry.failed is not None
    assert entry.error == "connection refused"


def test_a_failed_fetch_with_nothing_cached_raises(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")

    def down() -> str:
        raise TimeoutError("timed out")

    with pytest.raises(TimeoutError):
        db.cached("hub", "version", down)
    assert db.get("hub").status == Status.NEVER_REACHED


def test_only_json_is_cached(db: ServersDB) -> None:
    with pytest.raises(ServersError, match="not JSON"):
        db.remember("local", "version", {1, 2})
    with pytest.raises(ServersError, match="invalid cache key"):
        db.cached("local", "Bad Key", lambda: 1)


def test_a_new_application_url_starts_status_and_cache_again(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")
    db.observe("hub", True, at=T0)
    db.remember("hub", "version", {"version": "1"})
    moved = db.edit("hub", url="https://new.example")
    assert moved.status == Status.NEVER_REACHED and moved.cache == {}
    assert db.edit("hub", new_name="hub2").status == Status.NEVER_REACHED


# --- lifecycle: creation


def test_the_database_is_created_at_first_use_not_at_import(env: dict[str, str]) -> None:
    script = ("import servers, servers.cli, sys\n"
              "from servers import ServersDB\n"
              "db = ServersDB()\n"
              "print('>', db.path, db.path.exists(), db.path.parent.exists())\n"
              "print('>', [s.name for s in db.list()], db.path.exists())\n")
    out = [line[2:] for line in subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True,
        check=True).stdout.splitlines() if line.startswith("> ")]
    path = Path(env["XDG_DATA_HOME"]) / "ferry" / "servers.json"
    assert out[0] == f"{path} False False"
    assert out[1] == "['local'] True"
    assert json.loads(path.read_text())["format"] == FORMAT


def test_the_default_paths_are_the_data_folders(env: dict[str, str]) -> None:
    assert ServersDB().path == Path(env["XDG_DATA_HOME"]) / "ferry" / "servers.json"
    system = ServersDB(system=True)
    assert system.path == roots(True).data / "servers.json"
    assert ServersDB(Path("elsewhere.json")).path == Path("elsewhere.json")


def test_the_file_tells_predefined_and_user_servers_apart(db: ServersDB) -> None:
    db.add("mine", "https://hub.example")
    data = stored(db)
    assert set(data) == {"format", "predefined_set", "reserved", "servers"}
    assert data["format"] == FORMAT and data["predefined_set"].startswith("sha256:")
    assert [(e["name"], e["predefined"]) for e in data["servers"]] == [("local", True),
                                                                        ("mine", False)]


def test_bad_input_writes_nothing(db: ServersDB) -> None:
    db.add("mine", "https://hub.example")
    before = db.path.read_bytes()
    for bad in (lambda: db.add("x", "nope"), lambda: db.add("LOCAL", "https://a.example"),
                lambda: db.edit("local", url="https://a.example"), lambda: db.remove("local"),
                lambda: db.edit("mine", protocol="nope"), lambda: db.remove("ghost"),
                lambda: db.edit("mine", new_name="bad name")):
        with pytest.raises(ServersError):
            bad()
    assert db.path.read_bytes() == before


# --- lifecycle: upgrade


def write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data))


def test_an_upgrade_replaces_the_predefined_servers(tmp_path: Path) -> None:
    old = make_db(tmp_path, predefined=[{"name": "local", "url": "http://127.0.0.1:7700"},
                                        {"name": "demo", "url": "https://demo.example"}])
    old.observe("local", True, at=T0)
    old.remember("local", "version", {"version": "0.9"})
    new = make_db(tmp_path, predefined=[{"name": "local", "url": "http://127.0.0.1:7700"},
                                        {"name": "eu", "url": "https://eu.example"}])
    servers = new.list()
    assert [(s.name, s.predefined) for s in servers] == [("local", True), ("eu", True)]
    # removed and created again: nothing of the old local is kept
    assert servers[0].status == Status.NEVER_REACHED and servers[0].cache == {}
    assert stored(new)["predefined_set"] == new.package_set != old.package_set


def test_an_upgrade_keeps_compatible_user_servers(tmp_path: Path) -> None:
    old = make_db(tmp_path, predefined=[{"name": "local", "url": "http://127.0.0.1:7700"}])
    old.add("studio", "https://hub.studio.example", auth_url="https://auth.studio.example")
    old.observe("studio", True, at=T0)
    old.remember("studio", "version", {"version": "1"}, at=T0)
    before = old.get("studio")
    new = make_db(tmp_path, predefined=[Server.define("local", "http://127.0.0.1:7701")])
    assert new.get("local").predefined and new.get("local").url == "http://127.0.0.1:7701"
    assert new.get("studio") == before  # unchanged: definition, status and cache
    assert new.warnings == []


def test_an_upgrade_backs_up_removes_and_warns_about_incompatible_servers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROTOCOLS, "resto-v1", Protocol("resto-v1", frozenset({"version"})))
    old = make_db(tmp_path)
    old.add("resto", "https://resto.example", protocol="resto-v1")
    old.add("fine", "https://fine.example")
    monkeypatch.delitem(PROTOCOLS, "resto-v1")  # the new package no longer has it
    new = make_db(tmp_path, predefined=[{"name": "local", "url": "http://127.0.0.1:7701"}])
    assert names(new) == ["local", "fine"]
    [warning] = new.warnings
    assert "server 'resto' was removed" in warning and "unknown protocol 'resto-v1'" in warning
    assert "define it again" in warning
    [backup] = tmp_path.glob("servers.json.removed-*")
    assert str(backup) in warning
    saved = json.loads(backup.read_text())
    assert saved["removed"][0]["server"]["name"] == "resto"
    assert saved["removed"][0]["server"]["application"]["protocol"] == "resto-v1"
    assert "unknown protocol" in saved["removed"][0]["reason"]
    assert [s["name"] for s in saved["original"]["servers"]] == ["local", "resto", "fine"]
    make_db(tmp_path).list()  # done once: no second backup
    assert len(list(tmp_path.glob("servers.json.removed-*"))) == 1


def test_names_of_removed_predefined_servers_stay_reserved(tmp_path: Path) -> None:
    both = [{"name": "local", "url": "http://127.0.0.1:7700"},
            {"name": "Demo", "url": "https://demo.example"}]
    make_db(tmp_path, predefined=both).list()
    new = make_db(tmp_path, predefined=both[:1])
    assert names(new) == ["local"] and new.reserved() == ["Demo"]
    for name in ("demo", "DEMO"):
        with pytest.raises(ServersError, match=f"'{name}' is reserved: it was the name of a "
                                               "predefined server"):
            new.add(name, "https://mine.example")
    new.add("mine", "https://mine.example")
    with pytest.raises(ServersError, match="is reserved"):
        new.edit("mine", new_name="demo")
    # a later package may predefine it again
    again = make_db(tmp_path, predefined=both)
    assert names(again) == ["local", "Demo", "mine"] and again.reserved() == []
    assert again.get("demo").predefined
    # and a later one that drops it again keeps it reserved
    assert make_db(tmp_path, predefined=both[:1]).reserved() == ["Demo"]


def test_a_new_predefined_name_renames_the_user_server_that_had_it(tmp_path: Path) -> None:
    make_db(tmp_path).add("Studio", "https://mine.example")
    new = make_db(tmp_path, predefined=[{"name": "local", "url": "http://127.0.0.1:7700"},
                                        {"name": "studio", "url": "https://studio.example"}])
    assert [(s.name, s.predefined, s.url) for s in new.list()] == [
        ("local", True, "http://127.0.0.1:7700"), ("studio", True, "https://studio.example"),
        ("Studio_user_defined", False, "https://mine.example")]
    [warning] = new.warnings
    assert warning == ("user-defined server 'Studio' was renamed 'Studio_user_defined': this "
                       "Ferry predefines a server of that name")


def test_a_renamed_server_is_then_checked_like_the_others(tmp_path: Path) -> None:
    # renamed first, then found too long for a name: backed up and removed
    long = "s" * 60
    make_db(tmp_path).add(long, "https://mine.example")
    new = make_db(tmp_path, predefined=[{"name": "local", "url": "http://127.0.0.1:7700"},
                                        {"name": long, "url": "https://studio.example"}])
    assert [s.name for s in new.list()] == ["local", long]
    assert len(new.warnings) == 2 and "was renamed" in new.warnings[0]
    assert "invalid server name" in new.warnings[1]
    assert len(list(tmp_path.glob("servers.json.removed-*"))) == 1


def test_the_format_1_file_is_upgraded(tmp_path: Path) -> None:
    shutil.copy(DATA / "servers-format-1.json", tmp_path / "servers.json")
    db = make_db(tmp_path)
    servers = {s.name: s for s in db.list()}
    assert list(servers) == ["local", "studio", "lab"]
    # predefined: the package's, created afresh; 'demo' is no longer predefined: reserved
    assert servers["local"].predefined and servers["local"].status == Status.NEVER_REACHED
    assert db.reserved() == ["demo"]
    # compatible user servers: converted to two service accesses of ferry-v1, status kept
    studio = servers["studio"]
    assert studio.application == studio.authentication == ServiceAccess(
        "https://hub.studio.example:8443", "ferry-v1")
    assert studio.status == Status.RUNNING and servers["lab"].status == Status.UNAVAILABLE
    # incompatible ones: removed, backed up, and the user told why
    assert len(db.warnings) == 3
    reasons = " | ".join(db.warnings)
    assert "'Studio' was removed" in reasons and "case-insensitive" in reasons
    assert "'farm' was removed" in reasons and "http:// or https://" in reasons
    assert "'render farm' was removed" in reasons and "invalid server name" in reasons
    [backup] = tmp_path.glob("servers.json.removed-*")
    assert [r["server"]["name"] for r in json.loads(backup.read_text())["removed"]] == [
        "Studio", "farm", "render farm"]
    data = stored(db)
    assert data["format"] == FORMAT and data["reserved"] == ["demo"]
    assert "url" not in data["servers"][1]


def test_a_file_of_a_newer_format_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "servers.json"
    write(path, {"format": FORMAT + 1, "servers": []})
    before = path.read_bytes()
    with pytest.raises(ServersError, match="written by a newer Ferry"):
        make_db(tmp_path).list()
    assert path.read_bytes() == before


def test_a_hand_edited_predefined_server_comes_back_to_the_package(db: ServersDB) -> None:
    db.observe("local", True, at=T0)
    data = stored(db)
    data["servers"][0]["application"]["url"] = "http://evil.example"
    data["servers"].append({**data["servers"][0], "name": "LOCAL", "predefined": False})
    write(db.path, data)
    local = db.get("local")
    assert local.url == LOCAL_HUB and local.status == Status.RUNNING
    assert names(db) == ["local", "LOCAL_user_defined"]


# --- lifecycle: a corrupt file


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"format": "two"}',
                                     b'{"format": 2, "servers": {}}', b"\xff\xfe garbage", b""])
def test_a_corrupt_file_is_moved_aside_and_a_new_one_made(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "servers.json"
    path.write_bytes(content)
    db = make_db(tmp_path)
    assert names(db) == ["local"]
    [aside] = tmp_path.glob("servers.json.corrupt-*")
    assert aside.read_bytes() == content
    [warning] = db.warnings
    assert f"moved to {aside}" in warning and "add your servers again" in warning
    assert stored(db)["format"] == FORMAT


def test_an_unreadable_file_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "servers.json").mkdir()  # not a file: reading it fails
    db = make_db(tmp_path)
    db.add("mine", "https://hub.example")
    assert names(db) == ["local", "mine"]
    assert [p.is_dir() for p in tmp_path.glob("servers.json.corrupt-*")] == [True]


def test_a_broken_entry_is_backed_up_not_the_whole_file(db: ServersDB) -> None:
    db.add("good", "https://good.example")
    data = stored(db)
    data["servers"].append("not a server")
    write(db.path, data)
    assert names(db) == ["local", "good"]
    assert "entry 3 is not a server definition" in db.warnings[0]


# --- writing: atomic, locked


def test_concurrent_processes_lose_no_change(tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = ("import sys, time\nfrom pathlib import Path\nfrom servers import ServersDB\n"
              "db = ServersDB(Path(sys.argv[1]))\n"
              f"while not Path({str(go)!r}).exists():\n"
              "    time.sleep(0.01)\n"
              "for i in range(12):\n"
              "    db.add(f'{sys.argv[2]}-{i}', f'https://{sys.argv[2]}-{i}.example')\n"
              "    db.observe('local', i % 2 == 0)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "servers.json"),
                               f"p{n}"], stderr=subprocess.PIPE) for n in range(5)]
    go.touch()  # all at once
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    db = make_db(tmp_path)
    assert sorted(names(db)) == sorted(["local"] + [f"p{n}-{i}" for n in range(5)
                                                     for i in range(12)])
    assert db.warnings == []


def test_concurrent_threads_lose_no_change(db: ServersDB) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                db.add(f"t{n}-{i}", "https://hub.example")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(db.list()) == 41


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(
        db: ServersDB, monkeypatch: pytest.MonkeyPatch) -> None:
    db.add("mine", "https://hub.example")
    before = db.path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        db.add("other", "https://other.example")
    monkeypatch.undo()
    assert db.path.read_bytes() == before
    assert sorted(p.name for p in db.path.parent.iterdir()) == ["servers.json",
                                                                "servers.json.lock"]


def test_the_file_is_replaced_not_rewritten_in_place(db: ServersDB) -> None:
    db.list()
    inode = db.path.stat().st_ino
    db.add("mine", "https://hub.example")
    assert db.path.stat().st_ino != inode  # a reader holding the old file sees it whole


def test_a_request_a_minute_does_not_rewrite_the_file(db: ServersDB) -> None:
    db.observe("local", True, at=T0)
    mtime = db.path.stat().st_mtime_ns
    inode = db.path.stat().st_ino
    db.observe("local", True, at=T0 + timedelta(seconds=20))
    assert (db.path.stat().st_ino, db.path.stat().st_mtime_ns) == (inode, mtime)
    assert db.observe("local", True, at=T0 + timedelta(minutes=2)).last_success == \
        T0 + timedelta(minutes=2)


# --- tokens


def test_tokens_are_not_in_the_database(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")
    db.set_token("HUB", "s3cr3t-token")
    assert db.token("hub") == "s3cr3t-token"
    assert "s3cr3t-token" not in db.path.read_text()


def test_without_a_keyring_tokens_go_to_an_owner_only_file(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")
    db.add("other", "https://other.example")
    db.set_token("hub", "token-1")
    db.set_token("other", "token-2")
    file = db.path.parent / "servers-secrets.json"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert json.loads(file.read_text())["tokens"] == {"hub": "token-1", "other": "token-2"}
    assert db.secrets.where == f"the file {file}"
    db.remove("hub")  # removing a server removes its token
    assert db.token("other") == "token-2"
    assert json.loads(file.read_text())["tokens"] == {"other": "token-2"}
    assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_a_renamed_server_keeps_its_token_a_new_auth_url_drops_it(db: ServersDB) -> None:
    db.add("hub", "https://hub.example")
    db.set_token("hub", "token-1")
    db.edit("hub", new_name="renamed")
    assert db.token("renamed") == "token-1"
    db.edit("renamed", auth_url="https://auth.example")
    assert db.token("renamed") is None


def test_a_default_store_sits_next_to_the_database(tmp_path: Path) -> None:
    db = ServersDB(tmp_path / "servers.json")
    assert db.secrets.file == tmp_path / "servers-secrets.json"
    assert db.secrets.service == f"ferry servers {db.path}"


class MemoryKeyring(KeyringBackend):
    """A keyring that keeps secrets in a dict: the OS keyring path without the OS's."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.secrets.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("no such password")


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def test_with_a_keyring_tokens_go_to_it(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    db = ServersDB(tmp_path / "servers.json")  # the default store: keyring when there is one
    db.add("Hub", "https://hub.example")
    db.set_token("hub", "token-1")
    assert memory_keyring.secrets == {(f"ferry servers {db.path}", "hub"): "token-1"}
    assert db.token("HUB") == "token-1"
    assert "MemoryKeyring" in db.secrets.where
    assert not (tmp_path / "servers-secrets.json").exists()
    db.remove("hub")
    assert memory_keyring.secrets == {}
    db.add("other", "https://other.example")
    db.remove("other")  # a server without a token is removed all the same


def test_a_keyring_that_stores_nothing_is_not_used(tmp_path: Path) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        db = ServersDB(tmp_path / "servers.json")
        db.set_token("local", "token-1")
        assert db.secrets.where.startswith("the file")
        assert stat.S_IMODE((tmp_path / "servers-secrets.json").stat().st_mode) == 0o600
    finally:
        keyring.set_keyring(previous)


def test_a_database_it_cannot_write_is_used_read_only(db: ServersDB,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # the system database for a user: root tests cannot be refused a folder, so the
    # lock refuses as the OS would
    def refused(path: Path, timeout: float) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("servers.file.locked", refused)
    assert names(db) == ["local"]
    assert not db.path.exists()
    assert "cannot update the servers database" in db.warnings[0]
    with pytest.raises(ServersError, match=r"cannot write the servers database .*: "
                                           "Permission denied"):
        db.add("mine", "https://hub.example")


def test_a_broken_token_file_is_moved_aside(db: ServersDB) -> None:
    file = db.path.parent / "servers-secrets.json"
    file.write_text("{oops")
    assert db.token("local") is None
    db.set_token("local", "token-1")
    assert db.token("local") == "token-1"
    assert len(list(db.path.parent.glob("servers-secrets.json.corrupt-*"))) == 1
