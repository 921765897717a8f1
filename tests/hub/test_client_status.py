"""Client statuses and their writeable transitions, exactly as clients.rst states them."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ApiError
from hub import Session
from tests.helpers import Hub, wait_for


def status_of(session: Session, client_id: str) -> str:
    return str(session.get("Client", client_id)["status"])


def refused(session: Session, client_id: str, body: dict[str, Any], status: int = 409) -> ApiError:
    before = session.get("Client", client_id)
    with pytest.raises(ApiError) as info:
        session.update("Client", client_id, body)
    assert info.value.status == status
    after = session.get("Client", client_id)
    assert before["status"] == after["status"] and before["modified"] == after["modified"]
    return info.value


def test_status_rules_transition_by_transition(hub: Hub, session: Session, node_key,
                                               start_agent) -> None:
    agent = start_agent(hub, node_key("render01")["api_key"])
    cid = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    wait_for(lambda: status_of(session, cid) == "online", what="online")

    # online: only disabled clients can be set online; offline statuses are never written
    assert "only disabled clients" in refused(session, cid, {"status": "online"}).message
    for derived in ("offline", "disabled-offline"):
        assert "cannot be set" in refused(session, cid, {"status": derived}).message
    assert refused(session, cid, {"status": "sleeping"}, 422).code == "invalid_status"

    # online -> disabled
    changed = session.update("Client", cid, {"status": "disabled"})
    assert changed["status"] == "disabled"
    assert changed["modifier"] == session.user["id"]
    # disabled -> disabled is refused
    assert "already disabled" in refused(session, cid, {"status": "disabled"}).message

    # a disabled client keeps checking in but takes no work
    seen = agent.status()["checkins"]
    wait_for(lambda: agent.status()["checkins"] >= seen + 2, what="check-ins while disabled")
    local = agent.status()
    assert local["status"] == "disabled" and local["accepting_work"] is False
    assert status_of(session, cid) == "disabled"

    # disabled -> online
    assert session.update("Client", cid, {"status": "online"})["status"] == "online"
    wait_for(lambda: agent.status()["status"] == "online", what="agent sees it is enabled")

    # delete is refused while online
    with pytest.raises(ApiError) as info:
        session.delete_one("Client", cid)
    assert info.value.status == 409 and "only offline clients" in info.value.message

    # killed without goodbye: offline once the grace (3 s here) has passed
    agent.kill()
    wait_for(lambda: status_of(session, cid) == "offline", what="offline after the grace")

    # offline -> disabled gives disabled-offline (footnote 3)
    assert session.update("Client", cid, {"status": "disabled"})["status"] == "disabled-offline"
    assert "already disabled" in refused(session, cid, {"status": "disabled"}).message
    # disabled-offline -> online gives offline (footnote 2)
    assert session.update("Client", cid, {"status": "online"})["status"] == "offline"
    assert "only disabled clients" in refused(session, cid, {"status": "online"}).message

    # queries see the derived status
    assert session.find("Client where status=online") == []  # lanes go with their agent
    assert [c["id"] for c in session.find("Client where status=offline AND parent=null")] == [cid]
    assert [c["id"] for c in session.find("Client where status<>online AND type<>5")] == [cid]

    # delete works when offline, and the client is gone
    assert session.delete_one("Client", cid) is True
    assert session.find_one(f"Client where id={cid}") is None
    with pytest.raises(ApiError) as info:
        session.get("Client", cid)
    assert info.value.status == 404


def test_disabled_offline_when_disabled_agent_dies(hub: Hub, session: Session, node_key,
                                                   start_agent) -> None:
    agent = start_agent(hub, node_key("n")["api_key"])
    cid = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    wait_for(lambda: status_of(session, cid) == "online", what="online")
    session.update("Client", cid, {"status": "disabled"})
    agent.kill()
    wait_for(lambda: status_of(session, cid) == "disabled-offline", what="disabled-offline")
    assert [c["id"] for c in session.find("Client where status=disabled-offline")] == [cid]
    assert {c["status"] for c in session.find(f"Client where parent={cid}")} == {"offline"}
    # deletable when disabled-offline too
    session.delete_one("Client", cid)
    assert session.find("Client") == []  # its lanes went with it


def test_other_writable_fields(hub: Hub, session: Session, node_key, start_agent) -> None:
    agent = start_agent(hub, node_key("n")["api_key"], lanes=2)
    cid = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    site = session.create("Site", {"name": "stockholm"})
    changed = session.update("Client", cid, {"description": "Main server", "site": "stockholm",
                                             "benchmark": 2.5,
                                             "metadata": {"external": {"location": "custom"}}})
    assert changed["site"] == site["id"] and changed["site_hr"] == "stockholm"
    assert changed["benchmark"] == 2.5 and changed["description"] == "Main server"
    assert changed["metadata"] == {"external": {"location": "custom"}}
    # the human-readable forms work in queries
    assert [c["id"] for c in session.find("Client where site=stockholm AND type<>5")] == [cid]
    assert [c["id"] for c in session.find(f"Client where site={site['id']} AND parent=null")] \
        == [cid]
    assert [c["id"] for c in session.find("Client where user=root AND type='user server'")] == [cid]
    assert session.find("Client where site=hq") == []  # its lanes moved with it
    assert len(session.find(f"Client where site=stockholm AND parent={cid}")) == 2
    assert session.find("Client where user=root@studio.example") == []
    session.update("User", session.user["id"], {"email": "root@studio.example"})
    assert [c["id"] for c in session.find("Client where user=root@studio.example AND type=2")] \
        == [cid]
    assert [c["id"] for c in session.find("Client where benchmark>2 and benchmark<=2.5")] == [cid]
    assert session.find('Client where description="Main server"')[0]["id"] == cid
    # a check-in keeps what the admin set
    seen = agent.status()["checkins"]
    wait_for(lambda: agent.status()["checkins"] >= seen + 1, what="a check-in")
    assert session.get("Client", cid)["site_hr"] == "stockholm"
