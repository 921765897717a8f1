"""Agent reports: what happened to tasks and buckets, applied once each.

Every item carries an idempotency key; a key seen before is answered
``duplicate`` and changes nothing, so an agent may resend its whole outbox.
A key is the reporting agent's own, within the bucket it names: an item about a
bucket that was never leased to this agent is ``refused`` before its key is
looked at, so no agent can spend (and so drop) another's reports. An item about
a lease the agent no longer holds is ``refused`` too: the task was (or will be)
given to another agent, and only that run counts.

A batch is applied in memory first (a task may have several events in one
batch) and then written with one prepared statement for all its tasks: a
report of 500 task ends costs a handful of statements, not 500. It is one
transaction of ``Database.run``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from core import refusals
from hub.counting import noted
from hub.jobs import status as st
from hub.jobs.docker import check_result
from hub.jobs.progress import merged_outputs
from hub.jobs.status import storable
from hub.query.fields import parse_time
from hub.storage.models import Bucket, Job, ReportKey, Task
from hub.webhooks import events
from protocol import BucketReport, Report, ReportResult, TaskReport, whole_log_needed

T = st.TaskStatus
# a running task's new status, as the hub's metrics count it (hub/counting.py)
ENDS = {T.DONE: "finished", T.FAILED: "failed", T.QUEUED: "requeued"}

# every column a report may change; a touched task is written whole
MUTABLE = ("status", "bucket_id", "attempts", "exit_code", "message", "log_tail", "has_log",
           "cpu_seconds", "peak_memory", "started", "finished", "abort_to", "size",
           "transferred", "result", "progress", "stage", "outputs")
_write_tasks = update(Task).where(Task.id == bindparam("b_id")).values(
    {name: bindparam(f"b_{name}") for name in (*MUTABLE, "modified")})
_start_job = update(Job).where(Job.id == bindparam("b_id"), Job.started.is_(None)).values(
    started=bindparam("b_started"))
# an agent's keys are its own, per bucket: another agent's reports can never spend them
_seen = select(ReportKey.bucket_id, ReportKey.key).where(
    ReportKey.client_id == bindparam("client"),
    ReportKey.bucket_id.in_(bindparam("buckets", expanding=True)),
    ReportKey.key.in_(bindparam("keys", expanding=True)))
_buckets = select(Bucket.id, Bucket.client_id, Bucket.status, Bucket.job_id).where(
    Bucket.id.in_(bindparam("ids", expanding=True)))
_tasks = select(Task.id, Task.job_id, *(getattr(Task, c) for c in MUTABLE)).where(
    Task.id.in_(bindparam("ids", expanding=True)))
_specs = select(Job.id, Job.spec).where(Job.id.in_(bindparam("ids", expanding=True)))


def _time(text: str | None, fallback: datetime) -> datetime:
    if not text:
        return fallback
    try:
        return parse_time(text)
    except (ValueError, OverflowError):
        return fallback


def apply(conn: Connection, client_id: str, items: list[Report], now: datetime
          ) -> list[ReportResult]:
    tally = noted()  # for the hub's metrics (hub/counting.py)
    buckets = {r.id: r for r in (conn.execute(
        _buckets, {"ids": list({i.bucket_id for i in items})})) if r.client_id == client_id}
    seen = {(r.bucket_id, r.key) for r in conn.execute(_seen, {
        "client": client_id, "buckets": list(buckets), "keys": [i.key for i in items]})
            } if buckets else set()
    task_ids = list({i.task_id for i in items if isinstance(i, TaskReport)})
    rows = (conn.execute(_tasks, {"ids": task_ids})).mappings().all() if task_ids else []
    tasks = {r["id"]: dict(r) for r in rows}
    job_ids = list({t["job_id"] for t in tasks.values()})
    specs: dict[str, dict[str, Any]] = {}
    if job_ids:
        specs = dict(conn.execute(_specs, {"ids": job_ids}).all())
    for row in tasks.values():
        row["retries"] = int(specs[row["job_id"]].get("retries", 0))
        row["spec"] = specs[row["job_id"]]
    changed: set[str] = set()
    job_started: dict[str, datetime] = {}
    ended: list[tuple[BucketReport, Any]] = []
    results: list[ReportResult] = []
    fresh: list[tuple[str, str]] = []
    failed: list[str] = []  # tasks whose run failed for good: news for webhooks
    frames: dict[str, str] = {}  # a frame sequence's missing frames, by job
    for item in items:
        bucket = buckets.get(item.bucket_id)  # ownership first: only then is a key looked at
        if bucket is None:
            refusals.refused("report", f"client {client_id}", "no such bucket leased to "
                             "this agent", bucket=item.bucket_id, key=item.key)
            results.append(ReportResult(key=item.key, outcome="refused",
                                        reason="no such bucket leased to this agent"))
            continue
        if (item.bucket_id, item.key) in seen:
            results.append(ReportResult(key=item.key, outcome="duplicate"))
            continue
        if isinstance(item, BucketReport):
            ended.append((item, bucket))  # after the task events of this batch are written
        else:
            task = tasks.get(item.task_id)
            before = task["status"] if task is not None else None
            reason = _task_event(item, bucket, task, now)
            if reason:
                results.append(ReportResult(key=item.key, outcome="refused", reason=reason))
                continue
            assert task is not None
            if item.missing_frames is not None:
                frames[task["job_id"]] = storable(item.missing_frames)
            if before in st.RUNNING_TASK and task["status"] in ENDS:
                tally.ends[ENDS[task["status"]]] += 1
            if before != T.FAILED and task["status"] == T.FAILED:
                failed.append(task["id"])
            changed.add(task["id"])
            if task["started"] is not None:
                first = job_started.get(task["job_id"])
                job_started[task["job_id"]] = min(first, task["started"]) if first else \
                    task["started"]
        seen.add((item.bucket_id, item.key))
        fresh.append((item.bucket_id, item.key))
        results.append(ReportResult(key=item.key, outcome="applied"))
    if changed:
        conn.execute(_write_tasks, [
            {"b_id": t, "b_modified": now, **{f"b_{c}": tasks[t][c] for c in MUTABLE}}
            for t in changed])
    for job_id, missing in frames.items():
        conn.execute(update(Job).where(Job.id == job_id).values(frames_missing=missing))
    if job_started:
        conn.execute(_start_job, [{"b_id": j, "b_started": s}
                                        for j, s in job_started.items()])
    for item, bucket in ended:
        _bucket_done(conn, item, bucket, now)
    if fresh:
        conn.execute(insert(ReportKey), [{"client_id": client_id, "bucket_id": b, "key": k,
                                          "received": now} for b, k in fresh])
    events.tasks_failed(conn, failed, now)
    st.refresh(conn, {b.job_id for b in buckets.values()}, now)
    tally.report_items.update(r.outcome for r in results)
    return results


def _task_event(item: TaskReport, bucket: Any, task: dict[str, Any] | None,
                now: datetime) -> str:
    """Apply one event to the task's row (in memory); returns why it was refused, or ''."""
    if task is None or task["bucket_id"] != bucket.id:
        return "lease lost: this task now belongs to another lease"
    if bucket.status != "leased" and not (bucket.status == "done" and item.event == "done"):
        return f"lease lost ({bucket.status})"
    at = _time(item.at, now)
    if task["abort_to"] is not None:
        # a kill the hub asked for: the task already shows its new status
        if item.event != "started":
            if task["abort_to"] in st.RUN_AGAIN:
                task.update(st.FRESH_RUN, status=task["abort_to"])
            task["abort_to"] = None
        return ""
    if task["status"] not in st.RUNNING_TASK:
        return f"task is {task['status']}, not running"
    if item.event == "started":
        task.update(status=T.EXECUTING, started=at)
    elif item.event in ("returned", "aborted"):  # handed back unfinished: no attempt spent
        task.update(st.FRESH_RUN, status=T.QUEUED, message=storable(item.message))
    else:
        tail = storable(item.log_tail)
        task.update(exit_code=item.exit_code, message=storable(item.message), log_tail=tail,
                    cpu_seconds=item.cpu_seconds, peak_memory=item.peak_memory,
                    has_log=whole_log_needed(item.log_size, item.log_tail))
        if item.started:
            task["started"] = _time(item.started, at)
        _said(item, task)
        if item.size is not None:  # a transfer: its bytes, all of them moved when done
            task.update(size=item.size, transferred=item.size if item.event == "done"
                        else min(task["transferred"], item.size))
        unkept = check_result(item.result, task["spec"]) if item.result is not None else ""
        if item.event == "done" and unkept:  # a run whose result cannot be kept failed
            task.update(status=T.FAILED, finished=at, attempts=task["attempts"] + 1,
                        message=unkept)
        elif item.event == "done":
            task.update(status=T.DONE, finished=at)
            if item.result is not None:
                task["result"] = item.result
        elif task["attempts"] + 1 > task["retries"]:
            task.update(status=T.FAILED, finished=at, attempts=task["attempts"] + 1)
        else:  # another try, on whichever agent claims it
            task.update(st.FRESH_RUN, status=T.QUEUED, attempts=task["attempts"] + 1,
                        message=f"{storable(item.message)} (attempt {task['attempts'] + 1} failed; "
                        "queued again)".strip())
    return ""


