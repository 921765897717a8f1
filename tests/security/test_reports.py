"""Finding 2: an agent cannot spend (and so drop) another agent's report keys.

B's agent holds a bucket of its own and knows A's bucket and task ids (they are visible
through a shared collaboration). It reports its own task under the keys A's agent will
use, and reports A's task in A's bucket. A's real reports must then be applied once, as
if B had said nothing: A's task ends ``done`` with no attempt spent.
"""

from __future__ import annotations

from hub import permissions
from tests.helpers import Hub, db_query
from tests.security.world import World, task_report


def test_foreign_report_keys_spend_nothing(hub: Hub) -> None:
    world = World(hub)
    a_agent = world.agent("A", shared=True)
    b_agent = world.agent("B", shared=True)
    # a job of A in the collaboration (B's node could see its tasks), and one of B's own
    a_job = world.compute_job(world.user("A", permissions.RESEARCHER)["token"],
                              collaboration=world.collab["name"])
    [a_bucket] = a_agent.claim()
    b_job = world.compute_job(world.user("B", permissions.RESEARCHER)["token"])
    [b_bucket] = b_agent.claim()
    a_task, b_task = a_bucket["tasks"][0]["id"], b_bucket["tasks"][0]["id"]
    a_keys = (f"{a_bucket['id']}/{a_task}/start", f"{a_bucket['id']}/{a_task}/end",
              f"{a_bucket['id']}/end")

    # B reports its own task under A's keys: applied to B's task, spending none of A's
    results = b_agent.report(
        task_report(a_keys[0], b_bucket["id"], b_task, "started"),
        task_report(a_keys[1], b_bucket["id"], b_task, "done"))
    assert [r["outcome"] for r in results] == ["applied", "applied"]
    # B reports A's task in A's bucket, under A's keys: refused, before the keys count
    results = b_agent.report(
        task_report(a_keys[1], a_bucket["id"], a_task, "failed", message="sabotage"),
        {"kind": "bucket", "key": a_keys[2], "bucket_id": a_bucket["id"],
         "started": "2026-12-05T12:00:00Z", "ended": "2026-12-05T12:00:01Z"})
    assert [r["outcome"] for r in results] == ["refused", "refused"]
    assert all("no such bucket leased to this agent" in r["reason"] for r in results)
    # nothing of A's changed: its task still runs, with no attempt spent
    row = db_query(hub.database, "SELECT status, attempts, message FROM tasks WHERE id = ?",
                   a_task)[0]
    assert row[0] in ("booting", "executing") and row[1] == 0 and row[2] == "", row

    # A's real reports are applied, once
    results = a_agent.report(
        task_report(a_keys[0], a_bucket["id"], a_task, "started"),
        task_report(a_keys[1], a_bucket["id"], a_task, "done"),
        {"kind": "bucket", "key": a_keys[2], "bucket_id": a_bucket["id"],
         "started": "2026-12-05T12:00:00Z", "ended": "2026-12-05T12:00:01Z"})
    assert [r["outcome"] for r in results] == ["applied"] * 3
    again = a_agent.report(task_report(a_keys[1], a_bucket["id"], a_task, "done"))
    assert again[0]["outcome"] == "duplicate"
    a_record = world.ok("GET", f"/job/{a_job['id']}")
    assert a_record["status"] == "done" and a_record["counts"] == {"done": 1}
    row = db_query(hub.database, "SELECT status, attempts FROM tasks WHERE id = ?", a_task)[0]
    assert row == ("done", 0)
    assert world.ok("GET", f"/job/{b_job['id']}")["counts"] == {"done": 1}
    # each agent's keys are its own, in the buckets it names
    keys = db_query(hub.database, "SELECT client_id, bucket_id, key FROM report_keys "
                    "WHERE key = ?", a_keys[1])
    assert sorted(keys) == sorted([(a_agent.id, a_bucket["id"], a_keys[1]),
                                   (b_agent.id, b_bucket["id"], a_keys[1])])
    assert world.ok("GET", "/refusals")["refusals"].get("report", 0) >= 2
