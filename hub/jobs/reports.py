"""Agent reports: what happened to tasks and buckets, applied once each.

Every item carries an idempotency key; a key seen before is answered
``duplicate`` and changes nothing, so an agent may resend its whole outbox.
An item about a lease the agent no longer holds is ``refused``: the task was
(or will be) given to another agent, and only that run counts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.jobs import status as st
from hub.query.fields import parse_time
from hub.storage.models import Bucket, Job, ReportKey, Task
from protocol import BucketReport, ReportResult, TaskReport

T = st.TaskStatus


def _time(text: str | None, fallback: datetime) -> datetime:
    if not text:
        return fallback
    try:
        return parse_time(text)
    except (ValueError, OverflowError):
        return fallback


async def apply(conn: AsyncConnection, client_id: str, items: list[TaskReport | BucketReport],
                now: datetime) -> list[ReportResult]:
    keys = [i.key for i in items]
    seen = {r.key for r in (await conn.execute(
        select(ReportKey.key).where(ReportKey.key.in_(keys)))).all()}
    bucket_ids = {i.bucket_id for i in items}
    buckets = {r.id: r for r in (await conn.execute(select(
        Bucket.id, Bucket.client_id, Bucket.status, Bucket.job_id, Bucket.created)
        .where(Bucket.id.in_(bucket_ids)))).all()}
    task_ids = [i.task_id for i in items if isinstance(i, TaskReport)]
    tasks = {r.id: r for r in (await conn.execute(
        select(Task.id, Task.job_id, Task.status, Task.bucket_id, Task.attempts, Task.abort_to,
               Job.spec).join(Job, Job.id == Task.job_id).where(Task.id.in_(task_ids)))).all()}
    results: list[ReportResult] = []
    touched: set[str] = set()
    fresh: list[str] = []
    for item in items:
        if item.key in seen:
            results.append(ReportResult(key=item.key, outcome="duplicate"))
            continue
        bucket = buckets.get(item.bucket_id)
        if bucket is None or bucket.client_id != client_id:
            results.append(ReportResult(key=item.key, outcome="refused",
                                        reason="no such bucket leased to this agent"))
            continue
        if isinstance(item, BucketReport):
            await _bucket_done(conn, item, bucket, now)
            touched.add(bucket.job_id)
        else:
            reason = await _task_event(conn, item, bucket, tasks.get(item.task_id), now)
            if reason:
                results.append(ReportResult(key=item.key, outcome="refused", reason=reason))
                continue
            touched.add(bucket.job_id)
        seen.add(item.key)
        fresh.append(item.key)
        results.append(ReportResult(key=item.key, outcome="applied"))
    if fresh:
        await conn.execute(insert(ReportKey), [{"key": k, "received": now} for k in fresh])
    await st.refresh(conn, touched, now)
    return results


async def _task_event(conn: AsyncConnection, item: TaskReport, bucket: Any, task: Any,
                      now: datetime) -> str:
    """Apply one task event; returns why it was refused, or '' when applied."""
    if task is None or task.bucket_id != bucket.id:
        return "lease lost: this task now belongs to another lease"
    if bucket.status != "leased" and not (bucket.status == "done" and item.event == "done"):
        return f"lease lost ({bucket.status})"
    at = _time(item.at, now)
    values: dict[str, Any] = {"modified": now}
    if task.abort_to is not None:
        # a kill the hub asked for: the task already shows its new status
        if item.event in ("aborted", "returned", "failed", "done"):
            values["abort_to"] = None
            if task.abort_to == T.QUEUED:
                values.update(status=T.QUEUED, bucket_id=None)
        await conn.execute(update(Task).where(Task.id == task.id).values(**values))
        return ""
    if task.status not in st.RUNNING_TASK:
        return f"task is {task.status}, not running"
    if item.event == "started":
        values.update(status=T.EXECUTING, started=at)
        await conn.execute(update(Job).where(Job.id == task.job_id, Job.started.is_(None))
                           .values(started=at))
    elif item.event in ("returned", "aborted"):  # handed back unfinished: no attempt spent
        values.update(status=T.QUEUED, bucket_id=None, message=item.message)
    else:
        values.update(exit_code=item.exit_code, message=item.message, log_tail=item.log_tail,
                      cpu_seconds=item.cpu_seconds, peak_memory=item.peak_memory,
                      has_log=item.log_size > 0)
        if item.started:
            values["started"] = _time(item.started, at)
            await conn.execute(update(Job).where(Job.id == task.job_id, Job.started.is_(None))
                               .values(started=values["started"]))
        if item.event == "done":
            values.update(status=T.DONE, finished=at)
        elif task.attempts + 1 > task.spec.get("retries", 0):
            values.update(status=T.FAILED, finished=at, attempts=task.attempts + 1)
        else:  # another try, on whichever agent claims it
            values.update(status=T.QUEUED, bucket_id=None, attempts=task.attempts + 1,
                          message=f"{item.message} (attempt {task.attempts + 1} failed; "
                          "queued again)".strip())
    await conn.execute(update(Task).where(Task.id == task.id).values(**values))
    return ""


async def _bucket_done(conn: AsyncConnection, item: BucketReport, bucket: Any,
                       now: datetime) -> None:
    """The bucket ran to its end: its time (jobs.rst: per bucket, as dispatched) goes on
    each of its tasks; a task it never reported goes back to the queue."""
    started, ended = _time(item.started, now), _time(item.ended, now)
    elapsed = max(0, int((ended - started).total_seconds() * 1000))
    await conn.execute(update(Bucket).where(Bucket.id == bucket.id).values(
        status="done" if bucket.status == "leased" else bucket.status, started=started,
        ended=ended, time=elapsed))
    await conn.execute(update(Task).where(Task.bucket_id == bucket.id).values(time=elapsed))
    await conn.execute(update(Task).where(
        Task.bucket_id == bucket.id, Task.status.in_(st.RUNNING_TASK),
        Task.abort_to.is_(None)).values(status=T.QUEUED, bucket_id=None, modified=now,
                                        message="not run by its bucket; queued again"))