def _said(item: TaskReport, task: dict[str, Any]) -> None:
    """A compute run's progress lines, all of them (``hub/jobs/progress.py``): they replace
    what its heartbeats brought (a run queued again forgets them with the rest)."""
    if item.progress is not None:
        task["progress"] = item.progress
    if item.stage is not None:
        task["stage"] = item.stage
    if item.outputs is not None:
        task["outputs"] = merged_outputs([], item.outputs)


def _bucket_done(conn: Connection, item: BucketReport, bucket: Any,
                       now: datetime) -> None:
    """The bucket ran to its end: its time (jobs.rst: per bucket, as dispatched) goes on
    each of its tasks; a task it never reported goes back to the queue."""
    started, ended = _time(item.started, now), _time(item.ended, now)
    elapsed = max(0, int((ended - started).total_seconds() * 1000))
    conn.execute(update(Bucket).where(Bucket.id == bucket.id).values(
        status="done" if bucket.status == "leased" else bucket.status, started=started,
        ended=ended, time=elapsed))
    conn.execute(update(Task).where(Task.bucket_id == bucket.id).values(time=elapsed))
    unrun = conn.execute(update(Task).where(
        Task.bucket_id == bucket.id, Task.status.in_(st.RUNNING_TASK),
        Task.abort_to.is_(None)).values(**st.FRESH_RUN, status=T.QUEUED, modified=now,
                                        message="not run by its bucket; queued again"))
    noted().ends["requeued"] += unrun.rowcount
