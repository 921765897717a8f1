"""Webhooks never cross organizations, and only organization admins manage them (issue 19).

B (A's partner in a collaboration) and C attack A's webhook as each default role: they
cannot see it, list it, change it (its URL, events or secret), delete it or read its
deliveries (each answered as a webhook that does not exist, 404), nor create one in A.
A's viewer and researcher cannot create, see or change one (403 naming the rule). No
answer ever holds a secret but the creation's. Afterwards A's webhook is as it was and no
webhook was made by a refused call; and A's events reach A's webhook only, B's B's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub import permissions
from tests.helpers import Hub, db_query, wait_for
from tests.receiver import Receiver
from tests.security.world import World, task_report


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def test_another_organization_cannot_reach_a_webhook(hub: Hub, receiver: Receiver) -> None:
    world = World(hub)
    a_admin = world.user("A", permissions.ORG_ADMIN)["token"]
    made = world.ok("POST", "/webhook", {"url": receiver.url("/a"), "events": ["job.done"]},
                    a_admin)
    secret = made.pop("secret")
    missing = "0" * 24
    before = world.ok("GET", f"/webhook/{made['id']}")
    hooks = count(hub, "webhooks")

    for org in ("B", "C"):
        for role in (permissions.ORG_ADMIN, permissions.RESEARCHER, permissions.VIEWER):
            token = world.user(org, role)["token"]
            # 404 to another organization's admin, 403 (no rule at all) to lesser roles:
            # for A's webhook and for one that does not exist alike, word for word
            expected = 404 if role == permissions.ORG_ADMIN else 403
            answers = {}
            for hook_id in (made["id"], missing):
                calls = [("GET", f"/webhook/{hook_id}", None),
                         ("GET", f"/webhook/{hook_id}/deliveries", None),
                         ("DELETE", f"/webhook/{hook_id}", None),
                         *(("PATCH", f"/webhook/{hook_id}", body) for body in (
                             {"url": receiver.url("/stolen")}, {"events": ["job.failed"]},
                             {"secret": "x" * 32}, {"enabled": False}))]
                answers[hook_id] = [world.call(m, p, b, token) for m, p, b in calls]
                assert {status for status, _ in answers[hook_id]} == {expected}, answers
            assert str(answers[made["id"]]).replace(made["id"], missing) == \
                str(answers[missing])
            if role == permissions.ORG_ADMIN:
                listed = world.ok("POST", "/find", {"query": "Webhook"}, token)["result"]
                assert made["id"] not in [x["id"] for x in listed]
                found = world.ok("POST", "/find", {"query": "WebhookDelivery"}, token)
                assert found["result"] == []
            status, answer = world.call("POST", "/webhook", {
                "url": receiver.url("/b"), "events": ["job.done"],
                "organization": world.org["A"]["id"]}, token)
            assert status == 403, answer

    for role in (permissions.RESEARCHER, permissions.VIEWER):
        token = world.user("A", role)["token"]
        status, answer = world.call("POST", "/webhook", {
            "url": receiver.url("/a2"), "events": ["job.done"]}, token)
        assert (status, answer["error"]["rule"]["resource"]) == (403, "webhook"), answer
        assert world.call("GET", f"/webhook/{made['id']}", token=token)[0] == 403
        assert world.call("PATCH", f"/webhook/{made['id']}", {"enabled": False},
                          token)[0] in (403, 404)
        assert world.call("DELETE", f"/webhook/{made['id']}", token=token)[0] in (403, 404)
    assert world.ok("GET", f"/webhook/{made['id']}") == before
    assert count(hub, "webhooks") == hooks

    # no answer but the creation's shows a secret: not a get, a list, a change
    shown = [world.ok("GET", f"/webhook/{made['id']}", token=a_admin),
             *world.ok("POST", "/find", {"query": "Webhook"}, a_admin)["result"],
             world.ok("PATCH", f"/webhook/{made['id']}", {"name": "n"}, a_admin)]
    assert all("secret" not in x and secret not in str(x) for x in shown)


def test_events_reach_their_own_organization_only(hub: Hub, receiver: Receiver) -> None:
    world = World(hub)
    everything = ["job.created", "job.done", "job.failed", "task.failed", "client.offline"]
    for org in ("A", "B"):
        admin = world.user(org, permissions.ORG_ADMIN)["token"]
        made = world.ok("POST", "/webhook", {"url": receiver.url(f"/{org}"),
                                             "events": everything}, admin)
        receiver.secrets[f"/{org}"] = made["secret"]

    agent = world.agent("A")
    job = world.compute_job(world.user("A", permissions.RESEARCHER)["token"])
    bucket = agent.claim()[0]
    task = bucket["tasks"][0]["id"]
    agent.report(task_report(f"{task}/end", bucket["id"], task, "done"))
    wait_for(lambda: {"job.created", "job.done"} <= {r.event for r in receiver.taken("/A")},
             what="A's job events at A's webhook")
    # then B's: once it is told, every event before it was handled (one outbox, in order)
    world.compute_job(world.user("B", permissions.RESEARCHER)["token"])
    wait_for(lambda: receiver.taken("/B"), what="B's job.created at B's webhook")
    assert all(r.body["data"].get("organization", world.org["B"]["id"]) == world.org["B"]["id"]
               for r in receiver.events("/B"))
    assert job["id"] not in str([r.body for r in receiver.events("/B")])
    assert all(r.signed for r in receiver.events())
