"""The web dashboard's own endpoints, attacked: another organization's user, a lesser role,
an agent's token, and tokens that are missing, forged, expired or revoked.

Organization A runs an agent (own node) with a bucket of a job done; B shares the
collaboration AB with A (but neither this agent nor this job is in it); C shares nothing.
Each refusal is checked by status and code, and the hub's rows are compared before and
after: a refused call changes nothing. The page and its assets refuse unknown names and
path tricks with 404 and keep answering.
"""

from __future__ import annotations

import contextlib
import http.client as httpclient
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from hub import permissions
from tests.helpers import Hub, db_query, db_rows, http, login, wait_for
from tests.security.world import PASSWORD, RawAgent, World, task_report

METRICS = {"c": 4, "l": 37.5, "m": 41.0, "mpf": 1 << 30, "mpt": 4 << 30, "mvf": 0, "mvt": 0,
           "in": {"s": 1.5}, "out": {"s": 0.25}, "la": [0.5, 0.4, 0.3]}


def check_in(agent: RawAgent) -> None:
    status, answer = agent.call("POST", "/agent/checkin", {"metrics": METRICS})
    assert status == 200, answer


class EventStream:
    """``GET /dashboard/events`` read in a thread: the events it sent, as they came."""

    def __init__(self, hub: Hub, token: str | None, *topics: str) -> None:
        url = urllib.parse.urlsplit(hub.url)
        self.conn = httpclient.HTTPConnection(url.hostname or "", url.port, timeout=30)
        query = "&".join(f"watch={urllib.parse.quote(t)}" for t in topics)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.conn.request("GET", f"/api/v1/dashboard/events?{query}", headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.body: Any = None
        if self.status != 200:
            self.body = json.loads(self.response.read())
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        name, data = "", ""
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif not line and name:
                    self.events.append((name, json.loads(data or "{}")))
                    name, data = "", ""
        except (OSError, ValueError, AttributeError, httpclient.HTTPException):  # closed
            return

    def named(self, name: str) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == name]

    def close(self) -> None:
        """Hang up: the hub sees the connection end (the reading thread's file would keep
        the socket open otherwise)."""
        if self.conn.sock is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


def forged(hub: Hub, user_id: str, **claims: Any) -> str:
    """A token signed with the hub's own secret (read from its database), as a thief
    holding an old one would have it."""
    secret = db_query(hub.database, "SELECT value FROM hub_state WHERE key = 'jwt_secret'")[0][0]
    now = datetime.now(UTC)
    body = {"sub": user_id, "kind": "user", "iat": now - timedelta(hours=2),
            "exp": now - timedelta(hours=1), **claims}
    return jwt.encode(body, secret, algorithm="HS256")


def setup(hub: Hub) -> tuple[World, RawAgent, dict[str, Any], str]:
    world = World(hub)
    agent = world.agent("A", lanes=2)
    check_in(agent)
    job = world.compute_job(world.user("A", permissions.RESEARCHER)["token"], items="1-2")
    [bucket] = agent.claim(lanes=1)
    task = bucket["tasks"][0]["id"]
    agent.report(task_report(f"{bucket['id']}/{task}/end", bucket["id"], task))
    return world, agent, job, task


