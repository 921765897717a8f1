"""What every lease shares: the next queued tasks of a job, and the end of leases.

A bucket's tasks are taken with ``FOR UPDATE SKIP LOCKED``: several hub processes on one
PostgreSQL database claim at once, and each takes tasks no other holds (SQLite has one
writer, and renders no FOR UPDATE). Which tasks a bucket takes, and what the agent gets
for them, is each kind's (``kind.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from hub.counting import noted
from hub.jobs import status as st
from hub.storage.models import Bucket, Job, Task
from hub.webhooks import events

# a job's next queued tasks, with the columns a kind builds the agent's work from
NEXT_TASKS = (select(Task.id, Task.uri, Task.item, Task.attempts, Task.destination, Task.size)
              .where(Task.job_id == bindparam("job"), Task.status == st.TaskStatus.QUEUED)
              .order_by(Task.priority.desc(), Task.seq).limit(bindparam("n"))
              .with_for_update(skip_locked=True))
_Done = aliased(Task)
# the same, of a job waiting for the items of job ``after`` (hub/jobs/dependencies.py):
# only tasks whose item is done there (one pass over its done items, hashed, per bucket)
NEXT_MATCHED_TASKS = NEXT_TASKS.where(Task.item.in_(
    select(_Done.item).where(_Done.job_id == bindparam("after"),
                             _Done.status == st.TaskStatus.DONE)))


def release(conn: Connection, bucket_ids: list[str], bucket_status: str,
                  now: datetime, why: str, *, penalty: bool = True) -> None:
    """End these leases. Their unfinished tasks go back to the queue with one more attempt,
    or fail once the job's retries are used up; a task being killed takes its new status."""
    if not bucket_ids:
        return
    conn.execute(update(Bucket).where(Bucket.id.in_(bucket_ids)).values(
        status=bucket_status, ended=now))
    rows = (conn.execute(select(Task.id, Task.job_id, Task.attempts, Task.abort_to,
                                      Job.spec).join(Job, Job.id == Task.job_id).where(
        Task.bucket_id.in_(bucket_ids),
        or_(Task.status.in_(st.RUNNING_TASK), Task.abort_to.is_not(None))))).all()
    tally = noted()  # for the hub's metrics (hub/counting.py)
    failed: list[str] = []  # runs failed for good: news for webhooks
    for row in rows:
        if row.abort_to is not None:
            values: dict[str, Any] = {"status": row.abort_to, "abort_to": None}
            if row.abort_to in st.RUN_AGAIN:
                values.update(st.FRESH_RUN)
        elif not penalty:
            values = {**st.FRESH_RUN, "status": st.TaskStatus.QUEUED, "message": why}
        elif row.attempts + 1 > row.spec.get("retries", 0):
            values = {"status": st.TaskStatus.FAILED, "attempts": row.attempts + 1,
                      "message": f"{why} (attempt {row.attempts + 1}; no retries left)",
                      "finished": now}
        else:
            values = {**st.FRESH_RUN, "status": st.TaskStatus.QUEUED,
                      "attempts": row.attempts + 1, "message": f"{why}; queued again"}
        values["modified"] = now
        conn.execute(update(Task).where(Task.id == row.id).values(**values))
        if row.abort_to is None and values["status"] == st.TaskStatus.FAILED:
            failed.append(row.id)
        if row.abort_to is None:  # a kill a user asked for ended the task already
            tally.ends["failed" if values["status"] == st.TaskStatus.FAILED else "requeued"] += 1
    events.tasks_failed(conn, failed, now)
    st.refresh(conn, {r.job_id for r in rows}, now)
