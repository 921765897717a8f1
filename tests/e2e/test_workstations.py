"""Workstations against a real hub and real agent processes (issue 18): the agent's
schedule, its clock moved by the clock file its config names; NIMBY, its user's presence
told by the activity file its config names. Outside its window, or while its user is at
it, the agent claims nothing and the hub shows why on the client; running buckets
finish, or go back to the hub after the grace with no attempt spent. A bad schedule
stops ``ferry agent start`` before anything starts, naming the key and the window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub import Session
from tests.e2e.test_compute import job_done
from tests.helpers import ROOT_PASSWORD, Agent, Hub, ferry, wait_for

# what is tested is the agent's: the hub's side of the reason (stored, cleared, refused)
# runs in both rounds (tests/hub/test_checkin_fields.py, tests/security/test_status_reason.py)
pytestmark = pytest.mark.one_round("the schedule and NIMBY are the agent's")

OUTSIDE = "2026-12-08T08:00:00"  # a Tuesday morning: outside "mon-fri 19:00-07:00"
INSIDE = "2026-12-08T19:30:00"
CLOSED = "outside schedule (next window tue 19:00)"


def workstation(start_agent: Any, hub: Hub, session: Session, tmp_path: Path,
                **sections: Any) -> tuple[Agent, str]:
    """An agent with one lane and the given sections; and its client id."""
    key = session.create("Node", {"name": f"ws-{len(list(tmp_path.iterdir()))}"})["api_key"]
    agent = start_agent(hub, key, lanes=1, transfer=False, **sections)
    return agent, wait_for(lambda: agent.status()["client_id"], what="enrolled")


def schedule(tmp_path: Path, clock: str, **extra: Any) -> dict[str, Any]:
    path = tmp_path / "clock"
    path.write_text(clock)
    return {"windows": ["mon-fri 19:00-07:00", "sat,sun 00:00-24:00"], "timezone": "UTC",
            "clock": str(path), **extra}


def reason(session: Session, client_id: str) -> str | None:
    return session.get("Client", client_id)["status_reason"]  # type: ignore[no-any-return]


def checked_in_twice_more(agent: Agent) -> None:
    """Two more check-ins: the agent has looked at its rules and the queue meanwhile."""
    before = agent.status()["checkins"]
    wait_for(lambda: agent.status()["checkins"] >= before + 2, what="two more check-ins")


def waiting_task(release: Path) -> list[str]:
    """A task that says it started and runs until ``release`` exists."""
    return ["sh", "-c", f"echo started; while [ ! -e {release} ]; do sleep 0.05; done"]


def executing(session: Session, job_id: str) -> list[dict[str, Any]]:
    return session.find(f"task WHERE job.id={job_id} AND status=executing")


def test_outside_its_window_an_agent_claims_nothing_and_says_why(
        hub: Hub, session: Session, start_agent: Any, tmp_path: Path) -> None:
    agent, client_id = workstation(start_agent, hub, session, tmp_path,
                                   schedule=schedule(tmp_path, OUTSIDE))
    wait_for(lambda: reason(session, client_id) == CLOSED, what="the reason at the hub")
    status = agent.status()
    assert status["status_reason"] == CLOSED and status["accepting_work"] is False
    listed = session.find("Client where status_reason!=null")  # a query finds them
    assert [c["id"] for c in listed] == [client_id]

    job = session.create("Job", {"compute": {"command": ["true"], "items": "1-3"}})
    checked_in_twice_more(agent)
    assert session.get("Job", job["id"])["counts"] == {"queued": 3}

    (tmp_path / "clock").write_text(INSIDE)  # the window opens
    done = wait_for(lambda: job_done(session, job["id"]), what="the job to run")
    assert done["status"] == "done"
    wait_for(lambda: reason(session, client_id) is None, what="the reason cleared")
    assert agent.status()["status_reason"] is None


def test_a_running_bucket_finishes_when_the_window_closes(
        hub: Hub, session: Session, start_agent: Any, tmp_path: Path) -> None:
    agent, client_id = workstation(start_agent, hub, session, tmp_path,
                                   schedule=schedule(tmp_path, INSIDE, running="finish"))
    release = tmp_path / "release"
    job = session.create("Job", {"compute": {"command": waiting_task(release),
                                             "items": "1-2", "bucket_size": 2}})
    wait_for(lambda: executing(session, job["id"]), what="the first task to run")
    (tmp_path / "clock").write_text(OUTSIDE)
    wait_for(lambda: reason(session, client_id) == CLOSED, what="the reason at the hub")
    later = session.create("Job", {"compute": {"command": ["true"], "items": "1"}})
    release.touch()
    done = wait_for(lambda: job_done(session, job["id"]), what="the running bucket to end")
    assert done["status"] == "done" and done["counts"] == {"done": 2}  # the whole bucket
    checked_in_twice_more(agent)
    assert session.get("Job", later["id"])["counts"] == {"queued": 1}  # nothing new


def test_handback_returns_running_work_after_the_grace_with_no_attempt_spent(
        hub: Hub, session: Session, start_agent: Any, tmp_path: Path) -> None:
    agent, client_id = workstation(
        start_agent, hub, session, tmp_path,
        schedule=schedule(tmp_path, INSIDE, running="handback", grace=1))
    release = tmp_path / "release"
    job = session.create("Job", {"compute": {"command": waiting_task(release),
                                             "items": "1-2", "bucket_size": 2,
                                             "retries": 0}})
    running, = wait_for(lambda: executing(session, job["id"]), what="the first task to run")
    (tmp_path / "clock").write_text(OUTSIDE)
    wait_for(lambda: reason(session, client_id) == CLOSED, what="the reason at the hub")
    back = wait_for(lambda: session.get("Job", job["id"])["counts"] == {"queued": 2},
                    what="both tasks back in the queue")
    assert back
    tasks = {t["id"]: t for t in session.find(f"task WHERE job.id={job['id']}")}
    assert all(t["attempts"] == 0 for t in tasks.values())  # no retry was needed for that
    assert "outside schedule" in tasks[running["id"]]["message"]
    assert agent.status()["lanes"]["busy"] == 0

    release.touch()
    (tmp_path / "clock").write_text(INSIDE)
    done = wait_for(lambda: job_done(session, job["id"]), what="the job to run again")
    assert done["status"] == "done" and done["counts"] == {"done": 2}  # with retries: 0


def test_nimby_takes_no_work_while_the_user_is_active(
        hub: Hub, session: Session, start_agent: Any, tmp_path: Path) -> None:
    activity = tmp_path / "activity"
    activity.write_text("active")
    agent, client_id = workstation(start_agent, hub, session, tmp_path,
                                   nimby={"activity": str(activity), "idle_after": 60})
    wait_for(lambda: reason(session, client_id) == "user active (nimby)",
             what="the reason at the hub")
    assert agent.status()["status_reason"] == "user active (nimby)"
    job = session.create("Job", {"compute": {"command": ["true"], "items": "1-2"}})
    checked_in_twice_more(agent)
    assert session.get("Job", job["id"])["counts"] == {"queued": 2}

    activity.write_text("idle")
    assert wait_for(lambda: job_done(session, job["id"]), what="the job to run")["status"] == "done"
    wait_for(lambda: reason(session, client_id) is None, what="the reason cleared")


def test_the_command_line_shows_the_reason(hub: Hub, session: Session, start_agent: Any,
                                           tmp_path: Path, env: dict[str, str]) -> None:
    _, client_id = workstation(start_agent, hub, session, tmp_path,
                               schedule=schedule(tmp_path, OUTSIDE))
    wait_for(lambda: reason(session, client_id) == CLOSED, what="the reason at the hub")
    assert ferry("login", hub.url, "--username", "root", "--password-stdin", env=env,
                 input=ROOT_PASSWORD + "\n").returncode == 0
    listing = ferry("client", "ls", "type!=5", env=env)
    assert listing.returncode == 0, listing.stderr
    header, _, row = listing.stdout.splitlines()[:3]
    assert header.split()[-1] == "REASON" and row.endswith(CLOSED)
    shown = ferry("client", "show", client_id, env=env).stdout
    assert f"status reason  {CLOSED}" in shown


def test_a_bad_schedule_stops_the_start_naming_the_key(
        hub: Hub, session: Session, tmp_path: Path, env: dict[str, str]) -> None:
    key = session.create("Node", {"name": "ws-bad"})["api_key"]
    bad = tmp_path / "agent-bad.yaml"
    bad.write_text(f"application:\n  hub: {hub.url}\n  api_key: {key}\n  schedule:\n"
                   "    windows: ['mon-fri 19:00-07:00', 'sat,sun 7pm-11pm']\n")
    result = ferry("agent", "start", "--attach", "--user", "--name", "bad", "--config",
                   str(bad), env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "application.schedule.windows" in result.stderr
    assert "'sat,sun 7pm-11pm'" in result.stderr and str(bad) in result.stderr
    assert session.find("Client") == []  # it never enrolled
    assert "running" not in ferry("agent", "list", "--user", env=env).stdout