def test_dashboard_reads_keep_to_the_rules(start_hub: Callable[..., Hub]) -> None:
    hub = start_hub()
    world, agent, job, _task = setup(hub)
    admin_a = world.user("A", permissions.ORG_ADMIN)["token"]
    viewer_a = world.user("A", permissions.VIEWER)["token"]
    researcher_b = world.user("B", permissions.RESEARCHER)["token"]
    researcher_c = world.user("C", permissions.RESEARCHER)["token"]
    history = f"/dashboard/history?client={agent.id}"
    buckets = f"/job/{job['id']}/buckets"

    # those within reach read them: the agent's samples, the job's bucket on its lane
    for token in (admin_a, viewer_a):
        samples = world.ok("GET", history, token=token)["result"]
        assert list(samples) == [agent.id] and samples[agent.id]["cpu"] == [37.5]
        assert samples[agent.id]["net_in"] == [1.5]
        answer = world.ok("GET", buckets, token=token)
        assert answer["total"] == 1 and answer["result"][0]["lane"] in agent.lanes
        assert answer["result"][0]["items"] == ["1"]
    me = world.ok("GET", "/dashboard/me", token=viewer_a)
    assert "edit" not in me["rules"].get("job", {}) and "edit" not in me["rules"]["client"]

    before = db_rows(hub.database)
    # another organization, and a partner for records outside the collaboration: the
    # agent is left out of a list; the job is answered as one that does not exist
    for token in (researcher_b, researcher_c):
        assert world.ok("GET", history, token=token)["result"] == {}
        status, body = world.call("GET", buckets, token=token)
        assert status == 404 and body["error"] == {
            "code": "not_found", "message": f"no Job with id '{job['id']}'"}, body
    status, body = world.call("GET", f"/job/{'f' * 24}/buckets", token=admin_a)
    assert status == 404, body
    # an agent's token is not a user's
    status, body = agent.call("GET", "/dashboard/me")
    assert status == 403, body
    for path in (buckets, "/dashboard/events?watch=farm"):
        status, body = agent.call("GET", path)
        assert status == 403, (path, body)
    # bad input: named, not a crash
    for path, code in ((f"{buckets}?limit=0", 422), (f"{buckets}?limit=x", 400),
                       (f"{buckets}?skip=-1", 422),
                       ("/dashboard/history?" + "&".join(f"client={n}" for n in range(201)), 422)):
        status, body = world.call("GET", path, token=admin_a)
        assert status == code, (path, body)
    # no token, a forged one, an expired one
    user_a = world.user("A", permissions.ORG_ADMIN)
    for token, code in ((None, "no_credentials"), ("not-a-token", "token_invalid"),
                        (forged(hub, user_a["id"]), "token_expired")):
        for path in ("/dashboard/me", history, buckets, "/dashboard/events?watch=farm"):
            status, body = http("GET", f"{hub.api}{path}", token=token)
            assert status == 401 and body["error"]["code"] == code, (path, body)
    assert db_rows(hub.database) == before


def test_dashboard_buttons_refused_to_a_viewer(start_hub: Callable[..., Hub]) -> None:
    """What the page's buttons call (the entity API) refuses a viewer and another
    organization's admin, and nothing changes."""
    hub = start_hub()
    world, agent, job, _task = setup(hub)
    viewer_a = world.user("A", permissions.VIEWER)["token"]
    admin_c = world.user("C", permissions.ORG_ADMIN)["token"]
    before = db_rows(hub.database)
    # the viewer is told the rule it lacks; to the other organization's admin the job and
    # the agent are as records that do not exist
    for token, refused in ((viewer_a, 403), (admin_c, 404)):
        for status_wanted in ("paused", "aborted"):
            status, body = world.call("PATCH", f"/job/{job['id']}", {"status": status_wanted},
                                      token=token)
            assert status == refused, body
        status, body = world.call("PATCH", f"/client/{agent.id}", {"status": "disabled"},
                                  token=token)
        assert status == refused, body
    assert db_rows(hub.database) == before


def test_event_streams_keep_to_the_rules(start_hub: Callable[..., Hub]) -> None:
    hub = start_hub()
    world, agent, job, task = setup(hub)
    admin_a = world.user("A", permissions.ORG_ADMIN)
    researcher_b = world.user("B", permissions.RESEARCHER)["token"]
    researcher_c = world.user("C", permissions.RESEARCHER)["token"]

    before = db_rows(hub.database)
    # topics out of reach are refused before any stream starts, as a read would be: as
    # records that do not exist, to a partner (outside the collaboration) and to another
    # organization
    for token in (researcher_b, researcher_c):
        for topic in (f"job:{job['id']}", f"task:{task}"):
            stream = EventStream(hub, token, topic)
            assert stream.status == 404 and stream.body["error"]["code"] == "not_found", \
                (topic, stream.body)
    stream = EventStream(hub, admin_a["token"], f"job:{'f' * 24}")
    assert stream.status == 404, stream.body
    for topics in ((), ("everything",), ("job:../../etc",), ("farm", *(
            f"job:{n:024x}" for n in range(8)))):
        stream = EventStream(hub, admin_a["token"], *topics)
        assert stream.status in (400, 422), (topics, stream.body)
    assert db_rows(hub.database) == before

    # a change to A's agent is news to A's admin, and to nobody outside A's reach
    own = EventStream(hub, admin_a["token"], "farm")
    partner = EventStream(hub, researcher_b, "farm")
    stranger = EventStream(hub, researcher_c, "farm")
    try:
        for stream in (own, partner, stranger):
            assert stream.status == 200
            wait_for(lambda s=stream: s.named("hello"), timeout=10, what="the stream's hello")
        world.ok("PATCH", f"/client/{agent.id}", {"status": "disabled"}, token=admin_a["token"])
        wait_for(lambda: own.named("change"), timeout=20, what="A's admin hears of it")
        time.sleep(5)  # two more ticks of the others' streams
        assert partner.named("change") == [] and stranger.named("change") == []
    finally:
        for stream in (own, partner, stranger):
            stream.close()

    # a stream whose user's password changes ends at its next tick, saying why
    watcher = EventStream(hub, admin_a["token"], "farm", f"job:{job['id']}")
    try:
        assert watcher.status == 200
        wait_for(lambda: watcher.named("hello"), timeout=10, what="hello")
        status, body = http("POST", f"{hub.api}/password/change", {
            "username": admin_a["username"], "password": PASSWORD,
            "new_password": "a-new-password-for-the-admin-2"})
        assert status == 200, body
        error = wait_for(lambda: watcher.named("error"), timeout=20, what="the stream's end")
        assert error[0]["status"] == 401 and error[0]["code"] == "token_revoked", error
    finally:
        watcher.close()
    token = login(hub, admin_a["username"], "a-new-password-for-the-admin-2")

    # each user holds a bounded number of streams
    held = [EventStream(hub, token, "farm") for _ in range(4)]
    try:
        assert [s.status for s in held] == [200] * 4
        extra = EventStream(hub, token, "farm")
        assert extra.status == 429 and extra.body["error"]["code"] == "too_many_streams"
    finally:
        for stream in held:
            stream.close()


