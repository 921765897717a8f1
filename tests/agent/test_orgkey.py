"""An organization's key pair on nodes of a collaboration: made and published once,
checked at every enrollment, never replaced by an agent (real hub, real agents)."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any

from hub import Session
from protocol import sealing
from tests.helpers import Agent, Hub, http, wait_for


def key_state(agent: Agent) -> dict[str, Any] | None:
    state = agent.status()["organization_key"]
    return state if state and (state["ready"] or state["problem"]) else None


def test_a_node_publishes_its_organizations_key_once(hub: Hub, session: Session, start_agent,
                                                     tmp_path: Path) -> None:
    session.create("Organization", {"name": "IKNL"})
    session.create("Organization", {"name": "Other"})
    for name in ("ZEPPELIN", "PIPELINE", "SLIPPERS"):
        session.create("Collaboration", {"name": name, "encrypted": True,
                                         "organizations": ["IKNL", "Other"]})
    keys = {c: session.create("Node", {"name": f"IKNL {c}", "organization": "IKNL",
                                       "collaboration": c})["api_key"]
            for c in ("ZEPPELIN", "PIPELINE", "SLIPPERS")}

    # the first node makes the key pair and publishes the public half
    first_file = tmp_path / "first" / "organization-key.pem"
    first = start_agent(hub, keys["ZEPPELIN"], organization_key_file=str(first_file))
    state = wait_for(lambda: key_state(first), what="key settled")
    assert state["ready"] and state["problem"] is None, state
    assert stat.S_IMODE(first_file.stat().st_mode) == 0o600
    published = session.find_one("Organization where name=IKNL")["public_key"]
    assert sealing.same_key(first_file.read_bytes(), published)

    # a second node of the organization without the key file: says so, runs on, and
    # the published key stays
    second_file = tmp_path / "second" / "organization-key.pem"
    second = start_agent(hub, keys["PIPELINE"], organization_key_file=str(second_file))
    state = wait_for(lambda: key_state(second), what="missing key reported")
    assert not state["ready"] and "has no private key" in state["problem"], state
    assert "copy the organization key file" in state["problem"]
    assert not second_file.exists()
    assert "has no private key" in second.log()
    assert second.status()["status"] == "online"

    # a third with another key: a mismatch, loudly; nothing is replaced
    third_file = tmp_path / "third.pem"
    third_file.write_bytes(sealing.new_private_key())
    third = start_agent(hub, keys["SLIPPERS"], organization_key_file=str(third_file))
    state = wait_for(lambda: key_state(third), what="mismatch reported")
    assert not state["ready"] and "key mismatch" in state["problem"], state
    assert session.find_one("Organization where name=IKNL")["public_key"] == published

    # the right file in place: the second node is ready after a restart
    second.stop()
    second_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(first_file, second_file)
    second.start()
    state = wait_for(lambda: key_state(second), what="second node ready")
    assert state["ready"], state


def test_the_hub_never_lets_an_agent_replace_the_key(hub: Hub, session: Session) -> None:
    session.create("Organization", {"name": "IKNL"})
    session.create("Collaboration", {"name": "Z", "organizations": ["IKNL"]})
    node = session.create("Node", {"name": "n", "organization": "IKNL", "collaboration": "Z"})
    status, enrolled = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": node["api_key"], "machine_id": "m" * 16, "code": "box"})
    assert status == 200 and enrolled["organization_key"] == ""
    assert enrolled["collaboration"] and enrolled["organization"]
    token = enrolled["token"]
    url = f"{hub.api}/agent/organization_key"
    status, body = http("POST", url, {"public_key": "not a key"}, token=token)
    assert status == 422 and body["error"]["field"] == "public_key"
    mine = sealing.public_key(sealing.new_private_key())
    assert http("POST", url, {"public_key": mine}, token=token)[0] == 200
    assert http("POST", url, {"public_key": mine}, token=token)[0] == 200  # the same: fine
    status, body = http("POST", url, {"public_key": sealing.public_key(
        sealing.new_private_key())}, token=token)
    assert status == 409 and body["error"]["code"] == "key_mismatch"
    assert session.find_one("Organization where name=IKNL")["public_key"] == mine
    # users cannot call the agents' endpoint
    status, _ = http("POST", url, {"public_key": mine}, token=session._token)
    assert status == 403
