"""Compute jobs end to end: a real hub, real agents with lanes, real processes."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hub import Session
from tests.helpers import Hub, http, wait_for


def job_done(session: Session, job_id: str) -> dict[str, Any] | None:
    job = session.get("Job", job_id)
    return job if job["status"] in ("done", "failed", "aborted") else None


def test_200_tasks_on_2_lanes(hub: Hub, session: Session, node_key, start_agent) -> None:
    agent = start_agent(hub, node_key("render01")["api_key"], lanes=2)
    agent_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    lanes = session.find(f"Client where parent={agent_id}")
    assert len(lanes) == 2 and {c["type"] for c in lanes} == {5}
    assert {c["type_hr"] for c in lanes} == {"compute lane"}

    job = session.create("Job", {"code": "frames", "compute": {
        "command": ["sh", "-c", "echo frame $FERRY_ITEM of {job} on $FERRY_LANE; "
                                "test $((FERRY_ITEM % 50)) -ne 0 || echo to stderr >&2"],
        "items": "1-200", "bucket_size": 4, "retries": 0}})
    assert job["code"] == "frames" and job["status"] in ("waiting", "running")
    assert job["counts"] == {"queued": 200} or sum(job["counts"].values()) == 200
    done = wait_for(lambda: job_done(session, job["id"]), timeout=120, what="job to end")
    assert done["status"] == "done" and done["progress"] == 100 and done["finished"]
    assert done["counts"] == {"done": 200}

    tasks = session.find(f"task WHERE job.id={job['id']}", attributes=["*", "log_tail"])
    assert len(tasks) == 200
    by_item = {t["item"]: t for t in tasks}
    assert set(by_item) == {str(n) for n in range(1, 201)}
    for item, task in by_item.items():
        assert task["status"] == "done" and task["exit_code"] == 0
        assert task["log_tail"].startswith(f"frame {item} of {job['id']} on ")
        assert task["source"]["lane"] in {c["id"] for c in lanes}
        assert task["source"]["client"] == agent_id
        assert task["time"] is not None and task["time"] >= 0
        assert task["cpu_seconds"] is not None
    assert "to stderr" in by_item["50"]["log_tail"]
    # both lanes worked; each bucket of 4 tasks shares one time (jobs.rst)
    assert len(Counter(t["source"]["lane"] for t in tasks)) == 2
    buckets: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        buckets.setdefault(task["bucket"], []).append(task)
    assert len(buckets) == 50
    for members in buckets.values():
        assert len(members) == 4
        assert len({(t["time"], t["source"]["lane"]) for t in members}) == 1
    # the whole log can be fetched from the hub
    token = session._token
    status, text = http("GET", f"{hub.api}/task/{by_item['7']['id']}/log", token=token)
    assert status == 200 and text.startswith(f"frame 7 of {job['id']}")
    assert session.task_log(by_item["50"]["id"]).endswith("to stderr\n")


def test_logs_of_each_run(hub: Hub, session: Session, node_key, start_agent) -> None:
    """A long log is uploaded whole, one file per run; a short one is its own tail; bytes
    that are not UTF-8 are kept; a run that failed keeps its log after a retry."""
    import urllib.request

    start_agent(hub, node_key("render01")["api_key"], lanes=2)
    script = ('if [ "$FERRY_ITEM" = binary ]; then printf "\\377\\376abc"; '
              'elif [ "$FERRY_ITEM" = nul ]; then printf "a\\000b"; '
              'elif [ "$FERRY_ATTEMPT" = 1 ]; then head -c 9000 /dev/zero | tr "\\0" f; '
              'echo; echo first run failed; exit 4; else echo ok; fi')
    job = session.create("Job", {"compute": {"command": ["sh", "-c", script],
                                             "items": ["retried", "binary", "nul"],
                                             "retries": 1}})
    done = wait_for(lambda: job_done(session, job["id"]), timeout=60, what="job to end")
    assert done["status"] == "done"
    tasks = {t["item"]: t for t in session.find(f"task WHERE job.id={job['id']}",
                                                 attributes=["*", "log_tail"])}

    # the retried task shows its own (second) run: short, so the tail is the whole log
    retried = tasks["retried"]
    assert retried["attempts"] == 1 and retried["log_tail"] == "ok\n"
    assert not retried["has_log"]
    assert session.task_log(retried["id"]) == "ok\n"
    # the failed first run's whole log was kept at the hub, in a file of its own
    folder = hub.paths.data_dir / "logs" / job["id"]
    runs = sorted(folder.glob(f"{retried['id']}.*.log"))
    assert len(runs) == 1 and runs[0].read_text().endswith("first run failed\n")
    assert runs[0].stat().st_size == 9000 + len("\nfirst run failed\n")

    # bytes that are not UTF-8: the tail shows U+FFFD, the uploaded log has the bytes
    binary = wait_for(lambda: (t := session.get("Task", tasks["binary"]["id"]))["has_log"]
                      and t, what="binary log flagged")
    assert "\ufffd" in binary["log_tail"]
    request = urllib.request.Request(f"{hub.api}/task/{binary['id']}/log",
                                     headers={"Authorization": f"Bearer {session._token}"})
    raw = wait_for(lambda: (body := urllib.request.urlopen(request).read()) == b"\xff\xfeabc"
                   and body, what="binary log uploaded")
    assert raw == b"\xff\xfeabc"
    # a NUL character: shown as U+FFFD (no database keeps NUL in text), the log has the byte
    nul = wait_for(lambda: (t := session.get("Task", tasks["nul"]["id"]))["has_log"] and t,
                   what="NUL log flagged")
    assert nul["log_tail"] == "a\ufffdb"
    wait_for(lambda: session.task_log(nul["id"]) == "a\x00b", what="NUL log uploaded")
