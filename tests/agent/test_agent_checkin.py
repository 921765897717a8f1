"""A real agent enrolls with a node key, checks in with live metrics and shows online."""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path

import psutil

from core.version import VERSION
from hub import Session
from tests.helpers import Hub, http, wait_for


def physical_macs() -> set[str]:
    """This machine's MACs, read from sysfs: interfaces the kernel does not file as virtual."""
    macs = set()
    for link in Path("/sys/class/net").iterdir():
        if "/virtual/" in str(link.resolve()):
            continue
        mac = (link / "address").read_text().strip().upper()
        if mac and mac != "00:00:00:00:00:00":
            macs.add(mac)
    return macs


def test_agent_enrolls_checks_in_and_reports_metrics(hub: Hub, session: Session, node_key,
                                                      start_agent) -> None:
    node = node_key("render01")
    assert node["api_key"].startswith("fk_")
    agent = start_agent(hub, node["api_key"], lanes=3)

    client = wait_for(lambda: session.find_one(f"Client where node={node['id']} AND status=online"),
                      what="agent online")
    client = wait_for(lambda: (c := session.get("Client", client["id"]))["metrics"] and c,
                      what="first metrics")
    metrics = client["metrics"]
    assert metrics["c"] == psutil.cpu_count(logical=True)
    assert metrics["mpt"] == psutil.virtual_memory().total
    assert 0 <= metrics["l"] <= 100 and 0 <= metrics["m"] <= 100
    assert 0 < metrics["mpf"] <= metrics["mpt"]
    assert 0 <= metrics["mvf"] <= metrics["mvt"] or metrics["mvt"] == 0
    for direction in ("in", "out"):
        assert set(metrics[direction]) == {"s", "s_a", "s_t"}
    assert len(metrics["la"]) == 3

    macs = physical_macs()
    assert macs, "this machine has no physical interface to compare with"
    reported = {m.strip() for m in client["host_id"].split(",")}
    assert macs <= reported
    assert "00:00:00:00:00:00" not in reported

    assert client["code"] == socket.gethostname()
    assert (client["type"], client["type_hr"]) == (2, "user server")  # --user instance
    assert client["os"] == "linux"
    assert client["username"] == getpass.getuser()
    assert client["version"] == VERSION
    assert client["wan_ip"] == "127.0.0.1"
    assert client["site_hr"] == "hq"
    assert client["user_hr"] == "user:root(root)"
    assert client["parent"] is None and client["benchmark"] is None
    for field in ("id", "code", "user", "user_hr", "created", "type", "site", "site_hr",
                  "description", "host_id", "last_checkin", "status", "os", "type_hr",
                  "username", "version", "wan_ip", "parent", "benchmark", "metrics", "metadata",
                  "modified", "modifier"):
        assert field in client, field

    # the node now points at its client; its key is never shown again
    again = session.get("Node", node["id"])
    assert again["client"] == client["id"]
    assert "api_key" not in again
    assert all("api_key" not in n for n in session.find("Node"))

    status = agent.status()
    assert status["client_id"] == client["id"]
    assert status["status"] == "online" and status["accepting_work"] is True
    assert status["lanes"] == {"count": 3, "busy": 0}
    assert status["hub"] == hub.url
    assert status["pid"] == agent.proc.pid
    assert http("GET", f"{agent.status_url}/healthz")[0] == 200
    # the status endpoint listens on loopback only
    assert agent.status_url.startswith("http://127.0.0.1:")


def test_checkins_continue_on_the_hubs_interval(hub: Hub, session: Session, node_key,
                                                start_agent) -> None:
    agent = start_agent(hub, node_key("n1")["api_key"])
    first = wait_for(lambda: agent.status()["checkins"] >= 1 and agent.status(), what="check-in")
    wait_for(lambda: agent.status()["checkins"] >= first["checkins"] + 3, what="more check-ins")
    client = session.get("Client", first["client_id"])
    assert client["last_checkin"] >= first["last_checkin"]


def test_same_machine_re_enrolls_as_the_same_client(hub: Hub, session: Session, node_key,
                                                    start_agent) -> None:
    node = node_key("n1")
    agent = start_agent(hub, node["api_key"])
    first = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    assert agent.stop() == 0
    again = start_agent(hub, node["api_key"])
    assert wait_for(lambda: again.status()["client_id"], what="enrolled again") == first
    assert len(session.find("Client where parent=null")) == 1
    # its lanes are kept, not made again
    assert len(session.find(f"Client where parent={first}")) == again.status()["lanes"]["count"]


def test_wrong_api_key_stops_the_agent_with_a_clear_error(hub: Hub, tmp_path, env) -> None:
    from tests.helpers import Agent

    agent = Agent("agent", "bad", tmp_path, {"hub": hub.url, "api_key": "fk_not-a-real-key"},
                  env)
    assert agent.launch().wait(timeout=60) != 0
    assert "the hub does not know this node API key" in agent.log()


def test_graceful_stop_goes_offline_at_once(start_hub, node_key, start_agent, env) -> None:
    hub = start_hub(offline_grace=600)  # offline must come from the goodbye, not the grace
    session = Session(hub.url, username="root", password=env["FERRY_ROOT_PASSWORD"])
    node = session.create("Node", {"name": "n1"})
    agent = start_agent(hub, node["api_key"])
    client_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    wait_for(lambda: session.get("Client", client_id)["status"] == "online", what="online")
    assert agent.stop() == 0
    assert session.get("Client", client_id)["status"] == "offline"
    assert not os.path.exists(agent.paths.pid_file)
