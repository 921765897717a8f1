"""Queues against a real hub (issue 18): records, jobs in them, claim order, pausing.

Agents are driven by hand (``RawAgent``): each claim of one lane takes the one bucket the
hub thinks best, so the order of claims is the dispatch order.
"""

from __future__ import annotations

from typing import Any

from hub import permissions
from tests.helpers import Hub, db_query
from tests.security.world import RawAgent, World


def jobs_in(hub: Hub) -> int:
    return int(db_query(hub.database, "SELECT count(*) FROM jobs")[0][0])


def claim_order(agent: RawAgent, n: int) -> list[str]:
    """The jobs of the next ``n`` buckets, one claim of one lane each."""
    order = []
    for _ in range(n):
        buckets = agent.claim(lanes=1)
        assert len(buckets) <= 1
        order.extend(b["job_id"] for b in buckets)
    return order


def beat(agent: RawAgent, bucket: str) -> dict[str, Any]:
    status, answer = agent.call("POST", "/agent/heartbeat", {"buckets": [bucket]})
    assert status == 200, answer
    return dict(answer)


def test_queues_are_records_that_jobs_wait_in(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    comp = world.ok("POST", "/queue", {"name": "comp", "priority": 700}, admin)
    assert (comp["name"], comp["priority"], comp["status"], comp["organization"]) == \
        ("comp", 700, "open", world.org["A"]["id"])
    status, answer = world.call("POST", "/queue", {"name": "comp"}, admin)
    assert (status, answer["error"]["code"]) == (409, "duplicate")

    job = world.compute_job(ann, queue="comp")
    assert (job["uri"], job["queue"], job["parent"], job["parent_hr"]) == \
        ("comp", "comp", comp["id"], "queue:comp")
    plain = world.compute_job(ann)  # the default queue is made when first needed
    found = world.ok("POST", "/find", {"query": "Queue where name=default"}, ann)["result"]
    assert [q["organization"] for q in found] == [world.org["A"]["id"]]
    assert (plain["uri"], plain["parent"], plain["parent_hr"]) == \
        ("default", found[0]["id"], "queue:default")
    for query in ("Job where queue=comp", f"Job where queue={comp['id']}", "Job where uri=comp"):
        listed = world.ok("POST", "/find", {"query": query}, ann)["result"]
        assert [j["id"] for j in listed] == [job["id"]], query

    # a queue with jobs stays; a job moves to another queue of its organization
    status, answer = world.call("DELETE", f"/queue/{comp['id']}", token=admin)
    assert (status, answer["error"]["code"]) == (409, "in_use")
    moved = world.ok("PATCH", f"/job/{job['id']}", {"queue": "default"}, ann)
    assert (moved["uri"], moved["parent"]) == ("default", found[0]["id"])
    world.ok("DELETE", f"/queue/{comp['id']}", token=admin)
    assert world.ok("POST", "/find", {"query": "Queue where name=comp"}, admin)["result"] == []

    # renaming a queue renames its jobs' uri
    world.ok("PATCH", f"/queue/{found[0]['id']}", {"name": "main"}, admin)
    assert world.ok("GET", f"/job/{plain['id']}", token=ann)["uri"] == "main"


def test_bad_queue_input_is_422_naming_the_field_and_creates_nothing(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    before = jobs_in(hub)
    for queue in ("nope", "", 5, None):
        status, answer = world.call("POST", "/job", {
            "compute": {"command": ["true"], "items": "1"}, "queue": queue}, ann)
        assert status == 422 and answer["error"]["field"] == "queue", (queue, answer)
        if queue == "nope":
            assert answer["error"]["code"] == "unknown_queue"
    job = world.compute_job(ann)
    status, answer = world.call("PATCH", f"/job/{job['id']}", {"queue": "nope"}, ann)
    assert (status, answer["error"]["field"]) == (422, "queue"), answer
    assert world.ok("GET", f"/job/{job['id']}", token=ann)["uri"] == "default"
    assert jobs_in(hub) == before + 1
    queues = int(db_query(hub.database, "SELECT count(*) FROM queues")[0][0])
    for body, field in (({"name": "q", "priority": 0}, "priority"),
                        ({"name": "q", "priority": "high"}, "priority"),
                        ({"name": "q", "status": "closed"}, "status"),
                        ({"name": "  "}, "name"), ({"priority": 5}, "name"),
                        ({"name": "q", "size": 5}, "size")):
        status, answer = world.call("POST", "/queue", body, admin)
        assert status == 422 and answer["error"]["field"] == field, (body, answer)
    assert int(db_query(hub.database, "SELECT count(*) FROM queues")[0][0]) == queues
    status, answer = world.call("POST", "/find", {"query": "Queue where status=closed"}, admin)
    assert status in {400, 422}, answer


def test_claims_follow_queue_priority_then_job_priority_then_age(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    agent = world.agent("A")
    world.ok("POST", "/queue", {"name": "low", "priority": 100}, admin)
    world.ok("POST", "/queue", {"name": "high", "priority": 900}, admin)
    low_urgent = world.compute_job(ann, queue="low", priority=1000)
    default_old = world.compute_job(ann, priority=500)
    default_new = world.compute_job(ann, priority=500)
    default_urgent = world.compute_job(ann, priority=900)
    high_lazy = world.compute_job(ann, queue="high", priority=1)
    assert claim_order(agent, 6) == [high_lazy["id"], default_urgent["id"],
                                     default_old["id"], default_new["id"], low_urgent["id"]]


def test_a_paused_queue_holds_its_jobs_until_it_opens(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    agent = world.agent("A")
    comp = world.ok("POST", "/queue", {"name": "comp", "priority": 900}, admin)
    held = world.compute_job(ann, queue="comp", items="1-3")
    other = world.compute_job(ann, items="1")

    running = agent.claim(lanes=1)  # comp's first bucket is leased before the pause
    assert [b["job_id"] for b in running] == [held["id"]]
    paused = world.ok("PATCH", f"/queue/{comp['id']}", {"status": "paused"}, admin)
    assert paused["status"] == "paused"
    # what runs is told to start nothing new (as for a paused job); nothing new is leased
    assert beat(agent, running[0]["id"])["paused"] == [held["id"]]
    assert claim_order(agent, 2) == [other["id"]]
    assert world.ok("GET", f"/job/{held['id']}", token=ann)["counts"].get("queued") == 2

    world.ok("PATCH", f"/queue/{comp['id']}", {"status": "open"}, admin)
    assert beat(agent, running[0]["id"])["paused"] == []
    assert claim_order(agent, 3) == [held["id"], held["id"]]
