"""Bad input at the HTTP API: a clear 4xx naming what is wrong, the hub keeps serving,
and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from hub import Session
from tests.helpers import Hub, db_query, db_rows, http, login, wait_for

METRICS = {"c": 2, "l": 1.0, "m": 3.0, "mpf": 1, "mpt": 2, "mvf": 0, "mvt": 0}


@pytest.fixture
def world(hub: Hub, session: Session, node_key, start_agent) -> dict[str, Any]:
    """A hub with a node, an enrolled agent (stopped, so nothing changes by itself)."""
    node = node_key("render01")
    agent = start_agent(hub, node["api_key"])
    cid = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    wait_for(lambda: session.get("Client", cid)["metrics"], what="metrics")
    assert agent.stop() == 0
    status, enrolled = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": node["api_key"], "machine_id": "different-machine-id", "code": "x"})
    assert status == 409 and enrolled["error"]["code"] == "node_taken"
    return {"node": node, "client_id": cid, "token": login(hub)}


QUERY_CASES = [
    ("Client where", 422, "query_error", "expected a condition after WHERE"),
    ("Client where type=", 422, "query_error", "expected a value"),
    ('Client where code="x', 422, "query_error", "unterminated"),
    ("Client where (type=1", 422, "query_error", "expected ')'"),
    ("Widget", 404, "unknown_entity", "unknown entity 'Widget'"),
    ("Client where colour=red", 422, "query_error", "unknown field 'colour' for Client"),
    ("Client where type=abc", 422, "query_error", "field 'type' has no value 'abc'"),
    ("Client where benchmark>fast", 422, "query_error", "expects a number"),
    ("Client where last_checkin>yesterday", 422, "query_error", "ISO date-time"),
    ("Client where status=asleep", 422, "query_error", "has no value 'asleep'"),
    ("Client where status>online", 422, "query_error", "can only be compared with = or !="),
    ("Client where site<hq", 422, "query_error", "can only be compared with = or !="),
]


def test_bad_requests_are_refused_and_change_nothing(hub: Hub, world: dict[str, Any]) -> None:
    token, cid, api = world["token"], world["client_id"], hub.api
    before = db_rows(hub.database)
    checks: list[tuple[str, int, Any, int, str, str]] = []

    def expect(method: str, path: str, body: Any, status: int, code: str, needle: str, *,
               raw: bytes | None = None, auth: str | None = token,
               headers: dict[str, str] | None = None) -> None:
        got, answer = http(method, f"{api}{path}", body, token=auth, raw=raw, headers=headers)
        assert got == status, (method, path, body, answer)
        assert isinstance(answer, dict) and "error" in answer, answer
        assert answer["error"]["code"] == code, answer
        assert needle in answer["error"]["message"], answer
        checks.append((method, path, body, status, code, needle))

    # the query language
    for query, status, code, needle in QUERY_CASES:
        expect("POST", "/find", {"query": query}, status, code, needle)
    got, answer = http("GET", f"{api}/find?query=Client%20where%20type", token=token)
    assert got == 422 and answer["error"]["position"] == 17
    expect("GET", "/find", None, 400, "missing_parameter", "'query' is required")
    expect("GET", "/find?query=Client&limit=many", None, 400, "invalid_parameter", "'limit'")
    expect("GET", "/find?query=Client&limit=0", None, 400, "invalid_parameter", "`limit`")
    expect("GET", "/find?query=Client&offset=-2", None, 400, "invalid_parameter", "`offset`")
    expect("GET", "/find?query=Client&finished=perhaps", None, 400, "invalid_parameter",
           "'finished'")
    expect("POST", "/find", {"query": 5}, 422, "invalid_body", "field 'query'")
    expect("POST", "/find", {"query": "Client", "limit": -1}, 422, "invalid_body", "'limit'")
    expect("POST", "/find", {"query": "Client", "sort": "id"}, 422, "invalid_body", "sort")
    expect("POST", "/find", {"query": "Client", "finished": True}, 422, "query_error",
           "applies to jobs")

    # bodies that are not JSON, empty, or too large
    expect("POST", "/find", None, 400, "invalid_json", "not valid JSON", raw=b"{nope")
    expect("POST", "/node", None, 400, "empty_body", "empty", raw=b"")
    expect("POST", "/node", None, 413, "body_too_large", "larger than",
           raw=b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    expect("POST", "/node", [1, 2], 422, "invalid_body", "JSON object")

    # clients: not created through the API; only some fields writable, with types
    expect("POST", "/client", {"code": "x"}, 405, "not_allowed", "cannot be created")
    expect("PATCH", f"/client/{cid}", {"colour": "red"}, 422, "unknown_field", "'colour'")
    expect("PATCH", f"/client/{cid}", {"os": "windows"}, 422, "read_only", "'os'")
    expect("PATCH", f"/client/{cid}", {"last_checkin": "2020-01-01"}, 422, "read_only",
           "'last_checkin'")
    expect("PATCH", f"/client/{cid}", {"benchmark": "fast"}, 422, "wrong_type", "'benchmark'")
    expect("PATCH", f"/client/{cid}", {"benchmark": -1}, 422, "invalid_value", "negative")
    expect("PATCH", f"/client/{cid}", {"metadata": [1]}, 422, "wrong_type", "'metadata'")
    expect("PATCH", f"/client/{cid}", {"site": "atlantis"}, 422, "unknown_site", "atlantis")
    expect("PATCH", f"/client/{cid}", {"status": "online", "benchmark": "x"}, 422, "wrong_type",
           "'benchmark'")
    expect("PATCH", f"/client/{cid}", {"status": "offline"}, 409, "invalid_transition",
           "cannot be set")
    expect("PATCH", f"/client/{cid}", {"description": "new", "status": "online"}, 409,
           "invalid_transition", "only disabled clients")
    expect("PATCH", "/client/nosuchid", {"description": "x"}, 404, "not_found", "nosuchid")
    expect("DELETE", "/client/nosuchid", None, 404, "not_found", "nosuchid")

    # nodes, sites, users
    expect("POST", "/node", {}, 422, "missing_field", "'name'")
    expect("POST", "/node", {"name": ""}, 422, "invalid_value", "must not be empty")
    expect("POST", "/node", {"name": 5}, 422, "wrong_type", "'name'")
    expect("POST", "/node", {"name": "render01"}, 409, "duplicate", "already exists")
    expect("POST", "/node", {"name": "n2", "api_key": "mine"}, 422, "invalid_value",
           "at least 16 characters")
    expect("PATCH", f"/node/{world['node']['id']}", {"api_key": "mine"}, 422, "invalid_value",
           "'reset'")
    expect("POST", "/site", {"name": "hq"}, 409, "duplicate", "already exists")
    expect("DELETE", "/site/" + http("POST", f"{api}/find", {"query": "Site where name=hq"},
                                     token=token)[1]["result"][0]["id"], None, 409, "protected",
           "cannot be deleted")
    expect("POST", "/user", {"username": "ann", "password": "short"}, 422, "weak_password",
           "at least 8")
    expect("POST", "/user", {"username": "root", "password": "long enough pw"}, 409, "protected",
           "'root' is reserved")
    expect("POST", "/user", {"username": "u2", "password": "long enough pw", "roles": ["boss"]},
           422, "unknown_role", "no role 'boss'")
    expect("POST", "/user", {"username": "u2", "password": "long enough pw",
                             "organization": "nowhere"}, 422, "unknown_organization",
           "no organization 'nowhere'")
    expect("POST", "/organization", {"name": "x", "public_key": "bm90IGEga2V5"}, 422,
           "invalid_value", "'public_key'")
    expect("POST", "/collaboration", {"name": "x", "organizations": ["nowhere"]}, 422,
           "unknown_organization", "no organization 'nowhere'")
    expect("POST", "/role", {"name": "r", "rules": ["fly kites (global)"]}, 422,
           "unknown_rule", "rules[0]")
    expect("PATCH", "/rule/abc", {"scope": "own"}, 405, "not_allowed", "cannot be modified")
    # a NUL character is refused, naming where (PostgreSQL cannot store one)
    expect("POST", "/site", {"name": "a\x00b"}, 422, "invalid_value", "field 'name' holds a NUL")
    expect("POST", "/job", {"compute": {"command": ["echo", "{item}"], "items": ["1", "2\x00"]}},
           422, "invalid_value", "field 'compute.items[1]' holds a NUL")
    expect("POST", "/find", {"query": "Site where name=a\x00"}, 422, "invalid_value",
           "field 'query' holds a NUL")
    expect("POST", "/widget", {"a": 1}, 404, "unknown_entity", "unknown entity 'widget'")

    # credentials
    expect("POST", "/find", {"query": "Client"}, 401, "no_credentials", "missing credentials",
           auth=None)
    expect("POST", "/find", {"query": "Client"}, 401, "token_invalid", "not valid",
           auth="garbage")
    expect("POST", "/find", {"query": "Client"}, 401, "bad_credentials", "Bearer", auth=None,
           headers={"Authorization": "Basic cm9vdDpyb290"})
    expect("POST", "/token", {"username": "root", "password": "root"}, 401, "bad_credentials",
           "wrong username or password", auth=None)
    expect("POST", "/token", {"username": "nobody", "password": "whatever1"}, 401,
           "bad_credentials", "wrong username or password", auth=None)
    expect("POST", "/token", {"api_key": "fk_not-a-key"}, 401, "bad_credentials", "not valid",
           auth=None)
    expect("POST", "/token", {"username": "root"}, 422, "invalid_body", "username and password",
           auth=None)
    expect("POST", "/agent/enroll", {"api_key": "fk_not-a-key", "machine_id": "12345678",
                                     "code": "x"}, 401, "enroll_refused", "does not know",
           auth=None)
    expect("POST", "/agent/enroll", {"api_key": world["node"]["api_key"], "machine_id": "short",
                                     "code": "x"}, 422, "invalid_body", "machine_id", auth=None)
    # a user's token cannot act as an agent
    expect("POST", "/agent/checkin", {"metrics": METRICS}, 403, "forbidden", "only agents")

    # routing
    expect("GET", "/no/such/thing", None, 404, "unknown_entity", "unknown entity 'no'")
    expect("GET", "/no/such/thing/either", None, 404, "not_found", "no such endpoint")
    # gone: a folder is one task, which its agent lists and moves. An agent from before
    # that still lists one is refused, and fails that task with this message (the path
    # has the shape of a record's, "/{entity}/{id}", which takes GET, PATCH and DELETE)
    expect("POST", "/agent/expand", {"bucket_id": "b", "task_id": "t", "files": []}, 405,
           "method_not_allowed", "method POST is not allowed on /api/v1/agent/expand")
    expect("GET", f"/node/{world['node']['id']}/pets", None, 404, "unknown_relation",
           "Node has no relation 'pets'")
    expect("PUT", "/token", {}, 405, "method_not_allowed", "not allowed")

    # nothing was written, and the hub still serves
    assert db_rows(hub.database) == before
    assert hub.alive
    assert http("GET", f"{api}/version")[0] == 200
    assert len(checks) > 50


def test_agent_token_cannot_do_user_things(hub: Hub, world: dict[str, Any]) -> None:
    status, enrolled = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": world["node"]["api_key"], "machine_id": _machine_id(hub, world), "code": "x"})
    assert status == 200
    agent_token = enrolled["token"]
    before = db_rows(hub.database)
    # it sees itself, and nothing else; it changes nothing through the entity API
    got, answer = http("POST", f"{hub.api}/find", {"query": "Client"}, token=agent_token)
    assert got == 200 and [c["id"] for c in answer["result"]] == [enrolled["client_id"]]
    for method, path, body in [("POST", "/find", {"query": "User"}),
                               ("POST", "/node", {"name": "evil"}),
                               ("PATCH", f"/client/{enrolled['client_id']}",
                                {"status": "disabled"}),
                               ("DELETE", f"/client/{world['client_id']}", None)]:
        got, answer = http(method, f"{hub.api}{path}", body, token=agent_token)
        assert got == 403, (path, answer)
        assert "missing rule" in answer["error"]["message"]
    # a check-in with bad metrics names the field
    got, answer = http("POST", f"{hub.api}/agent/checkin",
                       {"metrics": {**METRICS, "c": "two"}}, token=agent_token)
    assert got == 422 and answer["error"]["field"] == "metrics.c"
    got, answer = http("POST", f"{hub.api}/agent/checkin",
                       {"metrics": {**METRICS, "l": 250}}, token=agent_token)
    assert got == 422 and answer["error"]["field"] == "metrics.l"
    got, answer = http("POST", f"{hub.api}/agent/checkin", {"metrics": METRICS, "lanes": -1},
                       token=agent_token)
    assert got == 422 and answer["error"]["field"] == "lanes"
    got, answer = http("POST", f"{hub.api}/agent/checkin", {"host_id": "x"}, token=agent_token)
    assert got == 422 and answer["error"]["field"] == "metrics"
    assert "missing required field" in answer["error"]["message"]
    assert db_rows(hub.database) == before


def _machine_id(hub: Hub, world: dict[str, Any]) -> str:
    [(machine_id,)] = db_query(hub.database, "SELECT machine_id FROM clients WHERE id=?",
                               world["client_id"])
    return str(machine_id)
