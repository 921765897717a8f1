"""Node filters in compute targets against a real hub: agents enrolled through the API
check in with the figures each filter kind compares, and only the agents a job's
targets match are handed its buckets; a real agent process runs a filtered job; a job
no agent matches says so in ``status_reason`` until one that matches appears."""

from __future__ import annotations

import socket
from typing import Any

from hub import Session, permissions
from tests.e2e.test_compute import job_done
from tests.helpers import Hub, wait_for
from tests.security.world import RawAgent, World

GiB = 2**30


def check_in(agent: RawAgent, *, os: str = "linux", cores: int = 8, ram: int = 16 * GiB,
             gpus: int = 0, code: str | None = None) -> None:
    metrics: dict[str, Any] = {"c": cores, "l": 5.0, "m": 20.0, "mpf": ram // 2, "mpt": ram,
                               "mvf": 0, "mvt": 0}
    if gpus:
        metrics["gpus"] = [{"index": n, "name": "RTX"} for n in range(gpus)]
    body: dict[str, Any] = {"metrics": metrics, "os": os}
    if code:
        body["code"] = code
    status, answer = agent.call("POST", "/agent/checkin", body)
    assert status == 200, answer


def fleet(world: World) -> dict[str, RawAgent]:
    """A's agents, each different, and B's agent that has everything A's jobs ask for."""
    agents = {name: world.agent("A", code=name) for name in
              ("render-big", "render-small", "MacStudio", "ws-win", "silent")}
    check_in(agents["render-big"], cores=32, ram=128 * GiB, gpus=2)
    check_in(agents["render-small"], cores=4, ram=8 * 10**9)
    world.ok("PATCH", f"/client/{agents['render-small'].id}", {"tags": ["slow"]})
    check_in(agents["MacStudio"], os="mac", cores=10, ram=32 * GiB)
    check_in(agents["ws-win"], os="windows", cores=16, ram=64 * 10**9, gpus=1)
    # "silent" never checks in: it has no figures to compare
    agents["B"] = world.agent("B", code="render-b")
    check_in(agents["B"], cores=256, ram=2048 * GiB, gpus=8)
    return agents


def takers(world: World, token: str, agents: dict[str, RawAgent], *targets: str) -> set[str]:
    """The agents that get a bucket of a new job with these targets (each asks once)."""
    job = world.compute_job(token, items="1-20", compute={"clients": list(targets)})
    got = {name for name, agent in agents.items()
           if any(b["job_id"] == job["id"] for b in agent.claim())}
    world.ok("PATCH", f"/job/{job['id']}", {"status": "aborted"}, token)
    return got


def test_each_filter_kind_picks_its_agents(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    agents = fleet(world)

    def who(*targets: str) -> set[str]:
        return takers(world, ann, agents, *targets)

    assert who("ram:>60GB") == {"render-big", "ws-win"}
    assert who("ram:<16GiB") == {"render-small"}
    assert who("cores:>=12") == {"render-big", "ws-win"}
    assert who("gpus:>=1") == {"render-big", "ws-win"}
    assert who("gpus:0") == {"render-small", "MacStudio"}
    assert who("os:macos") == {"MacStudio"}
    assert who("os:linux", "os:windows") == {"render-big", "render-small", "ws-win"}
    assert who("hostname:render-*") == {"render-big", "render-small"}
    assert who("hostname:macstudio") == {"MacStudio"}
    assert who("!tag:slow") == {"render-big", "MacStudio", "ws-win", "silent"}
    assert who("os:linux", "cores:>=12") == {"render-big"}
    assert who("os:linux", "!gpus:>=1") == {"render-small"}
    # an agent's newest check-in decides: the small one grew
    check_in(agents["render-small"], cores=64, ram=256 * GiB)
    assert who("ram:>60GB", "cores:>=64") == {"render-small"}


def test_a_job_no_agent_matches_says_why_until_one_does(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    small = world.agent("A", code="render-small")
    check_in(small, cores=4, ram=31_200_000_000)
    job = world.compute_job(ann, compute={"clients": ["ram:>60GB"]})
    assert job["status"] == "waiting"
    assert job["status_reason"] == \
        "no agent of this organization matches ram:>60GB (largest: 31.2 GB)"
    assert small.claim() == []
    big = world.agent("A", code="render-big")
    check_in(big, ram=64 * GiB)
    wait_for(lambda: world.ok("GET", f"/job/{job['id']}")["status_reason"] is None,
             what="the reason to clear")
    assert [b["job_id"] for b in big.claim()] == [job["id"]]
    # a job with nothing to say says nothing
    assert world.compute_job(ann, compute={"clients": ["ram:>1GB"]})["status_reason"] is None


def test_a_real_agent_runs_a_filtered_job(hub: Hub, session: Session, node_key,
                                          start_agent) -> None:
    agent = start_agent(hub, node_key("filtered01")["api_key"], lanes=1)
    agent_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    wait_for(lambda: session.get("Client", agent_id)["metrics"], what="a check-in")
    job = session.create("Job", {"compute": {"command": ["true"], "items": "1-3", "clients": [
        "os:linux|macos|windows", "cores:>=1", "ram:>1MB", "gpus:>=0",
        f"hostname:{socket.gethostname().upper()}", "!tag:slow"]}})
    assert job["status_reason"] is None
    done = wait_for(lambda: job_done(session, job["id"]), timeout=60, what="job to end")
    assert done["status"] == "done" and done["counts"] == {"done": 3}
    never = session.create("Job", {"compute": {"command": ["true"], "items": "1",
                                               "clients": ["cores:>100000"]}})
    assert never["status_reason"].startswith("no agent of this organization matches "
                                             "cores:>100000 (largest: ")
    wait_for(lambda: agent.status()["checkins"] >= 2, what="another check-in")
    assert session.get("Job", never["id"])["counts"] == {"queued": 1}
