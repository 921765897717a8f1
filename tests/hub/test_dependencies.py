"""Jobs that wait for other jobs against a real hub (issue 18): ``after``, ``after_items``,
``after_failed``, and the 422s of bad input.

Agents are driven by hand (``RawAgent``): what a claim hands out, and when, is the
dispatch order; a task ends when the test reports it.
"""

from __future__ import annotations

from itertools import count
from typing import Any

from hub import Session, permissions
from tests.helpers import Hub, db_query, http, wait_for
from tests.hub.test_transfer_leases import enroll
from tests.security.world import RawAgent, World, task_report

_keys = count()


def jobs_in(hub: Hub) -> int:
    return int(db_query(hub.database, "SELECT count(*) FROM jobs")[0][0])


def finish(agent: RawAgent, bucket: dict[str, Any], event: str = "done") -> None:
    """Every task of ``bucket`` starts and ends with ``event``, and so does the bucket."""
    items = []
    for task in bucket["tasks"]:
        items.append(task_report(f"s{next(_keys)}", bucket["id"], task["id"], "started"))
        items.append(task_report(f"e{next(_keys)}", bucket["id"], task["id"], event))
    items.append({"kind": "bucket", "key": f"b{next(_keys)}", "bucket_id": bucket["id"],
                  "started": "2026-12-05T12:00:00Z", "ended": "2026-12-05T12:00:01Z"})
    assert {r["outcome"] for r in agent.report(*items)} == {"applied"}


def taken(agent: RawAgent) -> list[tuple[str, str]]:
    """(job, item) of each task the agent's lanes are handed now."""
    return [(b["job_id"], t["item"]) for b in agent.claim() for t in b["tasks"]]


def job(world: World, job_id: str) -> dict[str, Any]:
    return dict(world.ok("GET", f"/job/{job_id}"))


