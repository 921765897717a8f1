"""/metrics end to end: a real job through a real hub and a real agent, then the hub's
figures read back against what its API says of the same records, and both pages (hub
and agent) checked by promtool."""

from __future__ import annotations

import urllib.request
from collections import Counter
from typing import Any

from hub import Session
from tests.helpers import ROOT_PASSWORD, Hub, wait_for
from tests.promtool import check_metrics, samples, value

TOKEN = "metrics-token-0123456789abcdef"


def scrape(url: str, token: str | None = None) -> bytes:
    request = urllib.request.Request(url + "/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        return bytes(answer.read())


def by_label(page: bytes, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples(page).items() if n == name}


def test_the_hubs_metrics_match_its_records_after_a_job(start_hub, start_agent) -> None:
    hub: Hub = start_hub(metrics_token=TOKEN)
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    agent = start_agent(hub, session.create("Node", {"name": "render01"})["api_key"], lanes=2)
    agent_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    # 10 tasks in buckets of 2, items 3 and 7 fail for good (no retries)
    job = session.create("Job", {"code": "frames", "compute": {
        "command": ["sh", "-c", 'test "$FERRY_ITEM" != 3 && test "$FERRY_ITEM" != 7'],
        "items": "1-10", "bucket_size": 2, "retries": 0}})

    def ended() -> dict[str, Any] | None:
        record = session.get("Job", job["id"])
        return record if record["status"] in ("done", "failed") else None

    record = wait_for(ended, timeout=120, what="the job to end")
    assert record["status"] == "failed" and record["counts"] == {"done": 8, "failed": 2}

    # the counters are added once each report's request is answered: wait for the last
    def settled() -> bytes | None:
        page = scrape(hub.url, TOKEN)
        done = value(page, "ferry_hub_tasks_finished_total") + \
            value(page, "ferry_hub_tasks_failed_total")
        return page if done == 10 and value(page, "ferry_hub_tasks", status="failed") == 2 \
            else None

    page = wait_for(settled, what="the hub's metrics to count every task")
    check_metrics(page)
    # tasks and jobs by status: what the API says of the same records
    tasks = session.find(f"task WHERE job.id={job['id']}")
    assert {s: n for s, n in by_label(page, "ferry_hub_tasks", "status").items() if n} == \
        dict(Counter(t["status"] for t in tasks)) == record["counts"]
    jobs = session.find("Job")  # the ones that ended within the hour too
    assert {s: n for s, n in by_label(page, "ferry_hub_jobs", "status").items() if n} == \
        dict(Counter(j["status"] for j in jobs)) == {"failed": 1}
    # what happened to them: each task leased once, 8 finished, 2 failed, none again
    assert value(page, "ferry_hub_tasks_leased_total") == 10
    assert value(page, "ferry_hub_tasks_finished_total") == 8
    assert value(page, "ferry_hub_tasks_failed_total") == 2
    assert value(page, "ferry_hub_tasks_requeued_total") == 0
    assert value(page, "ferry_hub_leases_expired_total") == 0
    assert value(page, "ferry_hub_report_items_total", outcome="applied") >= 10 + 5
    assert value(page, "ferry_hub_report_items_total", outcome="refused") == 0
    assert value(page, "ferry_hub_report_batches_total") >= 1
    assert value(page, "ferry_hub_claim_seconds_count") >= 5  # one transaction per bucket
    assert value(page, "ferry_hub_checkin_seconds_count") >= 1
    # clients by type and status: the agent and its two lanes, online, as the API says
    clients = session.find("Client")
    assert {c["id"] for c in clients} >= {agent_id}
    want = Counter((c["type_hr"].replace(" ", "_"), c["status"]) for c in clients)
    got = {(dict(labels)["type"], dict(labels)["status"]): v
           for (n, labels), v in samples(page).items() if n == "ferry_hub_clients" and v}
    assert got == dict(want)  # a user-level agent (type 2) and its lanes
    assert got == {("user_server", "online"): 1, ("compute_lane", "online"): 2}
    assert value(page, "ferry_hub_db_pool_checked_out") >= 0

    # the agent's page, from the real process: its runs, checked by promtool too
    agent_page = scrape(agent.status_url)
    check_metrics(agent_page)
    assert value(agent_page, "ferry_agent_tasks_run_total") == 10
    assert value(agent_page, "ferry_agent_tasks_failed_total") == 2
    assert value(agent_page, "ferry_agent_lanes") == 2
    assert value(agent_page, "ferry_agent_transfer_received_bytes_total") == 0
    # every metric of both pages is in docs/METRICS.md
    from tests.hub.test_metrics_docs import base, documented
    shown = {base(name) for name, _ in {**samples(page), **samples(agent_page)}
             if name.startswith("ferry_")}
    assert shown - set(documented()) == set()


def test_an_expired_lease_is_counted_with_its_tasks(start_hub) -> None:
    """An agent that claims a bucket and is never heard of again: the sweeper expires the
    lease, its tasks go back to the queue (retries left) or fail (none left), and the
    page counts the lease and each task's end."""
    from tests.security.world import World

    hub: Hub = start_hub(lease_seconds=2, heartbeat_interval=1, metrics_token=TOKEN)
    world = World(hub)
    silent = world.agent("A", lanes=3)
    token = world.user("A", "researcher")["token"]
    world.compute_job(token, items="1-2", compute={"retries": 1})
    world.compute_job(token, items="1", compute={"retries": 0})
    leased = sum(len(b["tasks"]) for b in silent.claim())
    assert leased == 3
    def expired() -> bytes | None:
        page = scrape(hub.url, TOKEN)
        return page if value(page, "ferry_hub_leases_expired_total") >= 3 else None

    page = wait_for(expired, timeout=60, what="the sweeper to expire the three leases")
    assert value(page, "ferry_hub_leases_expired_total") == 3
    assert value(page, "ferry_hub_tasks_leased_total") == 3
    assert value(page, "ferry_hub_tasks_requeued_total") == 2  # the job with a retry left
    assert value(page, "ferry_hub_tasks_failed_total") == 1  # the job with none
    check_metrics(page)
