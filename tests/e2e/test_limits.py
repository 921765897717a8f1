"""Limits and ``max_lanes`` with real agents (issue 18): more free lanes than a limit's
max never run more of its jobs' tasks at once, whichever hub process leases them; the
other jobs use the lanes meanwhile; and a lease lost with its agent frees its slot.

Each task marks itself running with a file in a folder of its job while it runs, and
writes how many marks it saw when it started: that count is the agents' own evidence of
how many ran at once. Tasks wait for a gate file, so the test sees the farm while it is
full, then lets everything finish.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from hub import Session
from lanes.kill import marked
from tests.e2e.test_compute import job_done
from tests.helpers import ROOT_PASSWORD, Hub, db_query, wait_for


def marking(folder: Path, gate: Path) -> list[str]:
    """A task that marks itself running in ``folder`` until ``gate`` exists, and logs
    ``item marks-seen agent-id`` in ``folder``.log at its start."""
    folder.mkdir(parents=True, exist_ok=True)
    return ["sh", "-c", f'touch {folder}/{{item}}; '
            f'echo "{{item}} $(ls {folder} | wc -l) $FERRY_AGENT_ID" >> {folder}.log; '
            f'while [ ! -e {gate} ]; do sleep 0.05; done; sleep 0.2; rm {folder}/{{item}}']


def running(folder: Path) -> int:
    return len(list(folder.iterdir()))


def started(folder: Path) -> list[list[str]]:
    log = folder.with_name(folder.name + ".log")
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def executing(hub: Hub, job_id: str) -> int:
    """The job's tasks the hub has as running now."""
    return int(db_query(hub.database, "SELECT count(*) FROM tasks WHERE job_id = ? AND "
                        "status = 'executing'", job_id)[0][0])


def submit(session: Session, code: str, folder: Path, gate: Path, items: str,
           **extra: Any) -> dict[str, Any]:
    compute = {"command": marking(folder, gate), "items": items, **extra.pop("compute", {})}
    return dict(session.create("Job", {"code": code, "compute": compute, **extra}))


def test_limits_and_max_lanes_hold_with_lanes_to_spare(hub: Hub, session: Session, node_key,
                                                       start_agent, tmp_path: Path) -> None:
    for n in range(2):
        start_agent(hub, node_key(f"render{n}")["api_key"], lanes=4)
    wait_for(lambda: len(session.find("Client where type=5 and status=online")) == 8,
             what="eight lanes online")
    session.create("Limit", {"name": "nuke", "max": 2})
    gate = tmp_path / "gate"
    limited, capped, plain = tmp_path / "limited", tmp_path / "capped", tmp_path / "plain"
    a = submit(session, "comp", limited, gate, "1-6", limits=["nuke"], priority=900)
    c = submit(session, "sim", capped, gate, "1-4", max_lanes=1, priority=800)
    b = submit(session, "plain", plain, gate, "1-3", priority=1)

    # the lowest job runs all its tasks on the lanes the others may not use
    wait_for(lambda: (running(limited), running(capped), running(plain)) == (2, 1, 3),
             timeout=60, what="2 limited, 1 capped and 3 plain tasks running")
    wait_for(lambda: session.get("Job", a["id"])["status_reason"] ==
             "waiting for limit 'nuke' (2 of 2 in use)", what="the limit's reason")
    wait_for(lambda: session.get("Job", c["id"])["status_reason"] ==
             "waiting for max_lanes (1 of 1 in use)", what="the max_lanes reason")
    # two lanes stayed free all along: nothing more of the limited or capped jobs started
    assert (running(limited), running(capped)) == (2, 1)
    wait_for(lambda: (executing(hub, a["id"]), executing(hub, c["id"])) == (2, 1),
             what="the hub's rows: 2 limited and 1 capped task executing")
    assert (running(limited), running(capped)) == (2, 1)
    assert [x["in_use"] for x in session.find("Limit where name=nuke")] == [2]

    gate.touch()
    for job in (a, b, c):
        done = wait_for(lambda job=job: job_done(session, job["id"]), timeout=120,
                        what=f"{job['code']} done")
        assert done["status"] == "done", done
    assert max(int(seen) for _, seen, _ in started(limited)) <= 2
    assert max(int(seen) for _, seen, _ in started(capped)) == 1
    assert len(started(limited)) == 6 and len(started(capped)) == 4


