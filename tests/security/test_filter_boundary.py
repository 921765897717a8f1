"""Node filters and negations never cross organizations (docs/SECURITY.md, "Compute work").

A researcher of A aims filters at B's agents, which have everything asked for (the most
RAM, GPUs, cores, the host names named), and negates A's own agents away so that only
foreign ones would be left. B's and C's agents never hold a bucket of A's; a job's
``status_reason`` quotes A's agents only and reads the same whether a foreign agent would
match or none exists; and malformed targets are refused (422 naming the entry), creating
nothing.
"""

from __future__ import annotations

from typing import Any

from hub import permissions
from tests.e2e.test_compute_filters import GiB, check_in
from tests.helpers import Hub, db_query
from tests.security.test_compute_boundary import SECRET, buckets_of
from tests.security.world import World


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def test_filters_and_negations_stay_inside_the_organization(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    mine = world.agent("A", code="render-a1")
    check_in(mine, cores=8, ram=16 * GiB)
    theirs = world.agent("B", code="render-b1")
    check_in(theirs, cores=256, ram=4096 * GiB, gpus=8)
    shared_b = world.agent("B", shared=True, code="render-b2")  # B's node of AB
    check_in(shared_b, cores=256, ram=4096 * GiB, gpus=8)
    c_agent = world.agent("C", code="render-c1")
    check_in(c_agent, cores=256, ram=4096 * GiB, gpus=8)

    aimed = [["ram:>1TB"], ["gpus:>=8"], ["cores:>=256"], ["hostname:render-b*"],
             ["!hostname:render-a*"], [f"!client:{mine.id}"], ["!tag:none", "!os:linux"],
             ["!ram:<1TB"], ["os:linux", "!cores:8"]]
    jobs = [world.compute_job(ann, items="1-4", compute={"env": SECRET, "clients": targets})
            for targets in aimed]
    for agent in (theirs, shared_b, c_agent):
        assert agent.claim() == []
        assert buckets_of(hub, agent.id) == 0
    for job in jobs:  # and each says it waits for an agent of A
        reason = world.ok("GET", f"/job/{job['id']}", token=ann)["status_reason"]
        assert reason.startswith("no agent of this organization matches"), reason
        hint = reason.partition(" (")[2]  # the figures quoted: A's, never B's
        assert "4398" not in hint and "256" not in hint, reason
    assert world.ok("GET", f"/job/{jobs[0]['id']}", token=ann)["status_reason"] == \
        "no agent of this organization matches ram:>1TB (largest: 17.2 GB)"

    # in the collaboration, a negation narrows to the members' nodes of AB, never wider
    job = world.compute_job(ann, collaboration=world.collab["name"],
                            compute={"env": SECRET, "clients": [f"!client:{mine.id}"]})
    assert theirs.claim() == [] and c_agent.claim() == [] and mine.claim() == []
    assert [b["job_id"] for b in shared_b.claim()] == [job["id"]]


def test_reasons_do_not_tell_foreign_agents_from_none(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    check_in(world.agent("A", code="render-a1"), ram=16 * GiB)
    theirs = world.agent("B", code="render-b1")
    check_in(theirs, ram=4096 * GiB, gpus=8)

    def said(*targets: str) -> str:
        job = world.compute_job(ann, compute={"clients": list(targets)})
        return str(job["status_reason"])

    assert said("hostname:render-b*").replace("render-b*", "G") == \
        said("hostname:nothing-here*").replace("nothing-here*", "G")
    assert said("ram:>1TB") == said("ram:>1TB", "!tag:none") == \
        "no agent of this organization matches ram:>1TB (largest: 17.2 GB)"
    # a negated id is taken as it is: the answer is the same for a foreign or no agent
    for ident in (theirs.id, "f" * 24):
        job = world.compute_job(ann, compute={"clients": [f"!client:{ident}"]})
        assert job["status_reason"] is None


BAD = [
    (["planet:mars"], "compute.clients[0]", "unknown kind 'planet'"),
    (["tag:gpu", "!planet:mars"], "compute.clients[1]", "unknown kind 'planet'"),
    (["ram:>lots"], "compute.clients[0]", "not a comparison"),
    (["os:linux", "ram:>60"], "compute.clients[1]", "give a unit"),
    (["cores:>=twelve"], "compute.clients[0]", "not a comparison"),
    (["gpus:>=1.5"], "compute.clients[0]", "whole number"),
    (["os:beos"], "compute.clients[0]", "os is one of"),
    (["hostname:"], "compute.clients[0]", "needs a value"),
    (["!"], "compute.clients[0]", "needs a value"),
    (["x" * 256], "compute.clients[0]", "length <= 255"),
]


def test_bad_targets_are_refused_and_create_nothing(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    check_in(world.agent("A"))
    before = (count(hub, "jobs"), count(hub, "tasks"))
    for targets, field, needle in BAD:
        status, body = world.call("POST", "/job", {"compute": {
            "command": ["true"], "items": "1-3", "env": SECRET, "clients": targets}}, ann)
        assert status == 422, (targets, body)
        error: dict[str, Any] = body["error"]
        assert error["field"] == field and needle in error["message"], (targets, error)
    assert (count(hub, "jobs"), count(hub, "tasks")) == before
