"""Losing nothing when anything dies: agents, hubs, tasks; aborts, pauses, drains."""

from __future__ import annotations

import time
from typing import Any

import psutil
import pytest

from hub import Session
from tests.helpers import ROOT_PASSWORD, Hub, db_execute, db_query, wait_for

FAST = {"lease_seconds": 3, "heartbeat_interval": 1}


def task_processes(task_id: str | None = None, job_id: str | None = None
                   ) -> list[psutil.Process]:
    """Processes started for a task (or any task of a job), found by their environment."""
    found = []
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if (task_id and env.get("FERRY_TASK_ID") == task_id) or \
                (job_id and env.get("FERRY_JOB_ID") == job_id):
            found.append(proc)
    return found


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def ended(session: Session, job_id: str) -> dict[str, Any] | None:
    job = session.get("Job", job_id)
    return job if job["status"] in ("done", "failed", "aborted") else None


@pytest.fixture
def fast_hub(start_hub) -> Hub:
    return start_hub(**FAST)


@pytest.fixture
def root(fast_hub: Hub) -> Session:
    return Session(fast_hub.url, username="root", password=ROOT_PASSWORD)


def test_killed_agent_loses_nothing(fast_hub: Hub, root: Session, start_agent) -> None:
    first = start_agent(fast_hub, root.create("Node", {"name": "a"})["api_key"], lanes=2)
    first_id = wait_for(lambda: first.status()["client_id"], what="enrolled")
    job = root.create("Job", {"compute": {
        "command": ["sh", "-c", "sleep 0.4; echo item $FERRY_ITEM"], "items": "1-30",
        "bucket_size": 3, "retries": 3, "clients": [f"client:{first_id}"]}})
    wait_for(lambda: root.get("Job", job["id"])["counts"].get("done", 0) >= 4,
             what="some tasks done on the first agent")
    first.kill()  # SIGKILL: no goodbye, no reports for what runs now
    held = root.find(f"task WHERE job.id={job['id']} AND (status=booting OR status=executing)")
    assert held, "the killed agent held tasks"
    # let any agent run it now, and start one
    root.update_many("task", job["id"], [{"id": t["id"], "priority": 500} for t in held])
    second = start_agent(fast_hub, root.create("Node", {"name": "b"})["api_key"], lanes=2)
    second_id = wait_for(lambda: second.status()["client_id"], what="second enrolled")
    _retarget(fast_hub, job["id"], second_id)
    done = wait_for(lambda: ended(root, job["id"]), timeout=120, what="job to end")
    assert done["status"] == "done" and done["counts"] == {"done": 30}
    tasks = root.find(f"task WHERE job.id={job['id']}", attributes=["*", "log_tail"])
    assert sorted(int(t["item"]) for t in tasks) == list(range(1, 31))
    moved = [t for t in tasks if t["id"] in {h["id"] for h in held}]
    assert all(t["source"]["client"] == second_id for t in moved)
    assert all(t["attempts"] >= 1 for t in moved)  # the lost lease cost an attempt
    assert all(t["log_tail"] == f"item {t['item']}\n" for t in tasks)


def _retarget(hub: Hub, job_id: str, client_id: str) -> None:
    """Point the job at the second agent (targets are fixed at submit; tests reach in)."""
    import json

    [(stored,)] = db_query(hub.database, "SELECT spec FROM jobs WHERE id=?", job_id)
    spec = json.loads(stored)
    spec["targets"] = [{"client": client_id}]
    db_execute(hub.database, "UPDATE jobs SET spec=? WHERE id=?", json.dumps(spec), job_id)


