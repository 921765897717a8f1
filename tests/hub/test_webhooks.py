"""Webhooks against a real hub and a real receiver (issue 19): records and bad input,
signed deliveries retried after failures and timeouts with the log to show it, the events
of jobs, tasks and agents, and a receiver that never answers holding up no job.

Agents are driven by hand (``RawAgent``): what the hub tells is what its state did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hub import permissions
from tests.helpers import Hub, db_query, wait_for
from tests.receiver import Receiver
from tests.security.world import RawAgent, World, task_report

FAST = {"webhook_timeout": 1, "webhook_backoff": 0.2, "webhook_attempts": 5}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def hook(world: World, receiver: Receiver, token: str, path: str, events: list[str],
         **extra: Any) -> dict[str, Any]:
    made = world.ok("POST", "/webhook", {"url": receiver.url(path), "events": events,
                                         **extra}, token)
    receiver.secrets[path] = made["secret"]
    return dict(made)


def run_job(world: World, token: str, agent: RawAgent, event: str = "done") -> dict[str, Any]:
    """A one-task job, claimed by ``agent`` and reported ``event``."""
    job = world.compute_job(token, compute={"retries": 0})
    bucket = agent.claim()[0]
    task = bucket["tasks"][0]["id"]
    assert agent.report(task_report(f"{task}/end", bucket["id"], task, event))[0][
        "outcome"] == "applied"
    return job


def test_webhook_records_and_bad_input(hub: Hub, receiver: Receiver) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    made = world.ok("POST", "/webhook", {"url": receiver.url("/x"), "events": ["job.done"],
                                         "name": "farm news"}, admin)
    assert len(made["secret"]) >= 32  # made by the hub, shown this once
    assert (made["enabled"], made["events"], made["organization"]) == \
        (True, ["job.done"], world.org["A"]["id"])
    shown = world.ok("GET", f"/webhook/{made['id']}", token=admin)
    assert "secret" not in shown and shown == {k: v for k, v in made.items() if k != "secret"}
    listed = world.ok("POST", "/find", {"query": "Webhook where name='farm news'"}, admin)
    assert [x["id"] for x in listed["result"]] == [made["id"]]
    assert "secret" not in listed["result"][0]
    changed = world.ok("PATCH", f"/webhook/{made['id']}", {
        "enabled": False, "events": ["job.failed", "task.failed", "job.failed"],
        "secret": "s" * 20}, admin)
    assert (changed["enabled"], changed["events"]) == (False, ["job.failed", "task.failed"])
    assert "secret" not in changed

    before = count(hub, "webhooks")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"url": "ftp://example.org/x", "events": ["job.done"]}, "url"),
        ({"url": "http:///nohost", "events": ["job.done"]}, "url"),
        ({"url": "http://u:p@example.org/", "events": ["job.done"]}, "url"),
        ({"url": 5, "events": ["job.done"]}, "url"),
        ({"url": "https://example.org/", "events": ["job.done", "job.exploded"]}, "events[1]"),
        ({"url": "https://example.org/", "events": []}, "events"),
        ({"url": "https://example.org/", "events": "job.done"}, "events"),
        ({"url": "https://example.org/", "events": ["job.done"], "secret": "short"}, "secret"),
        ({"url": "https://example.org/", "events": ["job.done"], "enabled": "yes"}, "enabled"),
        ({"events": ["job.done"]}, "url"),
        ({"url": "https://example.org/", "events": ["job.done"], "id": "x"}, "id"),
    ]
    for body, field in bad:
        status, answer = world.call("POST", "/webhook", body, admin)
        assert (status, answer["error"]["field"]) == (422, field), (body, answer)
    status, answer = world.call("PATCH", f"/webhook/{made['id']}", {"events": [1]}, admin)
    assert (status, answer["error"]["field"]) == (422, "events[0]")
    assert count(hub, "webhooks") == before
    assert world.ok("GET", f"/webhook/{made['id']}", token=admin) == changed
    world.ok("DELETE", f"/webhook/{made['id']}", token=admin)
    assert world.call("GET", f"/webhook/{made['id']}", token=admin)[0] == 404


def test_deliveries_are_signed_retried_and_logged(start_hub: Callable[..., Hub],
                                                  receiver: Receiver) -> None:
    hub = start_hub(**FAST)
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    made = hook(world, receiver, admin, "/a", ["job.created", "job.done", "job.failed",
                                               "task.failed", "client.offline"])
    muted = hook(world, receiver, admin, "/muted", ["job.done"], enabled=False)
    # the first event's first attempts: two 500s, then no answer within the timeout
    receiver.plan = {"job.created": [500, 500, "hang"]}
    agent = world.agent("A")
    done = run_job(world, ann, agent)
    # by event, not by count: another event (the agent offline) may be taken before them
    wait_for(lambda: {"job.created", "job.done"} <= {r.event for r in receiver.taken("/a")},
             what="job.created and job.done taken")

    created = [r for r in receiver.events("/a") if r.event == "job.created"]
    assert [r.answered for r in created] == [500, 500, None, 200]
    assert len({r.delivery for r in created}) == 1  # one delivery, tried four times
    assert all(r.signed for r in receiver.events())
    body = created[-1].body
    assert (body["event"], body["id"], body["data"]["id"]) == \
        ("job.created", created[0].delivery, done["id"])
    finished = [r for r in receiver.taken("/a") if r.event == "job.done"]
    assert [r.body["data"]["status"] for r in finished] == ["done"]
    assert finished[0].body["data"]["id"] == done["id"]

    log = {d["event"]: d for d in world.ok("GET", f"/webhook/{made['id']}/deliveries",
                                           token=admin)["result"]}
    assert (log["job.created"]["status"], log["job.created"]["attempts"],
            log["job.created"]["status_code"]) == ("delivered", 4, 200)
    assert (log["job.done"]["status"], log["job.done"]["attempts"]) == ("delivered", 1)

    # a failed run: task.failed, then job.failed; and the agent, which never checks in,
    # is told offline once its grace has passed
    failed = run_job(world, ann, agent, "failed")
    wait_for(lambda: {"task.failed", "job.failed", "client.offline"} <=
             {r.event for r in receiver.taken("/a")}, what="the failure and offline events")
    news = {r.event: r.body["data"] for r in receiver.taken("/a")}
    assert (news["task.failed"]["job"], news["job.failed"]["id"]) == (failed["id"],) * 2
    assert (news["client.offline"]["id"], news["client.offline"]["status"]) == \
        (agent.id, "offline")
    assert receiver.events("/muted") == []  # a disabled webhook is told nothing
    assert world.ok("GET", f"/webhook/{muted['id']}/deliveries", token=admin)["result"] == []

    # a receiver that refuses outright (4xx) is not asked again; one that keeps failing
    # is asked webhook_attempts times, then the delivery fails
    receiver.plan = {"job.created": [404], "job.done": [500] * 5}
    run_job(world, ann, agent)
    wait_for(lambda: {d["status"] for d in world.ok(
        "GET", f"/webhook/{made['id']}/deliveries", token=admin)["result"]} ==
             {"delivered", "failed"}, what="both deliveries failed")
    ends = [d for d in world.ok("GET", f"/webhook/{made['id']}/deliveries",
                                token=admin)["result"] if d["status"] == "failed"]
    assert sorted((d["attempts"], d["status_code"]) for d in ends) == [(1, 404), (5, 500)]


def test_a_receiver_that_never_answers_holds_up_no_job(start_hub: Callable[..., Hub],
                                                       receiver: Receiver) -> None:
    hub = start_hub(webhook_timeout=3600, webhook_concurrency=2)
    receiver.hang = True
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    made = hook(world, receiver, admin, "/slow", ["job.created", "job.done", "task.failed"])
    agent = world.agent("A", lanes=1)
    jobs = [run_job(world, ann, agent) for _ in range(4)]
    for job in jobs:  # done, every claim and report answered, while no delivery is
        assert world.ok("GET", f"/job/{job['id']}", token=ann)["status"] == "done"
    wait_for(lambda: len(receiver.events()) == 2, what="two deliveries in flight")
    log = world.ok("GET", f"/webhook/{made['id']}/deliveries", token=admin)["result"]
    assert len(log) == 8 and {d["status"] for d in log} == {"pending"}
    assert all(r.answered is None for r in receiver.events())


@pytest.mark.one_round("its hubs are on PostgreSQL in both rounds")
def test_two_hubs_on_one_database_deliver_each_event_once(
        start_hub: Callable[..., Hub], postgres_url: str, receiver: Receiver) -> None:
    settings = {"uri": postgres_url, **FAST}
    first, second = start_hub(**settings), start_hub(**settings)  # the first migrates
    world = World(first)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    made = hook(world, receiver, admin, "/a", ["job.created"])
    receiver.plan = {"job.created": [500] * 5}  # some retried, by whichever hub claims
    jobs = {world.compute_job(ann)["id"] for _ in range(15)}
    wait_for(lambda: {r.body["data"]["id"] for r in receiver.taken()} == jobs,
             what="every job.created taken")
    assert len(receiver.taken()) == len(jobs)  # none twice
    log = world.ok("GET", f"/webhook/{made['id']}/deliveries", token=admin)["result"]
    assert sorted(d["status"] for d in log) == ["delivered"] * len(jobs)
    assert sum(d["attempts"] for d in log) == len(receiver.events()) == len(jobs) + 5
    assert second.alive


def test_an_event_outlives_the_hub_that_queued_it(start_hub: Callable[..., Hub],
                                                  receiver: Receiver) -> None:
    hub = start_hub(**{**FAST, "webhook_attempts": 30})
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    made = hook(world, receiver, admin, "/a", ["job.created"])
    receiver.plan = {"job.created": [500] * 1000}
    job = world.compute_job(world.user("A", permissions.RESEARCHER)["token"])
    first = wait_for(receiver.events, what="a first attempt")[0]
    hub.kill()  # no shutdown: the event is in the database's outbox alone
    receiver.plan = {}
    hub.start()
    # (killed between an attempt's claim and its outcome, the claim lapses first: 31 s)
    [taken] = wait_for(receiver.taken, timeout=90,
                       what="the event taken after the restart")
    assert (taken.delivery, taken.body["data"]["id"]) == (first.delivery, job["id"])
    log = World(hub).ok("GET", f"/webhook/{made['id']}/deliveries")["result"]
    # an attempt claimed as the hub was killed counts, though it never reached the receiver
    assert [(d["status"], d["attempts"] >= len(receiver.events())) for d in log] == \
        [("delivered", True)]
