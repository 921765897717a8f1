"""Every list answer is a page: limits, cursors, skip, large fields on request, the
per-user cap on queries running at once, and ``Session`` paging for its caller."""

from __future__ import annotations

import itertools
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from core.errors import ApiError
from hub import Session
from tests.helpers import Hub, db_execute, http, login, wait_for

TASKS = 50
METRICS = {"c": 2, "l": 0.5, "m": 30.0, "mpf": 1 << 30, "mpt": 1 << 33, "mvf": 1 << 30,
           "mvt": 1 << 33, "in": {"s": 0.0, "s_a": 0.0, "s_t": -1.0},
           "out": {"s": 0.0, "s_a": 0.0, "s_t": -1.0}, "la": [0.5, 0.4, 0.3]}


def job_of(session: Session, items: str, **spec: Any) -> dict[str, Any]:
    """A compute job that never runs (paused, no agent)."""
    return session.create("Job", {"status": "paused", "compute": {  # type: ignore[no-any-return]
        "command": ["true"], "items": items, **spec}})


def find(hub: Hub, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    return http("POST", f"{hub.api}/find", body, token=token)


def get(hub: Hub, token: str, path: str, **params: Any) -> tuple[int, Any]:
    query = urllib.parse.urlencode(params)
    return http("GET", f"{hub.api}{path}?{query}", token=token)


def walk(hub: Hub, token: str, body: dict[str, Any],
         between: Callable[[int], None] = lambda n: None) -> list[dict[str, Any]]:
    """Every record of a query, page after page through ``next``; ``between(n)`` runs
    after the n-th page."""
    seen: list[dict[str, Any]] = []
    cursor = None
    for n in itertools.count(1):
        status, answer = find(hub, token, {**body, **({"cursor": cursor} if cursor else {})})
        assert status == 200, answer
        seen += answer["result"]
        cursor = answer["next"]
        if cursor is None:
            return seen
        between(n)
    raise AssertionError("unreachable")


def error(answer: Any) -> tuple[str, str | None, str]:
    return answer["error"]["code"], answer["error"].get("field"), answer["error"]["message"]


def test_default_page_maximum_and_order(hub: Hub, session: Session) -> None:
    job = job_of(session, "1-2500")
    token = login(hub)
    query = f"Task where job.id={job['id']}"
    status, first = find(hub, token, {"query": query})
    assert status == 200 and len(first["result"]) == 1000 and first["next"]
    status, whole = find(hub, token, {"query": query, "limit": 10_000})
    assert status == 200 and len(whole["result"]) == 2500 and whole["next"] is None
    ids = [t["id"] for t in whole["result"]]
    assert ids == sorted(ids) and [t["id"] for t in first["result"]] == ids[:1000]
    status, exact = find(hub, token, {"query": query, "limit": 2500})
    assert len(exact["result"]) == 2500 and exact["next"] is None  # no empty last page

    # above the maximum: refused, naming the parameter and the maximum, never cut
    for status, answer in (find(hub, token, {"query": query, "limit": 10_001}),
                           get(hub, token, "/find", query=query, limit=10_001)):
        code, field, message = error(answer)
        assert (status, code, field) == (422, "too_large", "limit"), answer
        assert "10000" in message and "find_page_max" in message

    # GET takes the same parameters; relations page the same way
    status, answer = get(hub, token, "/find", query=query, limit=3, skip=1)
    assert status == 200 and [t["id"] for t in answer["result"]] == ids[1:4]
    org = session.create("Organization", {"name": "paging"})
    status, answer = get(hub, token, f"/organization/{org['id']}/users", limit=10_001)
    assert status == 422 and error(answer)[:2] == ("too_large", "limit")
    status, answer = get(hub, token, f"/organization/{org['id']}/users")
    assert status == 200 and answer == {"result": [], "next": None}


def test_cursor_walk_gives_each_record_once_while_records_are_added(hub: Hub,
                                                                      session: Session) -> None:
    job = job_of(session, f"1-{TASKS}")
    token = login(hub)
    query = f"Task where job.id={job['id']}"
    before = {t["id"] for t in session.find(query)}
    added: list[str] = []

    def add(n: int) -> None:
        if n <= 3:  # mid-walk: the job grows
            added.extend(session.create("task", {"tasks": [f"new{n}a", f"new{n}b"]},
                                        job["id"])["created"])

    seen = [t["id"] for t in walk(hub, token, {"query": query, "limit": 7}, add)]
    assert len(seen) == len(set(seen)), "a record came twice"
    assert before <= set(seen), "a record was skipped"
    # new ids sort after every older one (they start with the time): the walk meets them
    assert set(seen) == before | set(added) and len(added) == 6
    assert seen == sorted(seen)


def test_skip_offset_and_cursor_together(hub: Hub, session: Session) -> None:
    job = job_of(session, f"1-{TASKS}")
    token = login(hub)
    query = f"Task where job.id={job['id']}"
    ids = [t["id"] for t in session.find(query)]
    assert len(ids) == TASKS
    for body in ({"skip": 10}, {"offset": 10}):
        status, answer = find(hub, token, {"query": query, "limit": 5, **body})
        assert status == 200 and [t["id"] for t in answer["result"]] == ids[10:15]
    status, answer = get(hub, token, "/find", query=query, limit=5, offset=10)
    assert [t["id"] for t in answer["result"]] == ids[10:15]
    # the cursor of a page continues after its last record; skip counts from there
    status, answer = find(hub, token, {"query": query, "limit": 5})
    status, answer = find(hub, token, {"query": query, "limit": 3, "skip": 2,
                                       "cursor": answer["next"]})
    assert [t["id"] for t in answer["result"]] == ids[7:10]
    status, answer = find(hub, token, {"query": query, "skip": TASKS})
    assert status == 200 and answer == {"result": [], "next": None}


def test_large_fields_only_when_asked_for(hub: Hub, session: Session) -> None:
    job = job_of(session, "1-3")
    token = login(hub)
    query = f"Task where job.id={job['id']}"
    task = session.find(query)[0]["id"]
    db_execute(hub.database, "update tasks set log_tail=?, input=?, result=? where id=?",
               "output\n", "sealed input", "sealed result", task)
    listed = session.find(query)
    assert not {"log_tail", "input", "result"} & set(listed[0])
    assert {"status", "item", "has_log", "message"} <= set(listed[0])
    _status, answer = find(hub, token, {"query": query, "attributes": ["log_tail"]})
    record = next(t for t in answer["result"] if t["id"] == task)
    assert record == {"id": task, "log_tail": "output\n"}  # only what was asked for
    _, answer = get(hub, token, "/find", query=query, attributes="result,input")
    record = next(t for t in answer["result"] if t["id"] == task)
    assert (record["input"], record["result"]) == ("sealed input", "sealed result")
    assert set(record) == {"id", "input", "result"}
    # one record by id: every field
    one = session.get("Task", task)
    assert (one["log_tail"], one["input"], one["result"]) == ("output\n", "sealed input",
                                                              "sealed result")
    # the changed tasks of update_many come as a find gives them (jobs.rst)
    changed = session.update_many("task", job["id"], [{"id": task, "priority": 900}])
    assert changed[0]["priority"] == 900 and "log_tail" not in changed[0]
    # relations too
    assert "log_tail" not in session.related("Organization", org_of(session, hub),
                                             "created_tasks")[0]


def org_of(session: Session, hub: Hub) -> str:
    """An organization with a job of its own (root's jobs belong to root's organization,
    if any): made for the test, the job created by one of its researchers."""
    org = session.create("Organization", {"name": f"org-{uuid.uuid4().hex[:8]}"})
    session.create("User", {"username": f"r-{org['id']}", "password": "a long password",
                            "organization": org["id"], "roles": ["researcher"]})
    researcher = Session(hub.url, username=f"r-{org['id']}", password="a long password")
    job_of(researcher, "1-2")
    return str(org["id"])


def test_bad_parameters_name_the_parameter(hub: Hub, session: Session) -> None:
    token = login(hub)
    job = job_of(session, "1-3")
    query = f"Task where job.id={job['id']}"
    org = org_of(session, hub)
    cases: list[tuple[tuple[int, Any], int, str, str | None, str]] = [
        (find(hub, token, {"query": query, "limit": 0}), 422, "invalid_body", "limit", ">= 1"),
        (find(hub, token, {"query": query, "skip": -1}), 422, "invalid_body", "skip", ">= 0"),
        (find(hub, token, {"query": query, "skip": 1, "offset": 1}), 422, "invalid_value",
         "offset", "not both"),
        (find(hub, token, {"query": query, "cursor": "nonsense"}), 422, "invalid_cursor",
         "cursor", "'next'"),
        (find(hub, token, {"query": query, "cursor": "c1.!!!"}), 422, "invalid_cursor",
         "cursor", "'next'"),
        (find(hub, token, {"query": query, "attributes": ["colour"]}), 422, "unknown_field",
         "attributes", "'colour'"),
        (find(hub, token, {"query": query, "attributes": "log_tail"}), 422, "invalid_body",
         "attributes", "array"),
        (find(hub, token, {"query": "Job", "attributes": ["log_tail"]}), 422, "unknown_field",
         "attributes", "'log_tail'"),
        (get(hub, token, "/find", query=query, limit="many"), 400, "invalid_parameter",
         "limit", "'limit'"),
        (get(hub, token, "/find", query=query, skip=-1), 400, "invalid_parameter", None,
         "`skip`"),
        (get(hub, token, "/find", query=query, cursor="zzz"), 422, "invalid_cursor", "cursor",
         "cursor"),
        (get(hub, token, "/find", query=query, attributes="colour"), 422, "unknown_field",
         "attributes", "'colour'"),
        (get(hub, token, f"/organization/{org}/created_tasks", attributes="colour"), 422,
         "unknown_field", "attributes", "'colour'"),
        (get(hub, token, f"/organization/{org}/created_tasks", offset=-1), 400,
         "invalid_parameter", None, "`offset`"),
        (get(hub, token, f"/organization/{org}/nosuch"), 404, "unknown_relation", None,
         "created_tasks"),
    ]
    for (status, answer), want_status, code, field, needle in cases:
        assert status == want_status, answer
        got_code, got_field, message = error(answer)
        assert (got_code, got_field) == (code, field), answer
        assert needle in message, answer


def test_a_page_stops_early_at_its_byte_budget(start_hub: Callable[..., Hub]) -> None:
    hub = start_hub(find_page_bytes=4096)
    session = Session(hub.url, username="root", password="test-root-password")
    token = login(hub)
    # a job's spec counts against the budget: about 1,100 characters each, 3 fit a page
    jobs = [job_of(session, "1", cwd="/" + "x" * 1000)["id"] for _ in range(7)]
    jobs.append(job_of(session, "1", cwd="/" + "y" * 4000)["id"])  # alone over the budget
    status, answer = find(hub, token, {"query": "Job", "limit": 100})
    assert status == 200 and len(answer["result"]) == 3 and answer["next"]
    seen = walk(hub, token, {"query": "Job", "limit": 100})
    assert [j["id"] for j in seen] == jobs
    # large task fields count only when asked for
    task_job = job_of(session, "1-10")
    query = f"Task where job.id={task_job['id']}"
    for task in session.find(query)[:4]:
        db_execute(hub.database, "update tasks set log_tail=? where id=?", "z" * 3000,
                   task["id"])
    status, answer = find(hub, token, {"query": query, "limit": 100})
    assert len(answer["result"]) == 10 and answer["next"] is None
    for attributes, sizes in ((["log_tail"], [1, 1, 1, 7]), (["result"], [10])):
        pages = []
        cursor = None
        while True:
            status, answer = find(hub, token, {"query": query, "limit": 100,
                                               "attributes": attributes,
                                               **({"cursor": cursor} if cursor else {})})
            pages.append(len(answer["result"]))
            cursor = answer["next"]
            if cursor is None:
                break
        assert pages == sizes, (attributes, pages)


def test_session_pages_for_its_caller(start_hub: Callable[..., Hub],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    hub = start_hub(find_page=7, find_page_max=20)
    session = Session(hub.url, username="root", password="test-root-password")
    job = job_of(session, f"1-{TASKS}")
    query = f"Task where job.id={job['id']}"
    calls: list[tuple[str, Any]] = []
    send = session._send

    def counted(method: str, path: str, body: Any, *args: Any) -> Any:
        calls.append((path, body))
        return send(method, path, body, *args)

    monkeypatch.setattr(session, "_send", counted)
    every = session.find(query)
    assert len(every) == TASKS and len(calls) == 8  # 7 pages of 7, then 1
    assert [t["uri"] for t in every] == [str(n) for n in range(TASKS)]
    ids = [t["id"] for t in every]

    calls.clear()
    lazy = session.iter_find(query)
    assert [t["id"] for t in itertools.islice(lazy, 3)] == ids[:3] and len(calls) == 1

    calls.clear()
    assert [t["id"] for t in session.find(query, limit=10, skip=5)] == ids[5:15]
    assert len(calls) == 1 and calls[0][1]["limit"] == 10 and calls[0][1]["skip"] == 5
    calls.clear()
    assert [t["id"] for t in session.find(query, limit=10, skip=5, page_size=3)] == ids[5:15]
    assert [c[1]["limit"] for c in calls] == [3, 3, 3, 1]
    assert [t["id"] for t in session.find(query, offset=5, limit=3)] == ids[5:8]
    assert [t["id"] for t in session.find(query, False, False, 2, 48)] == ids[48:]
    with pytest.raises(ApiError) as info:  # a page above the hub's maximum
        session.find(query, limit=30, page_size=30)
    assert info.value.status == 422 and "20" in info.value.message
    calls.clear()  # a limit above a page is asked for in pages (of 1,000; here of 20)
    monkeypatch.setattr("hub.session.PAGE", 20)
    assert len(session.find(query, limit=TASKS + 10)) == TASKS
    assert [c[1]["limit"] for c in calls] == [20, 20, 20]

    calls.clear()
    assert session.find_one(query)["id"] == ids[0]
    assert len(calls) == 1 and calls[0][1]["limit"] == 1

    with_tail = session.find(query, limit=1, attributes=["log_tail"])[0]
    assert with_tail["log_tail"] == "" and "log_tail" not in every[0]

    # relations page the same way
    org = org_of(session, hub)
    researcher_tasks = session.related("Organization", org, "created_tasks")
    assert len(researcher_tasks) == 2
    session.create("task", {"tasks": [f"more{n}" for n in range(20)]},
                   researcher_tasks[0]["job"])
    calls.clear()
    related = session.related("Organization", org, "created_tasks")
    assert len(related) == 22 and len(calls) == 4 and len({t["id"] for t in related}) == 22
    assert len(session.related("Organization", org, "created_tasks", limit=5, skip=20)) == 2
    assert "log_tail" in session.related("Organization", org, "created_tasks", limit=1,
                                         attributes=["log_tail"])[0]

    # finished= and archived= still select jobs, and only jobs
    assert session.find("Job", finished=True) == [] == session.find("Job", archived=True)
    assert len(session.find("Job")) == 2
    with pytest.raises(ApiError) as info:
        session.find("Client", finished=True)
    assert info.value.status == 422


def _hold(hub: Hub, token: str, query: str) -> tuple[socket.socket, bytes]:
    """A find whose body is still on its way: its place among the caller's running
    queries is taken until the body is complete."""
    body = f'{{"query": "{query}"}}'.encode()
    url = urllib.parse.urlsplit(hub.url)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=30)
    sock.sendall(f"POST /api/v1/find HTTP/1.1\r\nHost: {url.netloc}\r\n"
                 f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                 + body[:5])
    return sock, body[5:]


def _finish(held: tuple[socket.socket, bytes]) -> tuple[int, bytes]:
    sock, rest = held
    sock.sendall(rest)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_user_runs_few_queries_at_once_agents_never_wait(hub: Hub,
                                                           session: Session) -> None:
    root = login(hub)
    other = session.create("User", {"username": "other", "password": "a long password",
                                    "roles": ["viewer"]})
    other_token = login(hub, "other", "a long password")
    node = session.create("Node", {"name": "render01"})
    status, agent = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": node["api_key"], "machine_id": uuid.uuid4().hex, "code": "render01",
        "os": "linux"})
    assert status == 200, agent

    held = [_hold(hub, root, "Site"), _hold(hub, root, "Site")]  # the default: 2 at once

    def third() -> tuple[int, Any] | None:
        status, answer = find(hub, root, {"query": "Site"})
        return (status, answer) if status == 429 else None

    status, answer = wait_for(third, what="the third query of a user refused")
    code, _, message = error(answer)
    assert code == "too_many_queries" and "find_concurrent_per_user" in message
    request = urllib.request.Request(f"{hub.api}/find", data=b'{"query": "Site"}',
                                     method="POST", headers={
                                         "Authorization": f"Bearer {root}",
                                         "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 429 and refused.value.headers["Retry-After"] == "1"
    status, _ = get(hub, root, f"/user/{other['id']}/roles")  # relations count too
    assert status == 429

    # another user, and an agent's check-in, are not held up
    assert find(hub, other_token, {"query": "Site"})[0] == 200
    status, answer = http("POST", f"{hub.api}/agent/checkin", {"metrics": METRICS},
                          token=agent["token"])
    assert status == 200, answer

    for one in held:
        status, body = _finish(one)
        assert status == 200 and b'"result"' in body
    assert find(hub, root, {"query": "Site"})[0] == 200  # the places are free again