@pytest.mark.one_round("its hubs are on PostgreSQL in both rounds")
def test_a_limit_holds_across_two_hubs_on_postgresql(start_hub, postgres_url: str,
                                                     start_agent, tmp_path: Path) -> None:
    settings = {"uri": postgres_url, "heartbeat_interval": 0.5, "lease_seconds": 10}
    hubs = [start_hub(**settings), start_hub(**settings)]  # the first migrates
    session = Session(hubs[0].url, username="root", password=ROOT_PASSWORD)
    # each hub process serves two agents of four lanes: claims race on both
    by_hub: dict[str, int] = {}  # agent (as its tasks know it) -> its hub
    for n in range(4):
        key = session.create("Node", {"name": f"render{n}"})["api_key"]
        by_hub[start_agent(hubs[n % 2], key, lanes=4).info["agent_id"]] = n % 2
    wait_for(lambda: len(session.find("Client where type=5 and status=online")) == 16,
             what="sixteen lanes online")
    limit = session.create("Limit", {"name": "nuke", "max": 3})
    gate, folder = tmp_path / "gate", tmp_path / "limited"
    job = submit(session, "comp", folder, gate, "1-40", limits=["nuke"])

    wait_for(lambda: running(folder) == 3, timeout=60, what="three tasks running")
    wait_for(lambda: session.get("Job", job["id"])["status_reason"] ==
             "waiting for limit 'nuke' (3 of 3 in use)", what="the limit's reason")
    # the hub's rows say so too, once the agents' start reports are in
    wait_for(lambda: executing(hubs[1], job["id"]) == 3, what="three tasks executing")
    assert running(folder) == 3
    gate.touch()
    done = wait_for(lambda: job_done(session, job["id"]), timeout=300, what="the job done")
    assert done["status"] == "done" and done["counts"] == {"done": 40}, done
    runs = started(folder)
    assert len(runs) == 40 and max(int(seen) for _, seen, _ in runs) <= 3
    assert {by_hub[agent] for _, _, agent in runs} == {0, 1}  # both hubs leased its tasks
    assert session.get("Limit", limit["id"])["in_use"] == 0


def test_a_killed_agent_frees_its_slot(start_hub, start_agent, tmp_path: Path) -> None:
    hub = start_hub(heartbeat_interval=0.5, lease_seconds=3)
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    doomed = start_agent(hub, session.create("Node", {"name": "doomed"})["api_key"], lanes=2)
    session.create("Limit", {"name": "nuke", "max": 1})
    gate, folder = tmp_path / "gate", tmp_path / "limited"
    job = submit(session, "comp", folder, gate, "1-3", limits=["nuke"],
                 compute={"retries": 2})
    # (a task marks itself, then logs its start: wait for both)
    wait_for(lambda: running(folder) == 1 and len(started(folder)) == 1, timeout=60,
             what="a task running on doomed")
    doomed_id = doomed.info["agent_id"]
    assert [agent for _, _, agent in started(folder)] == [doomed_id]

    survivor = start_agent(hub, session.create("Node", {"name": "survivor"})["api_key"],
                           lanes=2)
    survivor_id = survivor.info["agent_id"]
    wait_for(lambda: session.get("Job", job["id"])["status_reason"] ==
             "waiting for limit 'nuke' (1 of 1 in use)", what="survivor held back")
    assert len(started(folder)) == 1

    # the machine dies: the agent and its task with it, no goodbye
    assert doomed.proc is not None
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(timeout=30)
    for proc in marked("FERRY_AGENT_ID", doomed_id):
        proc.kill()
    psutil.wait_procs(marked("FERRY_AGENT_ID", doomed_id), timeout=10)
    for leftover in folder.iterdir():
        leftover.unlink()  # its mark, which it had no time to remove

    # the lease expires, its slot is free, and the survivor runs every task, one at a time
    wait_for(lambda: any(agent == survivor_id for _, _, agent in started(folder)), timeout=60,
             what="the survivor took the freed slot")
    gate.touch()
    done = wait_for(lambda: job_done(session, job["id"]), timeout=120, what="the job done")
    assert done["status"] == "done", done
    after = started(folder)[1:]
    assert sorted(item for item, _, _ in after) == ["1", "2", "3"]
    assert all(agent == survivor_id and seen == "1" for _, seen, agent in after), after