def test_limit_news_keeps_to_its_organization(start_hub: Callable[..., Hub]) -> None:
    """The jobs page shows its organization's limits, so the ``jobs`` topic moves with
    them: for that organization, and for nobody else, partner or stranger."""
    hub = start_hub()
    world, _agent, _job, _task = setup(hub)
    admin_a = world.user("A", permissions.ORG_ADMIN)["token"]
    viewer_a = world.user("A", permissions.VIEWER)["token"]
    limit = world.ok("POST", "/limit", {"name": "nuke", "max": 2}, token=admin_a)
    own = EventStream(hub, viewer_a, "jobs")
    partner = EventStream(hub, world.user("B", permissions.ORG_ADMIN)["token"], "jobs")
    stranger = EventStream(hub, world.user("C", permissions.ORG_ADMIN)["token"], "jobs")
    try:
        for stream in (own, partner, stranger):
            assert stream.status == 200
            wait_for(lambda s=stream: s.named("hello"), timeout=10, what="the stream's hello")
        time.sleep(5)  # two ticks: what each saw first is their baseline
        heard = {id(s): len(s.named("change")) for s in (own, partner, stranger)}
        before = db_rows(hub.database)
        # another organization's admin can neither change A's limit nor learn of it
        for token in (world.user("B", permissions.ORG_ADMIN)["token"],
                      world.user("C", permissions.ORG_ADMIN)["token"]):
            status, body = http("PATCH", f"{hub.api}/limit/{limit['id']}", {"max": 9},
                                token=token)
            assert status == 404, body
        assert db_rows(hub.database) == before
        world.ok("PATCH", f"/limit/{limit['id']}", {"max": 5}, token=admin_a)
        wait_for(lambda: len(own.named("change")) > heard[id(own)], timeout=20,
                 what="A's viewer hears of A's limit")
        time.sleep(5)  # two more ticks of the others' streams
        assert len(partner.named("change")) == heard[id(partner)]
        assert len(stranger.named("change")) == heard[id(stranger)]
    finally:
        for stream in (own, partner, stranger):
            stream.close()


def test_page_and_assets_refuse_tricks(start_hub: Callable[..., Hub]) -> None:
    hub = start_hub()
    conn_url = urllib.parse.urlsplit(hub.url)

    def raw_get(path: str) -> tuple[int, dict[str, str], bytes]:
        conn = httpclient.HTTPConnection(conn_url.hostname or "", conn_url.port, timeout=10)
        try:
            conn.request("GET", path)  # sent as written: no client normalises it
            response = conn.getresponse()
            return response.status, dict(response.headers), response.read()
        finally:
            conn.close()

    status, headers, page = raw_get("/")
    assert status == 200 and b'src="/static/app.js"' in page and b"<script>" not in page
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, _script = raw_get("/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert headers["Content-Security-Policy"] == csp
    for path in ("/static/../hub/config.py", "/static/%2e%2e%2fhub%2fconfig.py",
                 "/static/..%2f..%2fpyproject.toml", "/static/nothing.js", "/static/",
                 "/static/index.html", "/static/app.js%00.png", "/static/" + "a" * 5000,
                 "/static/.hidden", "/hub/config.py", "/static/%2e%2e/%2e%2e/etc/passwd"):
        status, _headers, body = raw_get(path)
        assert status in (400, 404), (path, status)
        assert b"HubConfig" not in body and b"root:" not in body
    assert http("GET", f"{hub.api}/version")[0] == 200  # still answering
