"""Queues never cross organizations, and lesser roles only look at them (issue 18).

B's organization admin attacks A's queue: it cannot see it, pause it, reprioritize it,
rename it or delete it (each answered as a queue that does not exist, 404), and B's
researcher cannot submit into it (the same 422 as for a queue that does not exist). A's
viewer and researcher cannot pause or create queues (403 naming the rule). Afterwards A's
queue is as it was, and no queue or job was made.
"""

from __future__ import annotations

from typing import Any

from hub import permissions
from tests.helpers import Hub, db_query
from tests.security.world import World


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def test_another_organization_cannot_reach_a_queue(hub: Hub) -> None:
    world = World(hub)
    a_admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    queue = world.ok("POST", "/queue", {"name": "comp", "priority": 700}, a_admin)
    world.compute_job(ann, queue="comp")
    agent_a = world.agent("A")
    before = world.ok("GET", f"/queue/{queue['id']}")
    jobs, queues = count(hub, "jobs"), count(hub, "queues")

    for org in ("B", "C"):
        for role in (permissions.ORG_ADMIN, permissions.RESEARCHER, permissions.VIEWER):
            token = world.user(org, role)["token"]
            status, answer = world.call("GET", f"/queue/{queue['id']}", token=token)
            assert status == 404, answer
            listed = world.ok("POST", "/find", {"query": "Queue"}, token)["result"]
            assert queue["id"] not in [q["id"] for q in listed]
            assert world.ok("POST", "/find", {"query": f"Job where queue={queue['id']}"},
                            token)["result"] == []
            for body in ({"status": "paused"}, {"priority": 1000}, {"name": "mine"}):
                status, answer = world.call("PATCH", f"/queue/{queue['id']}", body, token)
                assert status == 404, (body, answer)
            status, answer = world.call("DELETE", f"/queue/{queue['id']}", token=token)
            assert status == 404, answer

            if role == permissions.VIEWER:  # it starts no job anywhere
                continue

            # submitting into it: the answer for a queue that does not exist, word for word
            def submit(name: str, token: str = token) -> tuple[int, Any]:
                return world.call("POST", "/job", {"compute": {"command": ["true"],
                                                               "items": "1"},
                                                   "queue": name}, token)

            theirs, nowhere = submit("comp"), submit("c0mp")
            assert theirs[0] == nowhere[0] == 422
            assert theirs[1]["error"]["field"] == "queue"
            assert theirs[1]["error"]["message"].replace("comp", "c0mp") == \
                nowhere[1]["error"]["message"]
            assert submit(queue["id"])[0] == 422  # nor by its id
    # a queue of the same name in B is B's own, and B's jobs go there, never into A's
    b_admin = world.user("B", permissions.ORG_ADMIN)["token"]
    status, answer = world.call("POST", "/queue", {"name": "x", "organization":
                                                   world.org["A"]["id"]}, b_admin)
    assert status == 403, answer
    own = world.ok("POST", "/queue", {"name": "comp"}, b_admin)
    b_job = world.compute_job(world.user("B", permissions.RESEARCHER)["token"], queue="comp")
    assert b_job["parent"] == own["id"] != queue["id"]
    assert agent_a.claim() != [] and agent_a.claim() == []  # A's job only, never B's

    assert world.ok("GET", f"/queue/{queue['id']}") == before
    assert (count(hub, "jobs"), count(hub, "queues")) == (jobs + 1, queues + 1)


def test_lesser_roles_cannot_pause_or_create_queues(hub: Hub) -> None:
    world = World(hub)
    a_admin = world.user("A", permissions.ORG_ADMIN)["token"]
    queue = world.ok("POST", "/queue", {"name": "comp"}, a_admin)
    before, queues = world.ok("GET", f"/queue/{queue['id']}"), count(hub, "queues")
    for role in (permissions.VIEWER, permissions.RESEARCHER):
        token = world.user("A", role)["token"]
        assert world.ok("GET", f"/queue/{queue['id']}", token=token) == before  # it sees it
        for body in ({"status": "paused"}, {"priority": 1000}):
            status, answer = world.call("PATCH", f"/queue/{queue['id']}", body, token)
            assert status == 403 and answer["error"]["rule"]["resource"] == "queue", answer
        status, answer = world.call("POST", "/queue", {"name": "mine"}, token)
        assert status == 403, answer
        status, answer = world.call("DELETE", f"/queue/{queue['id']}", token=token)
        assert status == 403, answer
    assert world.ok("GET", f"/queue/{queue['id']}") == before
    assert count(hub, "queues") == queues
