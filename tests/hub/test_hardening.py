"""What a careful attacker or an unlucky admin would try: each answered with a clear refusal."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from core.errors import ApiError, HubError
from hub import Session
from hub.checkins import CheckinWriter
from hub.storage.db import Database
from hub.storage.models import Client, utcnow
from tests.helpers import ROOT_PASSWORD, Hub, ferry, http, login


def test_database_and_logs_are_private(hub: Hub, env: dict[str, str]) -> None:
    data = hub.paths.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for path in data.glob("hub.sqlite*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    log = Path(env["XDG_STATE_HOME"]) / "ferry/log/hub" / f"{hub.name}.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_tokens_die_with_their_user_and_password(hub: Hub, session: Session) -> None:
    session.create("User", {"username": "ann", "password": "a long password"})
    ann = Session(hub.url, username="ann", password="a long password")
    token = ann._token
    ann.update("User", ann.user["id"], {"password": "another long one",
                                        "current_password": "a long password"})
    status, body = http("POST", f"{hub.api}/find", {"query": "User"}, token=token)
    assert status == 401 and body["error"]["code"] == "token_revoked"
    fresh = login(hub, "ann", "another long one")
    session.delete_one("User", ann.user["id"])
    status, body = http("POST", f"{hub.api}/node", {"name": "x"}, token=fresh)
    assert status == 401 and "no longer exists" in body["error"]["message"]
    assert session.find_one("Node where name=x") is None


def test_root_is_protected_by_role_not_name(hub: Hub, session: Session) -> None:
    root_id = session.user["id"]
    # an organization admin of root's organization cannot touch root at all
    session.create("User", {"username": "admin", "password": "a long password",
                            "roles": ["organization admin"]})
    admin = Session(hub.url, username="admin", password="a long password")
    for change in ({"password": "taken over!"}, {"username": "toor"}):
        with pytest.raises(ApiError) as info:
            admin.update("User", root_id, change)
        assert info.value.status == 403 and "holds the rule" in info.value.message
    with pytest.raises(ApiError) as info:
        admin.delete_one("User", root_id)
    assert info.value.status == 403
    # another user with the root role may change root, but not rename or delete it
    other = session.create("User", {"username": "ops", "password": "a long password",
                                    "roles": ["root"]})
    ops = Session(hub.url, username="ops", password="a long password")
    with pytest.raises(ApiError) as info:
        ops.update("User", root_id, {"username": "toor"})
    assert info.value.status == 409 and "cannot be renamed" in info.value.message
    with pytest.raises(ApiError) as info:
        ops.delete_one("User", root_id)
    assert info.value.code == "protected"
    with pytest.raises(ApiError) as info:
        session.update("User", other["id"], {"username": "root"})
    assert info.value.status == 409
    assert session.get("User", root_id)["username"] == "root"


def test_failed_first_start_creates_no_root(tmp_path: Path, env: dict[str, str]) -> None:
    import socket

    del env["FERRY_ROOT_PASSWORD"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        hub = Hub("hub", "h", tmp_path, {"port": port}, env)
        assert hub.launch().wait(timeout=60) == 2
    assert not (hub.paths.data_dir / "root-password.txt").exists()
    hub.section["port"] = 0
    hub.write_config()
    hub.start()
    try:
        password = (hub.paths.data_dir / "root-password.txt").read_text().strip()
        assert f"root password: {password}" in hub.log()
    finally:
        hub.kill()


@pytest.mark.parametrize("query, needle", [
    ("Client where " + " OR ".join(["os=linux"] * 300), "more than 256 comparisons"),
    ("Client where created>9999-12-31T23:59:59-05:00", "ISO date-time"),
    ("Client where created>0001-01-01T00:00:00+01:00", "ISO date-time"),
])
def test_queries_that_used_to_overflow(hub: Hub, query: str, needle: str) -> None:
    status, body = http("POST", f"{hub.api}/find", {"query": query}, token=login(hub))
    assert (status, body["error"]["code"]) == (422, "query_error"), body
    assert needle in body["error"]["message"]


def test_odd_requests_get_4xx(hub: Hub) -> None:
    token = login(hub)
    status, body = http("GET", f"{hub.api}/find?query=Client&offset=99999999999999999999",
                        token=token)
    assert status == 400 and "offset" in body["error"]["message"]
    deep = b"[" * 3000 + b"]" * 3000
    status, body = http("POST", f"{hub.api}/site", raw=deep, token=token)
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = http("POST", f"{hub.api}/find", {"query": "Client"},
                        headers={"Authorization": "Bearer \u00e9t\u00e9"})
    assert status == 401 and body["error"]["code"] == "token_invalid"
    assert http("GET", f"{hub.api}/version")[0] == 200


def test_failed_logins_are_limited_per_address(start_hub) -> None:
    hub = start_hub(login_failures_per_minute=3)
    for _ in range(3):
        assert http("POST", f"{hub.api}/token", {"username": "root", "password": "wrong-one"})[0] == 401
    status, body = http("POST", f"{hub.api}/token", {"username": "root", "password": ROOT_PASSWORD})
    assert status == 429 and body["error"]["code"] == "too_many_failures"
    status, body = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": "fk_guess_guess", "machine_id": "machine-0001", "code": "x"})
    assert status == 429


def test_forwarded_for_is_read_from_the_trusted_end(start_hub) -> None:
    hub = start_hub(trusted_proxies=["127.0.0.1", "10.0.0.1"])
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    node = session.create("Node", {"name": "n"})
    body = {"api_key": node["api_key"], "machine_id": "machine-0001", "code": "x"}
    cases = [("6.6.6.6, 5.6.7.8", "5.6.7.8"),            # the client's own claim is ignored
             ("5.6.7.8, 10.0.0.1", "5.6.7.8"),           # through two proxies
             ("not-an-address", "127.0.0.1")]
    for header, expected in cases:
        status, enrolled = http("POST", f"{hub.api}/agent/enroll", body,
                                headers={"X-Forwarded-For": header})
        assert status == 200
        assert session.get("Client", enrolled["client_id"])["wan_ip"] == expected, header


class _Flaky(BaseHTTPRequestHandler):
    """Logs in fine; answers 503 to everything else and counts what came."""

    calls: dict[str, int] = {}

    def do_POST(self) -> None:
        _Flaky.calls[self.path] = _Flaky.calls.get(self.path, 0) + 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/token"):
            payload, code = json.dumps({"token": "t", "expires": "", "user": {}}).encode(), 200
        else:
            payload, code = b'{"error": {"code": "busy", "message": "busy"}}', 503
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    _Flaky.calls = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_session_never_repeats_a_create_the_hub_may_have_done(flaky: str) -> None:
    session = Session(flaky, username="root", password="x", attempts=3)
    with pytest.raises(HubError, match="not repeated"):
        session.create("Node", {"name": "n"})
    assert _Flaky.calls["/api/v1/node"] == 1
    with pytest.raises(HubError, match="gave up after 3 attempts"):
        session.find("Client")
    assert _Flaky.calls["/api/v1/find"] == 3


async def test_one_bad_check_in_does_not_fail_its_batch(tmp_path: Path) -> None:
    db = Database("sqlite:///hub.sqlite", tmp_path)
    await db.migrate()
    now = utcnow()
    async with db.write() as conn:
        for cid in ("good", "bad"):
            await conn.execute(insert(Client).values(
                id=cid, code=cid, type=1, description="", host_id="", machine_id="", disabled=False,
                gone=False, os="", username="", version="", wan_ip="", meta={}, created=now,
                modified=now))
    writer = CheckinWriter(db)
    writer.start()
    good = writer.record("good", datetime.now(), {"c": 1}, None, "127.0.0.1", None, None, None, None)
    bad = writer.record("bad", "not a time", {"c": 1}, None, "127.0.0.1", None, None, None,  # type: ignore[arg-type]
                        None)
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert results[0] is False
    assert isinstance(results[1], Exception)
    await writer.close()
    await db.close()


def test_config_mistakes_are_named_not_tracebacks(env: dict[str, str], tmp_path: Path) -> None:
    bad_format = tmp_path / "fmt.yaml"
    bad_format.write_text("application:\n  port: 0\n  logging:\n    format: '%(foo'\n")
    result = ferry("hub", "start", "--attach", "--config", str(bad_format), "--user", env=env)
    assert result.returncode == 2 and "logging.format" in result.stderr
    assert "Traceback" not in result.stderr
    bad_db = tmp_path / "db.yaml"
    bad_db.write_text("application:\n  port: 0\n  uri: sqlite:////proc/nope/hub.sqlite\n")
    result = ferry("hub", "start", "--attach", "--config", str(bad_db), "--user", env=env)
    assert result.returncode == 2 and "'uri'" in result.stderr and "Traceback" not in result.stderr
    result = ferry("hub", "new", "--name", "x", "--config", "/proc/nope/x.yaml", "--port", "0",
                   "--no-input", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    result = ferry("agent", "new", "--name", "a", "--hub", "http://h:1", "--api-key-file",
                   str(tmp_path / "missing.key"), "--no-input", "--user", env=env)
    assert result.returncode == 2 and "does not exist" in result.stderr