def test_restarted_agent_kills_what_it_left_running(fast_hub: Hub, root: Session,
                                                    start_agent) -> None:
    key = root.create("Node", {"name": "a"})["api_key"]
    agent = start_agent(fast_hub, key, lanes=1)
    job = root.create("Job", {"compute": {"command": ["sleep", "300"], "items": "1",
                                          "retries": 1}})
    task = wait_for(lambda: root.find_one(f"task WHERE job.id={job['id']} AND status=executing"),
                    what="task running")
    assert task_processes(task["id"])
    agent.kill()
    orphans = task_processes(task["id"])
    assert orphans, "SIGKILL of the agent leaves its task running"
    agent.start()  # the same agent again
    # the task may start again at once: watch the orphan's own processes, not the task id
    wait_for(lambda: not any(alive(p) for p in orphans), timeout=20, what="orphan killed")
    # the hub got the task back at once (restart), and it runs again
    again = wait_for(lambda: root.find_one(
        f"task WHERE job.id={job['id']} AND status=executing AND attempts=1"), timeout=30,
        what="task running again")
    assert again["id"] == task["id"]
    root.update("Job", job["id"], {"status": "aborted"})


def test_hub_restart_mid_job(start_hub, start_agent) -> None:
    hub = start_hub(lease_seconds=4, heartbeat_interval=1)
    root = Session(hub.url, username="root", password=ROOT_PASSWORD)
    agent = start_agent(hub, root.create("Node", {"name": "a"})["api_key"], lanes=2)
    agent_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    job = root.create("Job", {"compute": {"command": ["sh", "-c", "sleep 3; echo ok"],
                                          "items": "1-4", "bucket_size": 2, "retries": 0}})
    wait_for(lambda: len(root.find(f"task WHERE job.id={job['id']} AND status=executing")) == 2,
             what="two tasks running")
    port = hub.info["port"]
    assert hub.stop() == 0
    time.sleep(5)  # longer than a lease: the tasks go on, reports wait in the outbox
    hub.section = {**hub.section, "port": port}
    hub.write_config()
    hub.start()
    root = Session(hub.url, username="root", password=ROOT_PASSWORD)
    done = wait_for(lambda: ended(root, job["id"]), timeout=60, what="job to end")
    assert done["status"] == "done"
    tasks = root.find(f"task WHERE job.id={job['id']}", attributes=["*", "log_tail"])
    assert all(t["attempts"] == 0 and t["source"]["client"] == agent_id for t in tasks), tasks
    assert all(t["log_tail"] == "ok\n" for t in tasks)


def test_abort_kills_the_whole_tree_within_a_heartbeat(fast_hub: Hub, root: Session,
                                                       start_agent) -> None:
    start_agent(fast_hub, root.create("Node", {"name": "a"})["api_key"], lanes=1)
    job = root.create("Job", {"compute": {
        "command": ["sh", "-c", "sleep 300 & (setsid sleep 300 &); sh -c 'sleep 300' & "
                                "sleep 300"], "items": "1", "grace": 0.5}})
    task = wait_for(lambda: root.find_one(f"task WHERE job.id={job['id']} AND status=executing"),
                    what="task running")
    wait_for(lambda: len(task_processes(task["id"])) >= 5, what="the task's tree")
    root.update("job", job["id"], {"status": "aborted"})
    # one heartbeat (1 s) plus the grace (0.5 s) is what it may take; the deadline is generous
    wait_for(lambda: not task_processes(task["id"]), timeout=4, interval=0.05,
             what="every process of the task gone")
    after = root.get("Task", task["id"])
    assert after["status"] == "failed" and after["message"] == "aborted"
    job_after = root.get("Job", job["id"])
    assert job_after["status"] == "aborted" and job_after["finished"]