def test_a_job_starts_once_the_jobs_it_waits_for_are_done(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    agent = world.agent("A", lanes=2)
    first = world.compute_job(ann, items="1")
    second = world.compute_job(ann, items="1")
    after = world.compute_job(ann, items="1-2", priority=1000, after=[first["id"],
                                                                      second["id"]])
    assert (after["after"], after["after_items"], after["after_failed"]) == \
        ([first["id"], second["id"]], None, "fail")
    assert after["after_status"] == {first["id"]: "waiting", second["id"]: "waiting"}
    assert after["status"] == "waiting"
    assert after["status_reason"] == f"waiting for jobs {first['id']}, {second['id']}"

    # its priority is the highest, but the jobs it waits for are all that is handed out
    buckets = agent.claim()
    assert sorted(b["job_id"] for b in buckets) == sorted([first["id"], second["id"]])
    finish(agent, buckets[0])
    assert taken(agent) == []  # one of the two is done: still nothing of it
    finish(agent, buckets[1])
    assert job(world, after["id"])["after_status"] == {first["id"]: "done",
                                                       second["id"]: "done"}
    assert sorted(taken(agent)) == [(after["id"], "1"), (after["id"], "2")]
    wait_for(lambda: job(world, after["id"])["status_reason"] is None,
             what="the reason to clear")


def test_item_n_starts_once_item_n_of_the_other_job_is_done(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    agent = world.agent("A", lanes=1)
    render = world.compute_job(ann, items="1-3")
    comp = world.compute_job(ann, items="1-4", priority=1000, after_items=render["id"])
    assert (comp["after"], comp["after_items"]) == ([], render["id"])
    assert comp["status_reason"] == f"waiting for items of job {render['id']}"

    def one() -> dict[str, Any]:
        buckets = agent.claim()
        assert len(buckets) == 1
        return buckets[0]

    # the best job (comp) has no task to take yet: the claim goes on to render's
    bucket = one()
    assert (bucket["job_id"], bucket["tasks"][0]["item"]) == (render["id"], "1")
    finish(agent, bucket)
    bucket = one()  # comp's item 1 now comes first: its job has the higher priority
    assert (bucket["job_id"], bucket["tasks"][0]["item"]) == (comp["id"], "1")
    finish(agent, bucket)
    for item in ("2", "3"):  # render's next, then comp's of the same item
        bucket = one()
        assert (bucket["job_id"], bucket["tasks"][0]["item"]) == (render["id"], item)
        finish(agent, bucket)
        bucket = one()
        assert (bucket["job_id"], bucket["tasks"][0]["item"]) == (comp["id"], item)
        finish(agent, bucket)
    # item 4, which render does not have, waited for all of render; render is done now
    bucket = one()
    assert (bucket["job_id"], bucket["tasks"][0]["item"]) == (comp["id"], "4")
    finish(agent, bucket)
    assert job(world, comp["id"])["status"] == "done"


def test_item_tasks_wait_while_the_other_item_fails_and_is_retried(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    agent = world.agent("A", lanes=1)
    render = world.compute_job(ann, items="1-2", compute={"retries": 0})
    comp = world.compute_job(ann, items="1-2", after_items=render["id"], after_failed="wait")
    bucket = agent.claim()[0]
    assert bucket["tasks"][0]["item"] == "1"
    finish(agent, bucket, "failed")  # render's item 1 failed: comp's item 1 waits
    bucket = agent.claim()[0]
    assert (bucket["job_id"], bucket["tasks"][0]["item"]) == (render["id"], "2")
    finish(agent, bucket)
    assert taken(agent) == [(comp["id"], "2")]
    assert job(world, render["id"])["status"] == "failed"
    wait_for(lambda: job(world, comp["id"])["status_reason"] ==
             f"waiting for job {render['id']} to be retried (it failed)", what="the reason")
    world.ok("PATCH", f"/job/{render['id']}", {"status": "waiting"}, ann)  # retried
    assert taken(agent) == [(render["id"], "1")]


def test_a_failed_job_fails_the_jobs_that_wait_for_it_or_they_wait(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    agent = world.agent("A", lanes=1)
    render = world.compute_job(ann, items="1", compute={"retries": 0})
    failing = world.compute_job(ann, items="1-2", after=[render["id"]])
    chained = world.compute_job(ann, items="1", after=[failing["id"]])  # fails in turn
    waiting = world.compute_job(ann, items="1", after=[render["id"]], after_failed="wait")
    finish(agent, agent.claim()[0], "failed")

    why = f"job {render['id']} it waits for failed"
    failed = job(world, failing["id"])
    assert (failed["status"], failed["status_reason"], failed["counts"]) == \
        ("failed", why, {"failed": 2})
    assert {t["message"] for t in world.tasks(failing["id"])} == {why}
    assert job(world, chained["id"])["status_reason"] == \
        f"job {failing['id']} it waits for failed"
    assert job(world, chained["id"])["status"] == "failed"
    held = job(world, waiting["id"])
    assert (held["status"], held["after_failed"]) == ("waiting", "wait")
    wait_for(lambda: job(world, waiting["id"])["status_reason"] ==
             f"waiting for job {render['id']} to be retried (it failed)", what="the reason")
    assert taken(agent) == []

    # resumed while what it waits for is still failed, it fails again at once
    world.ok("PATCH", f"/job/{failing['id']}", {"status": "waiting"}, ann)
    assert job(world, failing["id"])["status"] == "failed"

    # the failed job retried and done: the one that waited runs
    world.ok("PATCH", f"/job/{render['id']}", {"status": "waiting"}, ann)
    finish(agent, agent.claim()[0])
    assert taken(agent) == [(waiting["id"], "1")]
    # and one that failed with it runs when resumed
    world.ok("PATCH", f"/job/{failing['id']}", {"status": "waiting"}, ann)
    assert job(world, failing["id"])["status"] == "waiting"
    assert taken(agent) == [(failing["id"], "1")]


def test_an_aborted_or_deleted_job_fails_the_jobs_that_wait_for_it(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    aborted = world.compute_job(ann)
    after_aborted = world.compute_job(ann, after=[aborted["id"]])
    world.ok("PATCH", f"/job/{aborted['id']}", {"status": "aborted"}, ann)
    shown = job(world, after_aborted["id"])
    assert (shown["status"], shown["status_reason"]) == \
        ("failed", f"job {aborted['id']} it waits for was aborted")

    deleted = world.compute_job(ann)
    waits = world.compute_job(ann, after_items=deleted["id"], after_failed="wait")
    world.ok("DELETE", f"/job/{deleted['id']}", token=ann)
    shown = job(world, waits["id"])
    assert (shown["status"], shown["status_reason"], shown["after_items"]) == \
        ("failed", f"job {deleted['id']} it waits for was deleted", None)
    # resumed, it waits for nothing any more
    world.ok("PATCH", f"/job/{waits['id']}", {"status": "waiting"}, ann)
    assert taken(world.agent("A")) == [(waits["id"], "1")]


def test_a_new_job_naming_a_failed_job_fails_at_once(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    aborted = world.compute_job(ann)
    world.ok("PATCH", f"/job/{aborted['id']}", {"status": "aborted"}, ann)
    made = world.compute_job(ann, after=[aborted["id"]])
    assert (made["status"], made["status_reason"]) == \
        ("failed", f"job {aborted['id']} it waits for was aborted")


def test_bad_dependencies_are_422_naming_the_field_and_create_nothing(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    known = world.compute_job(ann)
    missing = "0" * 24
    before = jobs_in(hub)
    for extra, field, code in (
            ({"after": [missing]}, "after[0]", "unknown_job"),
            ({"after": [known["id"], missing]}, "after[1]", "unknown_job"),
            ({"after": [known["id"], known["id"]]}, "after[1]", "invalid_spec"),
            ({"after_items": missing}, "after_items", "unknown_job"),
            ({"after": [known["id"]], "after_items": known["id"]}, "after_items",
             "invalid_spec"),
            ({"after": known["id"]}, "after", "invalid_spec"),  # not a list
            ({"after": [5]}, "after[0]", "invalid_spec"),
            ({"after": [""]}, "after[0]", "invalid_spec"),
            ({"after": None}, "after", "invalid_spec"),
            ({"after_items": ["x"]}, "after_items", "invalid_spec"),
            ({"after_failed": "retry"}, "after_failed", "invalid_spec"),
            ({"after": ["x" * 65]}, "after[0]", "invalid_spec")):
        status, answer = world.call("POST", "/job", {
            "compute": {"command": ["true"], "items": "1"}, **extra}, ann)
        assert (status, answer["error"]["field"], answer["error"]["code"]) == \
            (422, field, code), (extra, answer)
    assert jobs_in(hub) == before
    assert int(db_query(hub.database, "SELECT count(*) FROM job_dependencies")[0][0]) == 0

    # set on creation only: a job cannot be made to wait later (so no circle can form,
    # and no job can wait for itself)
    other = world.compute_job(ann, after=[known["id"]])
    for body in ({"after": [other["id"]]}, {"after": [known["id"]]},
                 {"after_items": known["id"]}, {"after_failed": "wait"}):
        status, answer = world.call("PATCH", f"/job/{known['id']}", body, ann)
        key = next(iter(body))
        assert (status, answer["error"]["code"], answer["error"]["field"]) == \
            (422, "read_only", key), answer
    assert job(world, known["id"])["after"] == []
    assert job(world, other["id"])["after"] == [known["id"]]


def test_a_compute_job_may_wait_for_a_transfer_but_not_for_its_items(hub: Hub,
                                                                      session: Session) -> None:
    agent = enroll(hub, session, "srcs")
    session.create("Share", {"name": "projects", "client": agent["client_id"],
                             "path": "/srv/projects"})
    session.create("Share", {"name": "backup", "client": agent["client_id"],
                             "path": "/srv/backup"})
    transfer = session.create("Job", {"source": "share=projects/plates",
                                      "destination": "share=backup/in/"})
    token = session._token
    before = jobs_in(hub)
    status, answer = http("POST", f"{hub.api}/job", {
        "compute": {"command": ["true"], "items": "1"}, "after_items": transfer["id"]},
        token=token)
    assert (status, answer["error"]["field"], answer["error"]["code"]) == \
        (422, "after_items", "invalid_spec"), answer
    # only compute jobs wait: a transfer's body has no such field
    status, answer = http("POST", f"{hub.api}/job", {
        "source": "share=projects/plates", "destination": "share=backup/again/",
        "after": [transfer["id"]]}, token=token)
    assert (status, answer["error"]["field"]) == (422, "after"), answer
    assert jobs_in(hub) == before
    made = session.create("Job", {"compute": {"command": ["true"], "items": "1"},
                                  "after": [transfer["id"]]})
    assert made["status_reason"] == f"waiting for job {transfer['id']}"
