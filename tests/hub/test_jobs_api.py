"""Jobs and tasks through ``Session``, with the call shapes of jobs.rst, verbatim."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ApiError
from hub import Session
from tests.helpers import ROOT_PASSWORD, Hub, db_rows, http, wait_for

SPEC = {"command": ["sh", "-c", "echo {item}"], "items": "1-10"}


@pytest.fixture
def jobs_hub(start_hub) -> Hub:
    return start_hub(job_inactive_after=2, job_archive_after=5)


@pytest.fixture
def root(jobs_hub: Hub) -> Session:
    return Session(jobs_hub.url, username="root", password=ROOT_PASSWORD)


def make(session: Session, code: str, **extra: Any) -> dict[str, Any]:
    body = {"code": code, "compute": {**SPEC, **extra.pop("compute", {})}, **extra}
    return session.create("Job", body)  # type: ignore[no-any-return]


def test_reference_queries_verbatim(jobs_hub: Hub, root: Session) -> None:
    session = root
    session.create("Site", {"name": "stockholm"})
    session.create("User", {"username": "user@mail.com", "password": "a long password",
                            "roles": ["researcher"]})
    lars = Session(jobs_hub.url, username="user@mail.com", password="a long password")

    job = session.create("Job", {"code": "x and y.png", "compute": SPEC})
    assert job["code"] == "x and y.png" and job["status"] == "waiting"
    by_user = lars.create("Job", {"compute": SPEC})
    to_stockholm = session.create("Job", {"compute": {**SPEC, "clients": ["site:stockholm"]}})

    jobs = session.find('Job')
    assert {j["id"] for j in jobs} == {job["id"], by_user["id"], to_stockholm["id"]}
    job = session.find_one('Job where code="x and y.png"')
    assert job is not None and job["code"] == "x and y.png"
    text = session.str(job)
    assert '"code": "x and y.png"' in text
    assert session.find_one('Job where user=user@mail.com')["id"] == by_user["id"]
    found = session.find_one('Job where destination="stockholm"')
    assert found["id"] == to_stockholm["id"] and found["destination_hr"] == "site:stockholm"
    assert len(session.find('Job where source=hq')) == 3
    assert session.find_one('Job where code="no such job"') is None

    # every attribute of jobs.rst is there
    for field in ("id", "code", "uri", "status", "created", "source", "source_hr",
                  "destination", "destination_hr", "etr", "metadata", "parent", "parent_hr",
                  "progress", "size", "speed", "user", "user_hr", "finished", "modified",
                  "modifier"):
        assert field in job, field
    assert job["source_hr"] == "site:hq" and job["user_hr"] == "user:root(root)"
    assert job["progress"] == 0 and job["speed"] == 0.0 and job["etr"] == ""

    # pause, resume, abort
    session.update('job', job["id"], {'status': "paused"})
    assert session.get("Job", job["id"])["status"] == "paused"
    session.update('job', job["id"], {'status': "waiting"})
    assert session.get("Job", job["id"])["status"] == "waiting"
    session.update('job', job["id"], {'status': "aborted"})
    aborted = session.get("Job", job["id"])
    assert aborted["status"] == "aborted" and aborted["finished"]
    with pytest.raises(ApiError) as info:  # resend applies to transfers
        session.update('job', job["id"], {'status': "pending"})
    assert info.value.status == 422

    # an ended job leaves the active set after job_inactive_after (2 s here)
    assert session.find_one(f"Job where id={job['id']}") is not None
    wait_for(lambda: session.find_one(f"Job where id={job['id']}") is None, timeout=10,
             what="the aborted job to become inactive")
    inactive = session.find('Job where status=aborted', finished=True)
    assert [j["id"] for j in inactive] == [job["id"]]

    session.update("job", by_user["id"], {"status": "done"})  # closes it: tasks excluded
    closed = session.get("Job", by_user["id"])
    assert closed["status"] == "done" and closed["counts"] == {"excluded": 10}
    wait_for(lambda: session.find('Job where status=done', archived=True), timeout=15,
             what="the done job to be archived")
    assert [j["id"] for j in session.find('Job where status=done', archived=True)] \
        == [by_user["id"]]
    assert session.find('Job where status=done', finished=True) == []

    session.delete_one('job', by_user["id"])
    with pytest.raises(ApiError) as info:
        session.get("Job", by_user["id"])
    assert info.value.status == 404


def test_tasks_verbatim(root: Session) -> None:
    session = root
    job = make(session, "my_transfer")
    tasks = session.find(f'task WHERE job.id={job["id"]}')
    assert [t["uri"] for t in tasks] == [str(n) for n in range(10)]
    assert [t["item"] for t in tasks] == [str(n) for n in range(1, 11)]
    for field in ("id", "uri", "status", "created", "source", "destination", "priority",
                  "size", "finished", "time"):
        assert field in tasks[0]
    assert len(session.find(f'task WHERE job.id={job["id"]} AND status<>executing')) == 10
    assert session.find(f'task WHERE job.id={job["id"]} AND status=executing') == []

    # exclude a task (tasks cannot be deleted)
    first = tasks[0]["id"]
    updated = session.update_many('task', job["id"], [{'id': first, 'status': 'excluded'}])
    assert [(t["id"], t["status"]) for t in updated] == [(first, "excluded")]
    with pytest.raises(ApiError) as info:
        session.delete_one("task", first)
    assert info.value.status == 405 and "excluded" in info.value.message

    # the other call shape of jobs.rst
    job = session.find('job WHERE code="my_transfer"')[0]
    updated_job = session.update_many("task", [{"id": tasks[1]["id"], "status": "onhold"}],
                                      entityid=job["id"])
    assert updated_job[0]["status"] == "onhold"
    # priority and metadata change; nothing else does
    done = session.update_many("task", job["id"], [{"id": tasks[2]["id"], "priority": 900,
                                                     "metadata": {"note": "urgent"}}])
    assert (done[0]["priority"], done[0]["metadata"]) == (900, {"note": "urgent"})
    for change, code in (({"source": {"item": "99"}}, 422), ({"item": "99"}, 422),
                         ({"status": "executing"}, 422), ({"status": "sleeping"}, 422),
                         ({"priority": 0}, 422)):
        with pytest.raises(ApiError) as info:
            session.update_many("task", job["id"], [{"id": tasks[3]["id"], **change}])
        assert info.value.status == code, change
    with pytest.raises(ApiError) as info:  # one bad id: nothing changes
        session.update_many("task", job["id"], [{"id": tasks[4]["id"], "status": "onhold"},
                                                {"id": "nope", "status": "onhold"}])
    assert info.value.status == 404
    assert session.get("Task", tasks[4]["id"])["status"] == "queued"

    # add tasks; a duplicate is retried, not added; allow_duplicates=False refuses
    answer = session.create("task", {"tasks": ["11", 12]}, job["id"])
    assert answer["success"] is True and len(answer["created"]) == 2
    answer = session.create("task", {"tasks": ["1", "13"]}, job["id"])
    assert len(answer["created"]) == 1 and answer["retried"] == [first]
    assert session.get("Task", first)["status"] == "queued"  # was excluded: runs again
    with pytest.raises(ApiError) as info:
        session.create("task", {"tasks": ["2", "14"]}, job["id"], allow_duplicates=False)
    assert info.value.status == 409 and "'2'" in info.value.message
    assert session.find_one(f'task WHERE job.id={job["id"]} AND item=14') is None
    uris = [t["uri"] for t in session.find(f'task WHERE job.id={job["id"]}')]
    assert uris == [str(n) for n in range(13)]


BAD_SPECS: list[tuple[dict[str, Any], str, str]] = [
    ({"compute": {**SPEC, "colour": "red"}}, "compute.colour", "unknown field"),
    ({"compute": SPEC, "colour": "red"}, "colour", "unknown field"),
    ({"compute": {**SPEC, "items": ""}}, "compute.items", "is not a frame"),
    ({"compute": {**SPEC, "items": []}}, "compute.items", "items is empty"),
    ({"compute": {**SPEC, "items": "5-1"}}, "compute.items", "runs backwards"),
    ({"compute": {**SPEC, "items": "1-2000000"}}, "compute.items", "more than"),
    ({"compute": {**SPEC, "items": "a-b"}}, "compute.items", "is not a frame"),
    ({"compute": {**SPEC, "bucket_size": -1}}, "compute.bucket_size", ">= 1"),
    ({"compute": {**SPEC, "bucket_size": 0}}, "compute.bucket_size", ">= 1"),
    ({"compute": {**SPEC, "command": "echo {item}"}}, "compute.command", "Expected `array`"),
    ({"compute": {**SPEC, "command": []}}, "compute.command", "length >= 1"),
    ({"compute": {**SPEC, "command": ["", "x"]}}, "compute.command", "program"),
    ({"compute": {**SPEC, "command": ["echo", 5]}}, "compute.command[1]", "Expected `str`"),
    ({"compute": {**SPEC, "clients": ["site:atlantis"]}}, "compute.clients[0]", "no site"),
    ({"compute": {**SPEC, "clients": ["client:nope"]}}, "compute.clients[0]", "no agent with id"),
    ({"compute": {**SPEC, "clients": ["tag:gpu"]}}, "compute.clients[0]", "has the tag"),
    ({"compute": {**SPEC, "clients": ["code:render*"]}}, "compute.clients[0]", "a code matching"),
    ({"compute": {**SPEC, "clients": ["planet:mars"]}}, "compute.clients[0]", "unknown kind 'planet'"),
    ({"compute": {**SPEC, "env": {"1BAD": "x"}}}, "compute.env", "a key of field"),
    ({"compute": {**SPEC, "command": ["echo", "a\0b"]}}, "compute.command[1]", "NUL"),
    ({"compute": {**SPEC, "env": {"X": "a\0"}}}, "compute.env.X", "NUL"),
    ({"compute": {**SPEC, "cwd": "/tmp\0x"}}, "compute.cwd", "NUL"),
    ({"compute": {**SPEC, "items": ["a\0b"]}}, "compute.items[0]", "NUL"),
    ({"compute": {**SPEC, "retries": -1}}, "compute.retries", ">= 0"),
    ({"compute": {**SPEC, "timeout": 0}}, "compute.timeout", "> 0"),
    ({"compute": SPEC, "priority": 0}, "priority", ">= 1"),
    ({"compute": SPEC, "status": "running"}, "status", "Invalid enum value"),
    ({"source": "/etc/passwd", "destination": "lars@edit.com"}, "source",
     "write a share path"),
    ({}, "compute", "missing required field"),
]


def test_bad_specs_are_refused_and_create_nothing(jobs_hub: Hub, root: Session) -> None:
    before = db_rows(jobs_hub.database)
    for body, field, needle in BAD_SPECS:
        status, answer = http("POST", f"{jobs_hub.api}/job", body, token=root._token)
        assert status == 422, (body, answer)
        assert answer["error"]["field"] == field, (body, answer)
        assert needle in answer["error"]["message"], (body, answer)
    status, answer = http("POST", f"{jobs_hub.api}/job", raw=b"[1]", token=root._token)
    assert status == 422
    assert db_rows(jobs_hub.database) == before


def test_job_writes_are_checked(root: Session) -> None:
    job = make(root, "j")
    for body, code in (({"status": "running"}, 422), ({"status": "init"}, 422),
                       ({"priority": 5000}, 422), ({"colour": 1}, 422), ({"user": "x"}, 422),
                       ({"code": ""}, 422)):
        with pytest.raises(ApiError) as info:
            root.update("Job", job["id"], body)
        assert info.value.status == code, body
    root.update("Job", job["id"], {"status": "aborted"})
    with pytest.raises(ApiError) as info:
        root.update("Job", job["id"], {"status": "paused"})
    assert info.value.status == 409 and "write 'waiting'" in info.value.message
    again = root.update("Job", job["id"], {"status": "waiting"})  # run it again
    assert again["status"] == "waiting" and again["finished"] is None
    assert root.update("Job", job["id"], {"priority": 900, "code": "renamed"})["priority"] == 900
    assert root.find_one("Job where code=renamed AND priority>=900") is not None


def test_targets_tags_and_items_are_checked(hub: Hub, session: Session, node_key,
                                            start_agent) -> None:
    agent = start_agent(hub, node_key("gpu01")["api_key"], lanes=1)
    agent_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    lane = session.find_one(f"Client where parent={agent_id}")
    with pytest.raises(ApiError) as info:
        session.create("Job", {"compute": {**SPEC, "clients": [f"client:{lane['id']}"]}})
    assert info.value.code == "unknown_target" and "compute lane" in info.value.message
    with pytest.raises(ApiError) as info:
        session.create("Job", {"compute": {**SPEC, "clients": ["tag:gpu"]}})
    assert info.value.code == "unknown_target"
    assert session.update("Client", agent_id, {"tags": ["gpu", "gpu", "nvme"]})["tags"] == \
        ["gpu", "nvme"]
    job = session.create("Job", {"compute": {**SPEC, "items": "1-3", "clients": ["tag:gpu"]}})
    done = wait_for(lambda: (j := session.get("Job", job["id"]))["status"] == "done" and j,
                    what="tagged job done")
    assert done["counts"] == {"done": 3}
    with pytest.raises(ApiError) as info:
        session.create("Job", {"compute": {**SPEC, "items": "1-5,3"}})
    assert "item '3' is listed twice" in info.value.message
    with pytest.raises(ApiError) as info:
        session.create("task", {"tasks": ["ok", "a\0b"]}, job["id"])
    assert info.value.status == 422 and "NUL" in info.value.message
    with pytest.raises(ApiError) as info:
        session.update("Client", agent_id, {"tags": ["x" * 65]})
    assert info.value.status == 422


def test_status_writes_keep_their_times(root: Session) -> None:
    job = make(root, "j")
    root.update("Job", job["id"], {"status": "aborted"})
    first = root.get("Job", job["id"])["finished"]
    root.update("Job", job["id"], {"status": "aborted"})
    assert root.get("Job", job["id"])["finished"] == first
    closed = root.update("Job", make(root, "k")["id"], {"status": "done"})
    tasks = root.find(f"task WHERE job.id={closed['id']}")
    assert all(t["status"] == "excluded" and t["finished"] for t in tasks)
    again = root.update("Job", closed["id"], {"status": "waiting"})  # nothing to redo
    assert again["status"] == "done" and again["finished"] == closed["finished"]
    with pytest.raises(ApiError) as info:
        root.find("Job where status=runing")
    assert info.value.status == 422 and "has no value 'runing'" in info.value.message
    with pytest.raises(ApiError) as info:
        root.update_many("task", job["id"], [{"id": tasks[0]["id"], "colour": "red"}])
    assert info.value.code == "unknown_field"
