"""Runs added to a docker job later (``POST /job/<id>/tasks`` with organizations, as the
hub shell's ``db.Run`` does): only by who may add tasks to the job, only for
organizations of its collaboration, once each; bad bodies name the field; a refusal
changes nothing."""

from __future__ import annotations

from typing import Any

from hub import permissions
from tests.helpers import Hub, db_query
from tests.security.world import World

IMAGE = "ferry-test/busybox:1"


def rows(hub: Hub) -> Any:
    return (db_query(hub.database, "SELECT id, status, spec FROM jobs ORDER BY id"),
            db_query(hub.database, "SELECT id, job_id, organization_id, status FROM tasks "
                                   "ORDER BY id"))


def test_runs_are_added_by_the_jobs_people_for_its_collaboration_only(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)
    # a docker job with no run yet is made paused (the shell's db.Task before its runs)
    status, answer = world.call("POST", "/job", {
        "docker": {"image": IMAGE, "organizations": []},
        "collaboration": world.collab["id"]}, ann["token"])
    assert status == 422 and answer["error"]["field"] == "docker.organizations", answer
    job = world.ok("POST", "/job", {"docker": {"image": IMAGE, "organizations": []},
                                    "collaboration": world.collab["id"], "status": "paused"},
                   ann["token"])
    added = world.ok("POST", f"/job/{job['id']}/tasks", {"tasks": [
        {"organization": world.org["B"]["id"], "input": "frames"}]}, ann["token"])
    [run] = world.tasks(job["id"])
    assert added["created"] == [run["id"]] and run["organization"] == world.org["B"]["id"]
    assert run["status"] == "queued"

    before = rows(hub)
    path = f"/job/{job['id']}/tasks"
    bad = [  # (body, status, field)
        ({"tasks": [{"organization": world.org["C"]["id"]}]}, 422, "tasks[0].organization"),
        ({"tasks": [{"organization": "no such organization"}]}, 422,
         "tasks[0].organization"),
        ({"tasks": [{"organization": world.org["B"]["id"]}]}, 409, "tasks[0].organization"),
        ({"tasks": [{"organization": world.org["A"]["id"], "colour": "red"}]}, 422,
         "tasks[0].colour"),
        ({"tasks": [{"organization": world.org["A"]["id"], "input": 7}]}, 422,
         "tasks[0].input"),
        ({"tasks": [{"input": "x"}]}, 422, "tasks[0].organization"),
        ({"tasks": ["a.mov"]}, 422, "tasks[0]"),
    ]
    for body, code, field in bad:
        status, answer = world.call("POST", path, body, ann["token"])
        assert (status, answer["error"].get("field")) == (code, field), (body, answer)
    assert rows(hub) == before

    # C shares nothing: the job is answered as one that does not exist (hub/access.py),
    # word for word as a made-up id; B shares the collaboration (it sees the job) and a
    # viewer of A: refused naming the rule they lack
    c = world.user("C", permissions.RESEARCHER)["token"]
    one = {"tasks": [{"organization": world.org["A"]["id"]}]}
    status, answer = world.call("POST", path, one, c)
    made_up = "f" * 24
    status_none, none = world.call("POST", path.replace(job["id"], made_up), one, c)
    assert (status, status_none) == (404, 404), (answer, none)
    assert answer["error"]["message"].replace(job["id"], made_up) == none["error"]["message"]
    assert IMAGE not in repr(answer) and world.org["A"]["id"] not in repr(answer)
    for who in (world.user("B", permissions.RESEARCHER), world.user("B", permissions.ORG_ADMIN)):
        status, answer = world.call("POST", path, one, who["token"])
        assert status == 403 and answer["error"]["rule"]["operation"] == "create", answer
    status, answer = world.call("POST", path, {"tasks": [
        {"organization": world.org["A"]["id"]}]}, world.user("A", permissions.VIEWER)["token"])
    assert status == 403, answer
    assert rows(hub) == before
