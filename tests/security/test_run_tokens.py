"""Finding 7: a docker run's token reaches its own job group, nothing else.

A researcher of A starts a docker job in collaboration AB with a run for B. B's node
gets the run's token (as any node does, in the run's ``/ferry/token``) and tries what the
finding did: list A's private jobs (their ``env`` holds a secret), read their tasks and
logs, start jobs in A's name. Only its own group answers; everything else is refused
and nothing changes. B's organization admin, who shares the collaboration, does not see
A's private job either: the collaboration scope reaches what belongs to it.
"""

from __future__ import annotations

from hub import permissions
from tests.helpers import Hub, db_query
from tests.security.world import World

SECRET = {"API_TOKEN": "s3cr3t-of-A"}


def test_a_run_token_reaches_its_job_group_only(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)
    private = world.compute_job(ann["token"], compute={"env": SECRET}, status="paused")
    private_task = world.tasks(private["id"])[0]["id"]
    group = world.ok("POST", "/job", {
        "docker": {"image": "ferry-test/busybox:1", "organizations": [
            {"organization": world.org["B"]["id"], "input": "x"}]},
        "collaboration": world.collab["id"]}, ann["token"])
    b_node = world.agent("B", shared=True, lanes=0)
    [bucket] = b_node.claim(docker=1)
    run = bucket["tasks"][0]
    token = run["docker"]["token"]
    assert token and run["docker"]["job_id"] == group["id"]
    jobs_before = db_query(hub.database, "SELECT id, status, spec FROM jobs ORDER BY id")

    # reading: its group only
    found = world.ok("POST", "/find", {"query": "Job"}, token)["result"]
    assert [j["id"] for j in found] == [group["id"]]
    assert SECRET["API_TOKEN"] not in repr(found)
    tasks = world.ok("POST", "/find", {"query": "Task"}, token)["result"]
    assert {t["job"] for t in tasks} == {group["id"]}
    for path in (f"/job/{private['id']}", f"/task/{private_task}", f"/task/{private_task}/log",
                 f"/user/{ann['id']}/jobs", f"/organization/{world.org['A']['id']}/jobs"):
        status, body = world.call("GET", path, token=token)
        assert status == 403, (path, body)
    # writing: child runs of its own job, nothing in anybody's name elsewhere
    attempts = [
        ("POST", "/job", {"compute": {"command": ["true"], "items": "1"}}),
        ("POST", "/job", {"docker": {"image": "ferry-test/busybox:1", "organizations": [
            {"organization": world.org["A"]["id"]}]}, "collaboration": world.collab["id"],
            "parent": private["id"]}),
        ("PATCH", f"/job/{private['id']}", {"status": "waiting"}),
        ("PATCH", f"/job/{private['id']}/tasks", {"tasks": [{"id": private_task,
                                                             "status": "queued"}]}),
        ("DELETE", f"/job/{private['id']}", None),
        ("POST", "/apikey", {"description": "mine now"}),
        ("PATCH", f"/user/{ann['id']}", {"password": "taken-over-1234",
                                         "current_password": "a guess at ann's"}),
        ("GET", "/refusals", None),
    ]
    for method, path, body in attempts:
        status, answer = world.call(method, path, body, token)
        assert status in (403, 422), (method, path, answer)
    assert db_query(hub.database, "SELECT id, status, spec FROM jobs ORDER BY id") == jobs_before
    child = world.ok("POST", "/job", {"docker": {"image": "ferry-test/busybox:1",
                                                 "organizations": [
                                                     {"organization": world.org["B"]["id"]}]}},
                     token)
    assert child["job_id"] == group["id"] and child["organization"] == world.org["A"]["id"]
    assert {j["id"] for j in world.ok("POST", "/find", {"query": "Job"}, token)["result"]} == \
        {group["id"], child["id"]}


def test_collaboration_scope_is_what_belongs_to_the_collaboration(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    private = world.compute_job(ann, compute={"env": SECRET}, status="paused")
    shared = world.compute_job(ann, collaboration=world.collab["name"], status="paused")
    b_admin = world.user("B", permissions.ORG_ADMIN)["token"]
    seen = {j["id"] for j in world.ok("POST", "/find", {"query": "Job"}, b_admin)["result"]}
    assert shared["id"] in seen and private["id"] not in seen
    status, body = world.call("GET", f"/job/{private['id']}", token=b_admin)
    assert status == 404, body  # outside the collaboration: as a job that does not exist
    private_task = world.tasks(private["id"])[0]["id"]
    for path in (f"/task/{private_task}", f"/task/{private_task}/log"):
        assert world.call("GET", path, token=b_admin)[0] == 404
    # B's admin sees A's docker job in AB, but starts no child of it in A's name
    group = world.ok("POST", "/job", {
        "docker": {"image": "ferry-test/busybox:1", "organizations": [
            {"organization": world.org["B"]["id"], "input": "x"}]},
        "collaboration": world.collab["id"], "status": "paused"}, ann)
    assert world.call("GET", f"/job/{group['id']}", token=b_admin)[0] == 200
    jobs = len(world.ok("POST", "/find", {"query": "Job"})["result"])
    status, body = world.call("POST", "/job", {
        "docker": {"image": "ferry-test/busybox:1", "organizations": [
            {"organization": world.org["B"]["id"]}]}, "parent": group["id"]}, b_admin)
    assert status == 403 and "edit job" in body["error"]["message"], body
    # nor names a collaboration or organization it could probe
    for collab in (world.collab["id"], "no-such-collaboration"):
        status, body = world.call("POST", "/job", {
            "docker": {"image": "ferry-test/busybox:1", "organizations": [
                {"organization": world.org["C"]["id"]}]}, "collaboration": collab}, b_admin)
        assert status == 422 and body["error"]["code"] == "not_a_member", body
    assert len(world.ok("POST", "/find", {"query": "Job"})["result"]) == jobs
