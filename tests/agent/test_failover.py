"""An agent with several hubs: it keeps working on the next while the first is down, and goes
back to the first when it returns (real hubs, a real agent; hubs named in the servers
database or given as URLs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hub import Session
from tests.helpers import ROOT_PASSWORD, Agent, Hub, ended, ferry, free_port, wait_for

pytestmark = pytest.mark.one_round("the agent's failover between hubs")

KEY = "failover-node-key-0123456789"




def runs_a_job(session: Session, what: str) -> None:
    job = session.create("Job", {"code": what, "compute": {"command": ["true"], "items": "1-3"}})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what=f"{what} ends")
    assert done["status"] == "done", done


def online_at(session: Session) -> list[dict[str, Any]]:
    return session.find("Client where type=2 AND status=online")


def two_hubs(start_hub: Callable[..., Hub]) -> tuple[Hub, Hub, Session, Session]:
    """Two hubs of their own (each its own database), the same node key at both."""
    first = start_hub(port=free_port())
    second = start_hub(port=free_port())
    sessions = []
    for hub in (first, second):
        session = Session(hub.url, username="root", password=ROOT_PASSWORD)
        session.create("Node", {"name": "render-07", "api_key": KEY})
        sessions.append(session)
    return first, second, sessions[0], sessions[1]


def test_an_agent_fails_over_to_the_next_hub_and_comes_back(
        start_hub: Callable[..., Hub], start_agent: Callable[..., Agent],
        env: dict[str, str]) -> None:
    first, second, at_first, at_second = two_hubs(start_hub)
    # the hubs by name, from the servers database
    for name, hub in (("primary", first), ("backup", second)):
        result = ferry("servers", "add", name, hub.url, env=env)
        assert result.returncode == 0, result.stderr
    agent = start_agent(first, KEY, hub=["primary", "backup"], failback_interval=1.0,
                        lanes=1, transfer=False, request_timeout=5.0)
    wait_for(lambda: online_at(at_first), what="online at the first hub")
    runs_a_job(at_first, "before")

    first.stop()  # the first hub goes down: the agent goes on with the second
    wait_for(lambda: online_at(at_second), timeout=60, what="online at the second hub")
    assert agent.status()["hub"] == second.url
    runs_a_job(at_second, "while the first is down")
    assert "is unavailable; switching to backup" in agent.log()
    shown = ferry("servers", "show", "primary", env=env)
    assert "Unavailable" in shown.stdout, shown.stdout

    first.start()  # back: the agent returns to it
    wait_for(lambda: agent.status()["hub"] == first.url, timeout=60, what="back at the first")
    assert "answers again; switching to primary" in agent.log()
    at_first = Session(first.url, username="root", password=ROOT_PASSWORD)
    runs_a_job(at_first, "after")
    assert "Running" in ferry("servers", "show", "primary", env=env).stdout


def test_urls_work_too_and_a_hub_name_nobody_defined_is_refused(
        start_hub: Callable[..., Hub], start_agent: Callable[..., Agent]) -> None:
    first, second, _, at_second = two_hubs(start_hub)
    first.stop()  # down from the start: the agent works with the second
    start_agent(first, KEY, hub=[first.url, second.url], lanes=1, transfer=False,
                request_timeout=5.0)
    wait_for(lambda: online_at(at_second), timeout=60, what="online at the second hub")
    runs_a_job(at_second, "second")
    try:
        start_agent(second, KEY, hub=["nowhere"], transfer=False)
    except RuntimeError as exc:
        assert "nowhere" in str(exc) and "hub" in str(exc)
    else:
        raise AssertionError("an agent with an unknown server name started")