def test_pause_hands_back_unstarted_work_and_resume_finishes(fast_hub: Hub, root: Session,
                                                             start_agent) -> None:
    start_agent(fast_hub, root.create("Node", {"name": "a"})["api_key"], lanes=1)
    job = root.create("Job", {"compute": {"command": ["sh", "-c", "sleep 1"], "items": "1-6",
                                          "bucket_size": 3}})
    wait_for(lambda: root.find(f"task WHERE job.id={job['id']} AND status=executing"),
             what="first task running")
    root.update("job", job["id"], {"status": "paused"})
    # the running task finishes; the rest of its bucket comes back; nothing new starts
    settled = wait_for(lambda: (c := root.get("Job", job["id"])["counts"]).keys() ==
                       {"done", "queued"} and c, timeout=10, what="pause to settle")
    assert settled["done"] in (1, 2)  # the pause reached the agent during task 1 or task 2
    time.sleep(2)
    assert root.get("Job", job["id"])["counts"] == settled
    assert root.get("Job", job["id"])["status"] == "paused"
    root.update("job", job["id"], {"status": "waiting"})
    done = wait_for(lambda: ended(root, job["id"]), timeout=60, what="job to end")
    assert done["counts"] == {"done": 6}
    assert all(t["attempts"] == 0 for t in root.find(f"task WHERE job.id={job['id']}"))


def test_failures_retry_then_fail_with_the_reason(fast_hub: Hub, root: Session,
                                                  start_agent) -> None:
    start_agent(fast_hub, root.create("Node", {"name": "a"})["api_key"], lanes=2)
    job = root.create("Job", {"compute": {
        "command": ["sh", "-c", "echo try $FERRY_ATTEMPT; test $FERRY_ATTEMPT -ge 2 || exit 4"],
        "items": "1-2", "retries": 1}})
    flaky = wait_for(lambda: ended(root, job["id"]), timeout=60, what="flaky job to end")
    assert flaky["status"] == "done"
    assert {t["attempts"] for t in root.find(f"task WHERE job.id={job['id']}")} == {1}
    job = root.create("Job", {"compute": {"command": ["sh", "-c", "exit 7"], "items": "1",
                                          "retries": 1}})
    failed = wait_for(lambda: ended(root, job["id"]), timeout=60, what="failing job to end")
    assert failed["status"] == "failed"
    task = root.find_one(f"task WHERE job.id={job['id']}")
    assert task["status"] == "failed" and task["exit_code"] == 7 and task["attempts"] == 2
    assert task["message"] == "exit code 7"
    job = root.create("Job", {"compute": {"command": ["sleep", "30"], "items": "1",
                                          "timeout": 0.5, "grace": 0.2, "retries": 0}})
    slow = wait_for(lambda: ended(root, job["id"]), timeout=60, what="timed out job to end")
    task = root.find_one(f"task WHERE job.id={job['id']}")
    assert slow["status"] == "failed" and task["message"].startswith("timed out after 0.5 s")
    job = root.create("Job", {"compute": {"command": ["no-such-program-here"], "items": "1",
                                          "retries": 0}})
    wait_for(lambda: ended(root, job["id"]), timeout=60, what="missing program job to end")
    task = root.find_one(f"task WHERE job.id={job['id']}")
    assert "not found" in task["message"] and task["exit_code"] is None


def test_stop_drains(fast_hub: Hub, root: Session, start_agent) -> None:
    agent = start_agent(fast_hub, root.create("Node", {"name": "a"})["api_key"], lanes=1,
                        drain_timeout=30)
    job = root.create("Job", {"compute": {"command": ["sh", "-c", "sleep 1; echo finished"],
                                          "items": "1-3", "bucket_size": 3}})
    first = wait_for(lambda: root.find_one(
        f"task WHERE job.id={job['id']} AND status=executing"), what="first task running")
    assert agent.stop() == 0  # SIGTERM: the running task finishes, the rest go back
    after = {t["id"]: t for t in root.find(f"task WHERE job.id={job['id']}",
                                           attributes=["*", "log_tail"])}
    assert after[first["id"]]["status"] == "done" and after[first["id"]]["log_tail"] == "finished\n"
    others = [t for t in after.values() if t["id"] != first["id"]]
    assert all(t["status"] == "queued" and t["attempts"] == 0 for t in others)


