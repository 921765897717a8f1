"""Jobs that wait for other jobs, run by a real agent (issue 18).

Each task of a job waited for leaves a marker file when it ends; each task of a job that
waits checks, when it starts, that the markers it depends on are there, and fails (no
retries) when one is not. So a job that waits ends ``done`` only if none of its tasks
started too early, whatever the order the agent happened to run them in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub import Session
from tests.e2e.test_compute import job_done
from tests.helpers import Hub, wait_for


def marking(folder: Path, prefix: str, *, slow: bool = False) -> list[str]:
    """A command that leaves ``<prefix><item>`` in ``folder`` as its last act."""
    pause = "sleep 0.2; " if slow else ""
    return ["sh", "-c", f'{pause}touch "{folder}/{prefix}$FERRY_ITEM"']


def checking(folder: Path, needs: str, prefix: str) -> list[str]:
    """A command that fails unless every marker ``needs`` names (a shell glob or word list
    under ``folder``) is there, then leaves its own."""
    return ["sh", "-c", f'cd "{folder}" && for f in {needs}; do test -e "$f" || exit 3; done; '
                        f'touch "{prefix}$FERRY_ITEM"']


def wait_done(session: Session, job_id: str) -> dict[str, Any]:
    return dict(wait_for(lambda: job_done(session, job_id), timeout=90, what="job to end"))


def test_after_and_after_items_on_a_real_agent(hub: Hub, session: Session, node_key,
                                               start_agent, tmp_path: Path) -> None:
    start_agent(hub, node_key("render01")["api_key"], lanes=3)
    marks = tmp_path / "marks"
    marks.mkdir()
    render = session.create("Job", {"compute": {
        "command": marking(marks, "render", slow=True), "items": "1-6", "retries": 0}})
    # item N of comp needs render's item N; it outranks render, so it runs as early as
    # it may
    comp = session.create("Job", {"priority": 1000, "after_items": render["id"], "compute": {
        "command": checking(marks, "render$FERRY_ITEM", "comp"), "items": "1-6",
        "retries": 0}})
    # publish needs every frame of comp
    publish = session.create("Job", {"priority": 1000, "after": [comp["id"]], "compute": {
        "command": checking(marks, " ".join(f"comp{n}" for n in range(1, 7)), "publish"),
        "items": "1", "retries": 0}})
    assert publish["status_reason"] == f"waiting for job {comp['id']}"

    for job in (render, comp, publish):
        done = wait_done(session, job["id"])
        assert (done["status"], done["counts"]) == ("done", {"done": len(
            session.find(f"Task where job={job['id']}"))}), done
    tasks = {(t["job"], t["item"]): t for job in (render, comp, publish)
             for t in session.find(f"Task where job={job['id']}")}
    for n in map(str, range(1, 7)):  # as the hub saw it too: item N after item N
        assert tasks[(comp["id"], n)]["started"] >= tasks[(render["id"], n)]["finished"]
    last_comp = max(tasks[(comp["id"], n)]["finished"] for n in map(str, range(1, 7)))
    assert tasks[(publish["id"], "1")]["started"] >= last_comp
    assert session.get("Job", publish["id"])["after_status"] == {comp["id"]: "done"}


def test_failure_fails_or_waits_for_a_retry(hub: Hub, session: Session, node_key,
                                            start_agent, tmp_path: Path) -> None:
    start_agent(hub, node_key("render01")["api_key"], lanes=2)
    ready = tmp_path / "ready"
    source = session.create("Job", {"compute": {
        "command": ["sh", "-c", f'test -e "{ready}"'], "items": "1", "retries": 0}})
    fails = session.create("Job", {"after": [source["id"]], "compute": {
        "command": ["true"], "items": "1-2"}})
    waits = session.create("Job", {"after": [source["id"]], "after_failed": "wait",
                                   "compute": {"command": ["true"], "items": "1-2"}})
    assert wait_done(session, source["id"])["status"] == "failed"
    failed = wait_done(session, fails["id"])
    assert (failed["status"], failed["status_reason"]) == \
        ("failed", f"job {source['id']} it waits for failed")
    wait_for(lambda: session.get("Job", waits["id"])["status_reason"] ==
             f"waiting for job {source['id']} to be retried (it failed)", what="the reason")
    assert session.get("Job", waits["id"])["counts"] == {"queued": 2}

    ready.touch()
    session.update("Job", source["id"], {"status": "waiting"})  # retried: now it works
    assert wait_done(session, source["id"])["status"] == "done"
    done = wait_done(session, waits["id"])
    assert (done["status"], done["counts"]) == ("done", {"done": 2})
    assert session.get("Job", fails["id"])["status"] == "failed"  # until resumed
