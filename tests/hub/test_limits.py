"""Limits and ``max_lanes`` against a real hub (issue 18): records, how many buckets a
claim leases, the jobs it goes on to when the best one is held back, a lease lost or ended
freeing its slot, ``status_reason``, and bad input.

Agents are driven by hand (``RawAgent``): what a claim leases is what the hub decided.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hub import permissions
from tests.helpers import Hub, db_query, wait_for
from tests.security.world import RawAgent, World


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def end_bucket(agent: RawAgent, bucket: dict[str, Any]) -> None:
    """The agent says the bucket ran to its end (its lane is free again)."""
    results = agent.report({"kind": "bucket", "key": f"{bucket['id']}/end",
                            "bucket_id": bucket["id"], "started": "2026-12-05T12:00:00Z",
                            "ended": "2026-12-05T12:00:01Z"})
    assert results[0]["outcome"] == "applied", results


def jobs_of(buckets: list[dict[str, Any]]) -> list[str]:
    return [b["job_id"] for b in buckets]


def test_limits_are_records_with_their_use(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    nuke = world.ok("POST", "/limit", {"name": "nuke", "max": 2}, admin)
    assert (nuke["name"], nuke["max"], nuke["in_use"], nuke["organization"]) == \
        ("nuke", 2, 0, world.org["A"]["id"])
    status, answer = world.call("POST", "/limit", {"name": "nuke", "max": 5}, admin)
    assert (status, answer["error"]["code"]) == (409, "duplicate")

    job = world.compute_job(ann, items="1-5", limits=["nuke"], max_lanes=3)
    assert (job["limits"], job["max_lanes"]) == (["nuke"], 3)
    assert (world.compute_job(ann)["limits"], world.compute_job(ann)["max_lanes"]) == ([], None)
    agent = world.agent("A", lanes=4)
    assert jobs_of(agent.claim(lanes=1)) == [job["id"]]
    found = world.ok("POST", "/find", {"query": "Limit where name=nuke"}, ann)["result"]
    assert [(x["id"], x["in_use"]) for x in found] == [(nuke["id"], 1)]
    assert world.ok("POST", "/find", {"query": "Limit where max>2"}, ann)["result"] == []

    changed = world.ok("PATCH", f"/limit/{nuke['id']}", {"max": 4, "name": "nuke13"}, admin)
    assert (changed["name"], changed["max"], changed["in_use"]) == ("nuke13", 4, 1)
    assert world.ok("GET", f"/job/{job['id']}", token=ann)["limits"] == ["nuke13"]
    # a limit held by a job not finished stays; once it ends, the limit may go
    status, answer = world.call("DELETE", f"/limit/{nuke['id']}", token=admin)
    assert (status, answer["error"]["code"]) == (409, "in_use")
    world.ok("PATCH", f"/job/{job['id']}", {"status": "aborted"}, ann)
    wait_for(lambda: world.ok("GET", f"/job/{job['id']}", token=ann)["finished"],
             what="the aborted job finished")
    world.ok("DELETE", f"/limit/{nuke['id']}", token=admin)
    assert world.ok("GET", f"/job/{job['id']}", token=ann)["limits"] == []


def test_a_limit_caps_buckets_across_jobs_and_others_run_meanwhile(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    nuke = world.ok("POST", "/limit", {"name": "nuke", "max": 3}, admin)
    world.ok("POST", "/limit", {"name": "arnold", "max": 100}, admin)
    first = world.compute_job(ann, items="1-10", priority=900, limits=["nuke"])
    second = world.compute_job(ann, items="1-10", priority=800, limits=["nuke", "arnold"])
    plain = world.compute_job(ann, items="1-10", priority=1)
    agent = world.agent("A", lanes=4)
    other = world.agent("A", lanes=4)

    # the best job takes the limit's three slots; the fourth lane goes on to the plain job
    got = agent.claim()
    assert jobs_of(got) == [first["id"]] * 3 + [plain["id"]]
    # the second job shares the limit: another agent gets none of it, only plain work
    assert jobs_of(other.claim()) == [plain["id"]] * 4
    assert world.ok("GET", f"/limit/{nuke['id']}", token=ann)["in_use"] == 3

    # a bucket that ends frees its slot: the next goes to the best job that may take it
    # (its task, never reported, is queued again: the first job has 8 queued, 2 leased)
    end_bucket(agent, got[0])
    assert jobs_of(other.claim(lanes=2)) == [first["id"], plain["id"]]
    # a raised max lets more run at once, the lower job's too once the first is leased out
    world.ok("PATCH", f"/limit/{nuke['id']}", {"max": 12}, admin)
    more = agent.claim() + other.claim()
    assert jobs_of(more) == [first["id"]] * 7 + [second["id"]]
    assert world.ok("GET", f"/limit/{nuke['id']}", token=ann)["in_use"] == 3 + 8
    # max 0 holds every job that names it; the plain job runs on
    world.ok("PATCH", f"/limit/{nuke['id']}", {"max": 0}, admin)
    fresh = world.agent("A", lanes=4)
    assert set(jobs_of(fresh.claim())) <= {plain["id"]}


def test_max_lanes_caps_a_job_and_the_claim_goes_on(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    capped = world.compute_job(ann, items="1-10", priority=900, max_lanes=2,
                               compute={"bucket_size": 2})
    plain = world.compute_job(ann, items="1-10", priority=1)
    agent = world.agent("A", lanes=3)
    other = world.agent("A", lanes=3)
    got = agent.claim()
    assert jobs_of(got) == [capped["id"], capped["id"], plain["id"]]
    assert [len(b["tasks"]) for b in got[:2]] == [2, 2]  # a lane, whatever its bucket's size
    assert capped["id"] not in jobs_of(other.claim())
    end_bucket(agent, got[1])
    assert jobs_of(other.claim(lanes=1)) == [capped["id"]]


def test_a_lost_lease_frees_its_slot(start_hub) -> None:
    hub = start_hub(lease_seconds=2, heartbeat_interval=0.5)
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    world.ok("POST", "/limit", {"name": "nuke", "max": 1}, admin)
    job = world.compute_job(ann, items="1-3", limits=["nuke"])
    gone, alive = world.agent("A", lanes=2), world.agent("A", lanes=2)
    assert jobs_of(gone.claim()) == [job["id"]]  # and it never heartbeats
    assert alive.claim() == []
    # once the lease expires, its slot is free: the job runs on the other agent
    taken = wait_for(alive.claim, timeout=30, what="the slot freed by the lost lease")
    assert jobs_of(taken) == [job["id"]]


def test_status_reason_says_what_a_job_waits_for(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    nuke = world.ok("POST", "/limit", {"name": "nuke", "max": 1}, admin)
    limited = world.compute_job(ann, items="1-3", limits=["nuke"])
    capped = world.compute_job(ann, items="1-3", max_lanes=1)
    agent = world.agent("A", lanes=4)
    assert sorted(jobs_of(agent.claim())) == sorted([limited["id"], capped["id"]])

    def reason(job: dict[str, Any]) -> Any:
        return world.ok("GET", f"/job/{job['id']}", token=ann)["status_reason"]

    wait_for(lambda: reason(limited) == "waiting for limit 'nuke' (1 of 1 in use)",
             what="the limit's reason")
    wait_for(lambda: reason(capped) == "waiting for max_lanes (1 of 1 in use)",
             what="the max_lanes reason")
    world.ok("PATCH", f"/limit/{nuke['id']}", {"max": 5}, admin)
    wait_for(lambda: reason(limited) is None, what="the reason cleared")


def test_bad_limit_input_is_422_naming_the_field_and_creates_nothing(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    world.ok("POST", "/limit", {"name": "nuke", "max": 1}, admin)
    jobs, limits = count(hub, "jobs"), count(hub, "limits")
    for extra, field in (({"limits": ["nuke", "nope"]}, "limits[1]"),
                         ({"limits": [""]}, "limits[0]"), ({"limits": "nuke"}, "limits"),
                         ({"limits": [5]}, "limits[0]"), ({"max_lanes": 0}, "max_lanes"),
                         ({"max_lanes": -2}, "max_lanes"), ({"max_lanes": "x"}, "max_lanes"),
                         ({"max_lanes": 1.5}, "max_lanes")):
        status, answer = world.call("POST", "/job", {
            "compute": {"command": ["true"], "items": "1"}, **extra}, ann)
        assert status == 422 and answer["error"]["field"] == field, (extra, answer)
        if field == "limits[1]":
            assert answer["error"]["code"] == "unknown_limit"
    for body, field in (({"name": "q", "max": -1}, "max"), ({"name": "q", "max": "4"}, "max"),
                        ({"name": "q", "max": 2.5}, "max"), ({"name": "q", "max": True}, "max"),
                        ({"name": "q"}, "max"), ({"max": 4}, "name"),
                        ({"name": " ", "max": 4}, "name"), ({"name": "q", "max": 4, "in_use": 0},
                                                            "in_use")):
        status, answer = world.call("POST", "/limit", body, admin)
        assert status == 422 and answer["error"]["field"] == field, (body, answer)
    assert (count(hub, "jobs"), count(hub, "limits")) == (jobs, limits)
    assert count(hub, "job_limits") == 0


@pytest.mark.one_round("its hubs are on PostgreSQL in both rounds")
def test_claims_racing_through_two_hubs_never_pass_a_limit(start_hub, postgres_url: str
                                                           ) -> None:
    """Many agents claim at the same moment, half through each of two hub processes on one
    PostgreSQL database: the limit's slots and the job's max_lanes are never over-leased."""
    settings = {"uri": postgres_url, "heartbeat_interval": 0.5, "lease_seconds": 30}
    hubs = [start_hub(**settings), start_hub(**settings)]
    world = World(hubs[0])
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    world.ok("POST", "/limit", {"name": "nuke", "max": 3}, admin)
    limited = world.compute_job(ann, items="1-200", limits=["nuke"], priority=900)
    capped = world.compute_job(ann, items="1-200", max_lanes=2, priority=800)
    agents = [world.agent("A", lanes=4) for _ in range(8)]
    for n, agent in enumerate(agents):
        agent.hub = hubs[n % 2]  # its claims go to the one hub or the other

    for _ in range(3):  # rounds: all claim at once, then every bucket ends
        barrier = threading.Barrier(len(agents))

        def claim(agent: RawAgent, barrier: threading.Barrier = barrier
                  ) -> list[dict[str, Any]]:
            barrier.wait()
            return agent.claim()

        with ThreadPoolExecutor(len(agents)) as pool:
            got = list(pool.map(claim, agents))
        leased = [b["job_id"] for buckets in got for b in buckets]
        assert leased.count(limited["id"]) == 3, leased
        assert leased.count(capped["id"]) == 2, leased
        for agent, buckets in zip(agents, got, strict=True):
            for bucket in buckets:
                end_bucket(agent, bucket)
