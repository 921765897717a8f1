"""Limits never cross organizations, and lesser roles only look at them (issue 18).

B (A's partner in a collaboration) and C attack A's limit as each default role: they
cannot see it, raise or lower it, rename it or delete it (each answered as a limit that
does not exist, 404), and their jobs cannot hold it (the same 422 as for a limit that
does not exist, by name or by id). A limit of the same name in B is B's own: B's jobs
count against it, never against A's. A's viewer and researcher see A's limit but cannot
change, create or delete one (403 naming the rule). Afterwards A's limit is as it was,
and no limit or job was made by a refused call.
"""

from __future__ import annotations

from typing import Any

from hub import permissions
from tests.helpers import Hub, db_query
from tests.security.world import World


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def test_another_organization_cannot_reach_or_hold_a_limit(hub: Hub) -> None:
    world = World(hub)
    a_admin = world.user("A", permissions.ORG_ADMIN)["token"]
    limit = world.ok("POST", "/limit", {"name": "nuke", "max": 1}, a_admin)
    before = world.ok("GET", f"/limit/{limit['id']}")
    jobs, limits, held = count(hub, "jobs"), count(hub, "limits"), count(hub, "job_limits")

    for org in ("B", "C"):
        for role in (permissions.ORG_ADMIN, permissions.RESEARCHER, permissions.VIEWER):
            token = world.user(org, role)["token"]
            status, answer = world.call("GET", f"/limit/{limit['id']}", token=token)
            assert status == 404, answer
            listed = world.ok("POST", "/find", {"query": "Limit"}, token)["result"]
            assert limit["id"] not in [x["id"] for x in listed]
            for body in ({"max": 100}, {"max": 0}, {"name": "mine"}):
                status, answer = world.call("PATCH", f"/limit/{limit['id']}", body, token)
                assert status == 404, (body, answer)
            status, answer = world.call("DELETE", f"/limit/{limit['id']}", token=token)
            assert status == 404, answer
            if role == permissions.VIEWER:  # it starts no job anywhere
                continue

            # holding it: the answer for a limit that does not exist, word for word
            def submit(name: str, token: str = token) -> tuple[int, Any]:
                return world.call("POST", "/job", {"compute": {"command": ["true"],
                                                               "items": "1"},
                                                   "limits": [name]}, token)

            theirs, nowhere = submit("nuke"), submit("nuk3")
            assert theirs[0] == nowhere[0] == 422
            assert theirs[1]["error"]["field"] == "limits[0]"
            assert theirs[1]["error"]["message"].replace("nuke", "nuk3") == \
                nowhere[1]["error"]["message"]
            assert submit(limit["id"])[0] == 422  # nor by its id
        status, answer = world.call("POST", "/limit", {
            "name": "x", "max": 5, "organization": world.org["A"]["id"]},
            world.user(org, permissions.ORG_ADMIN)["token"])
        assert status == 403, answer
    assert world.ok("GET", f"/limit/{limit['id']}") == before
    assert (count(hub, "jobs"), count(hub, "limits"), count(hub, "job_limits")) == \
        (jobs, limits, held)

    # B's limit of the same name is B's own: B's running job uses none of A's
    b_admin = world.user("B", permissions.ORG_ADMIN)["token"]
    own = world.ok("POST", "/limit", {"name": "nuke", "max": 1}, b_admin)
    b_job = world.compute_job(world.user("B", permissions.RESEARCHER)["token"],
                              items="1-2", limits=["nuke"])
    assert b_job["limits"] == ["nuke"]
    assert [b["job_id"] for b in world.agent("B", lanes=2).claim()] == [b_job["id"]]
    assert world.ok("GET", f"/limit/{own['id']}")["in_use"] == 1
    assert world.ok("GET", f"/limit/{limit['id']}") == before  # in_use 0 still
    a_job = world.compute_job(world.user("A", permissions.RESEARCHER)["token"],
                              limits=["nuke"])
    assert [b["job_id"] for b in world.agent("A").claim()] == [a_job["id"]]


def test_lesser_roles_cannot_change_or_create_limits(hub: Hub) -> None:
    world = World(hub)
    a_admin = world.user("A", permissions.ORG_ADMIN)["token"]
    limit = world.ok("POST", "/limit", {"name": "nuke", "max": 4}, a_admin)
    before, limits = world.ok("GET", f"/limit/{limit['id']}"), count(hub, "limits")
    for role in (permissions.VIEWER, permissions.RESEARCHER):
        token = world.user("A", role)["token"]
        assert world.ok("GET", f"/limit/{limit['id']}", token=token) == before  # it sees it
        for body in ({"max": 100}, {"name": "mine"}):
            status, answer = world.call("PATCH", f"/limit/{limit['id']}", body, token)
            assert status == 403 and answer["error"]["rule"]["resource"] == "limit", answer
        status, answer = world.call("POST", "/limit", {"name": "mine", "max": 1}, token)
        assert status == 403 and answer["error"]["rule"]["resource"] == "limit", answer
        status, answer = world.call("DELETE", f"/limit/{limit['id']}", token=token)
        assert status == 403, answer
    # an agent's token reaches no limit at all
    agent = world.agent("A")
    status, _ = agent.call("GET", f"/limit/{limit['id']}")
    assert status in (403, 404)
    status, _ = agent.call("PATCH", f"/limit/{limit['id']}", {"max": 100})
    assert status in (403, 404)
    assert world.ok("GET", f"/limit/{limit['id']}") == before
    assert count(hub, "limits") == limits
