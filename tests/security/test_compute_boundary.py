"""Finding 1: compute work never crosses organizations (docs/SECURITY.md, "Compute work").

A researcher of A tries to send a job (its ``env`` holding a secret) to B's agent by id,
by a code glob, by a tag or a site B's admin set, or with no target at all; B's agents
claim whatever they can. Every attempt is refused or finds nothing, the answers do not
tell a foreign agent from one that does not exist, and B's agents never hold a bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub import permissions
from tests.helpers import Agent, Hub, db_query, wait_for
from tests.security.world import World, unique

SECRET = {"API_TOKEN": "s3cr3t-of-A"}


def buckets_of(hub: Hub, client_id: str) -> int:
    return int(db_query(hub.database, "SELECT count(*) FROM buckets WHERE client_id = ?",
                        client_id)[0][0])


def refused_target(world: World, token: str, target: str) -> dict[str, Any]:
    status, body = world.call("POST", "/job", {"compute": {
        "command": ["printenv", "API_TOKEN"], "items": "1", "env": SECRET,
        "clients": [target]}}, token)
    assert status == 422, (target, body)
    assert body["error"]["code"] == "unknown_target", body
    return dict(body["error"])


def test_targets_resolve_only_among_the_callers_agents(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    b_admin = world.user("B", permissions.ORG_ADMIN)["token"]
    mine = world.agent("A", code="render-a1")
    theirs = world.agent("B", code="render-b1")
    # B's admin dresses its agent up as A's would be: tags and site A's jobs ask for
    world.ok("PATCH", f"/client/{theirs.id}", {"tags": ["gpu"]}, b_admin)
    jobs_before = world.ok("POST", "/find", {"query": "Job"})["result"]

    # a foreign agent answers exactly as an agent that does not exist
    foreign = refused_target(world, ann, f"client:{theirs.id}")
    missing = refused_target(world, ann, f"client:{'f' * 24}")
    assert foreign["message"].replace(theirs.id, "ID") == missing["message"].replace("f" * 24,
                                                                                     "ID")
    # no oracle on codes or tags of other organizations' agents
    glob = refused_target(world, ann, "code:render-b*")
    nothing = refused_target(world, ann, "code:nothing-here*")
    assert glob["message"].replace("render-b*", "G") == nothing["message"].replace(
        "nothing-here*", "G")
    refused_target(world, ann, "tag:gpu")  # only B's agent has it
    # nothing was created by the refusals
    assert world.ok("POST", "/find", {"query": "Job"})["result"] == jobs_before

    # what A may name, it gets: its own agent
    job = world.compute_job(ann, compute={"env": SECRET, "clients": [f"client:{mine.id}"]})
    assert job["status"] == "waiting"
    assert theirs.claim() == []
    got = mine.claim()
    assert [b["job_id"] for b in got] == [job["id"]] and got[0]["env"] == SECRET
    assert buckets_of(hub, theirs.id) == 0


def test_untargeted_and_attracting_jobs_stay_home(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    b_admin = world.user("B", permissions.ORG_ADMIN)["token"]
    mine = world.agent("A", code="render-a1", lanes=4)
    world.ok("PATCH", f"/client/{mine.id}", {"tags": ["gpu"]})
    # B's agent reports the code A targets, carries A's tag and stands at A's site
    theirs = world.agent("B", code="render-a2", lanes=4)
    world.ok("PATCH", f"/client/{theirs.id}", {"tags": ["gpu"]}, b_admin)
    site = world.ok("POST", "/site", {"name": unique("hq")})
    for agent in (mine, theirs):
        world.ok("PATCH", f"/client/{agent.id}", {"site": site["id"]})

    jobs = [world.compute_job(ann, compute={"env": SECRET}),
            world.compute_job(ann, compute={"env": SECRET,
                                                         "clients": ["code:render-a*"]}),
            world.compute_job(ann, compute={"env": SECRET, "clients": ["tag:gpu"]}),
            world.compute_job(ann, compute={"env": SECRET,
                                                         "clients": [f"site:{site['name']}"]})]
    assert theirs.claim() == []
    assert buckets_of(hub, theirs.id) == 0
    got = {b["job_id"] for b in mine.claim()}
    assert got == {j["id"] for j in jobs}
    # and B's own jobs are none of A's agent's business, nor A's of B's
    b_job = world.compute_job(world.user("B", permissions.RESEARCHER)["token"])
    assert mine.claim() == []  # lanes busy anyway: a fresh agent of A asks
    assert world.agent("A").claim() == []
    assert [b["job_id"] for b in theirs.claim()] == [b_job["id"]]


def test_a_collaboration_job_runs_on_its_nodes_only(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    b_private = world.agent("B")  # B's own node: not the collaboration's
    c_agent = world.agent("C")
    b_shared = world.agent("B", shared=True)
    job = world.compute_job(ann, collaboration=world.collab["name"])
    assert b_private.claim() == [] and c_agent.claim() == []
    assert [b["job_id"] for b in b_shared.claim()] == [job["id"]]
    assert buckets_of(hub, b_private.id) == 0 and buckets_of(hub, c_agent.id) == 0
    # a collaboration A is not in is one it cannot name (as one that does not exist)
    other = world.ok("POST", "/collaboration", {"name": unique("BC"), "organizations": [
        world.org["B"]["id"], world.org["C"]["id"]]})
    for name in (other["name"], unique("nowhere")):
        status, body = world.call("POST", "/job", {"compute": {"command": ["true"], "items": "1"},
                                                   "collaboration": name}, ann)
        assert status == 422 and body["error"]["code"] == "not_a_member", body
        assert name in body["error"]["message"]


def test_an_agent_with_no_lanes_takes_no_compute_work(
        hub: Hub, start_agent: Callable[..., Agent]) -> None:
    world = World(hub)
    node = world.node("A")
    agent = start_agent(hub, node["api_key"], lanes=0)
    client_id = wait_for(lambda: agent.status()["client_id"], what="agent enrolled")
    assert agent.status()["lanes"]["count"] == 0
    lanes = world.ok("POST", "/find", {"query": f"Client where parent={client_id}"})["result"]
    assert lanes == []
    job = world.compute_job(world.user("A", permissions.RESEARCHER)["token"], items="1-3")
    # the agent claims transfers all along; its organization's job stays queued
    wait_for(lambda: agent.status()["checkins"] >= 3, what="a few check-ins")
    assert buckets_of(hub, client_id) == 0
    assert {t["status"] for t in world.tasks(job["id"])} == {"queued"}