def test_abort_skips_the_rest_of_the_bucket(fast_hub: Hub, root: Session, start_agent) -> None:
    start_agent(fast_hub, root.create("Node", {"name": "a"})["api_key"], lanes=1)
    job = root.create("Job", {"compute": {"command": ["sleep", "30"], "items": "1-4",
                                          "bucket_size": 4, "grace": 0.2}})
    first = wait_for(lambda: root.find_one(f"task WHERE job.id={job['id']} AND status=executing"),
                     what="first task running")
    root.update("job", job["id"], {"status": "aborted"})
    wait_for(lambda: not task_processes(job_id=job["id"]), timeout=5, interval=0.05,
             what="the job's processes gone")
    time.sleep(2)  # the other three must not start, one after the other
    assert not task_processes(job_id=job["id"])
    tasks = root.find(f"task WHERE job.id={job['id']}")
    assert {t["status"] for t in tasks} == {"failed"}  # all four were leased when it aborted
    assert [t["id"] for t in tasks if t["started"]] == [first["id"]]  # one ever ran


def test_big_reports_are_split_and_the_agent_goes_on(start_hub, start_agent) -> None:
    # leases as long as a real hub's: this is about report sizes, and 2.4 MB of tails and
    # as much of logs can hold heartbeats up for more than a 3 s lease on a busy machine
    hub = start_hub(lease_seconds=20, heartbeat_interval=1)
    root = Session(hub.url, username="root", password=ROOT_PASSWORD)
    agent = start_agent(hub, root.create("Node", {"name": "a"})["api_key"], lanes=2)
    # 400 tasks with 6 KiB of output each: one report batch would be ~2 MB
    job = root.create("Job", {"compute": {
        "command": ["sh", "-c", "head -c 6000 /dev/zero | tr '\\\\0' x"], "items": "1-400",
        "bucket_size": 200}})
    done = wait_for(lambda: ended(root, job["id"]), timeout=120, what="job to end")
    assert done["counts"] == {"done": 400}
    log = agent.log()
    assert agent.alive and "dropping it" not in log and "body_too_large" not in log
    task = root.find_one(f"task WHERE job.id={job['id']}", attributes=["*", "log_tail"])
    assert len(task["log_tail"]) == 4096
    assert not root.find(f"task WHERE job.id={job['id']} AND attempts>0"), "no lease was lost"


def test_a_claim_whose_agent_hung_up_leases_nothing(start_hub) -> None:
    """An agent killed while its claim waits at the hub must not be handed the next task:
    nobody would run it until its lease ran out."""
    import json
    from http.client import HTTPConnection

    from tests.helpers import http

    hub = start_hub(lease_seconds=60)
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    status, enrolled = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": session.create("Node", {"name": "n1"})["api_key"], "machine_id": "m" * 12, "code": "box",
        "lanes": 1})
    assert status == 200, enrolled
    auth = {"Authorization": f"Bearer {enrolled['token']}",
            "Content-Type": "application/json"}
    claim = json.dumps({"lanes": enrolled["lanes"], "wait": 20}).encode()
    host, port = hub.url.removeprefix("http://").split(":")
    dying = HTTPConnection(host, int(port), timeout=30)
    dying.request("POST", "/api/v1/agent/claim", claim, auth)
    time.sleep(0.5)  # the claim waits at the hub for work...
    dying.sock.close()  # ...and its agent dies
    time.sleep(0.3)
    job = session.create("Job", {"compute": {"command": ["true"], "items": "1"}})
    status, answer = http("POST", f"{hub.api}/agent/claim",
                          {"lanes": enrolled["lanes"], "wait": 5},
                          headers={"Authorization": f"Bearer {enrolled['token']}"})
    assert status == 200, answer
    assert [b["job_id"] for b in answer["buckets"]] == [job["id"]], "the live claim got it"
    task = session.find_one(f"task WHERE job.id={job['id']}")
    assert task["attempts"] == 0
