"""The hub restarted while agents run: the agents reconnect by themselves."""

from __future__ import annotations

from hub import Session
from tests.helpers import ROOT_PASSWORD, Hub, wait_for


def test_agents_reconnect_after_hub_restart(start_hub, node_key, start_agent) -> None:
    hub: Hub = start_hub()
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    agents = [start_agent(hub, session.create("Node", {"name": f"n{i}"})["api_key"])
              for i in range(2)]
    ids = [wait_for(lambda a=a: a.status()["client_id"], what="enrolled") for a in agents]

    # stop the hub; the agents keep running and notice
    port = hub.info["port"]
    assert hub.stop() == 0
    for agent in agents:
        wait_for(lambda a=agent: a.status()["last_error"], what="agent notices the hub is gone")
        assert agent.alive

    # same port, and a new token secret: old tokens are refused, agents must enroll again
    hub.section = {**hub.section, "port": port, "jwt_secret_key": "a-new-secret-after-the-restart-0123456789"}
    hub.write_config()
    hub.start()
    seen = {id(a): a.status()["checkins"] for a in agents}
    for agent in agents:
        wait_for(lambda a=agent: a.status()["checkins"] > seen[id(a)] + 1,
                 what="check-ins after the restart")
        status = agent.status()
        assert status["last_error"] is None and status["status"] == "online"
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    online = {c["id"] for c in session.find("Client where status=online AND parent=null")}
    assert online == set(ids)  # the same clients, not new ones
    assert "enrolling again" in agents[0].log()
