"""``status_reason`` on a client (issue 18's workstations) is its own agent's word only.

An agent's check-in carries no client id: the hub writes the reason on the client its
token names, so a hostile agent sets its own reason and nobody else's, whatever it sends.
A check-in without a token, or with a user's, is refused; a bad reason (too long, not a
string, a NUL) is refused with 422 naming the field; and no user, not even root, writes
the reason through the entity API. Each refusal leaves every reason as it was.
"""

from __future__ import annotations

from typing import Any

from hub import permissions
from tests.helpers import Hub, http
from tests.security.world import World

METRICS = {"c": 2, "l": 1.0, "m": 3.0, "mpf": 1, "mpt": 2, "mvf": 0, "mvt": 0}


def reasons(world: World, *ids: str) -> list[str | None]:
    return [world.ok("GET", f"/client/{i}")["status_reason"] for i in ids]


def test_an_agent_sets_its_own_reason_and_no_other(hub: Hub) -> None:
    world = World(hub)
    mine, other = world.agent("A"), world.agent("B")
    ok, _ = other.call("POST", "/agent/checkin", {"metrics": METRICS,
                                                  "status_reason": "user active (nimby)"})
    assert ok == 200
    # the hostile agent names the other client every way a body could: none is a field
    for extra in ({"client_id": other.id}, {"id": other.id}, {"client": other.id}):
        status, answer = mine.call("POST", "/agent/checkin", {
            "metrics": METRICS, "status_reason": "pwned", **extra})
        assert status == 422 and answer["error"]["field"] == next(iter(extra)), answer
    status, answer = mine.call("POST", "/agent/checkin", {"metrics": METRICS,
                                                          "status_reason": "mine, not yours"})
    assert status == 200 and answer["client_id"] == mine.id
    assert reasons(world, mine.id, other.id) == ["mine, not yours", "user active (nimby)"]


def test_bad_or_unauthenticated_check_ins_change_nothing(hub: Hub) -> None:
    world = World(hub)
    agent = world.agent("A")
    assert agent.call("POST", "/agent/checkin", {"metrics": METRICS,
                                                 "status_reason": "outside schedule"})[0] == 200
    before = world.ok("GET", f"/client/{agent.id}")
    url = f"{hub.api}/agent/checkin"
    user = world.user("A", permissions.ORG_ADMIN)["token"]
    for token in (None, "not-a-token", user):
        status, answer = http("POST", url, {"metrics": METRICS, "status_reason": "x"},
                              token=token)
        assert status in (401, 403), (token, answer)
    cases: list[Any] = ["r" * 256, 42, ["a"], {"a": 1}, "nul\u0000here"]
    for bad in cases:
        status, answer = agent.call("POST", "/agent/checkin", {"metrics": METRICS,
                                                               "status_reason": bad})
        assert status == 422 and answer["error"]["field"] == "status_reason", (bad, answer)
    after = world.ok("GET", f"/client/{agent.id}")
    assert after["status_reason"] == "outside schedule"
    assert after["last_checkin"] == before["last_checkin"]  # no refused one was recorded


def test_no_user_writes_a_reason(hub: Hub) -> None:
    world = World(hub)
    agent = world.agent("A")
    assert agent.call("POST", "/agent/checkin", {"metrics": METRICS,
                                                 "status_reason": "user active (nimby)"})[0] == 200
    for token in (world.root, world.user("A", permissions.ORG_ADMIN)["token"]):
        status, answer = world.call("PATCH", f"/client/{agent.id}",
                                    {"status_reason": None}, token)
        assert status == 422 and answer["error"]["field"] == "status_reason", answer
    # another organization's admin: A's client answers as one that does not exist
    b_admin = world.user("B", permissions.ORG_ADMIN)["token"]
    answers = [world.call("PATCH", f"/client/{ident}", {"status_reason": None}, b_admin)
               for ident in (agent.id, "0" * 24)]
    assert answers[0] == answers[1], answers
    assert reasons(world, agent.id) == ["user active (nimby)"]
