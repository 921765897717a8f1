"""Job and task statuses (jobs.rst), and keeping a job's status in step with its tasks.

A job's status is stored so that queries can use it. ``paused`` and
``aborted`` are set by users and stay until a user writes ``waiting``;
otherwise the status follows the tasks: ``running`` while any task is
booting or executing, ``waiting`` while tasks are queued or on hold,
``failed`` once every task has ended and one failed, else ``done``.

A job that waits for another (``after``, ``after_items``: ``dependencies.py``) with
``after_failed: fail`` fails with it: when the job it waits for is failed or aborted, its
queued tasks fail, saying which job, and so it does (and the jobs that wait for it in
turn). That is part of every refresh, so whichever way a job fails (a report, a lost
lease, a user's abort), the jobs that wait for it follow in the same transaction.

A job that becomes ``done`` or ``failed`` here is told to its organization's webhooks
(``job.done``, ``job.failed``: ``hub/webhooks/events.py``), and its hook for that status
is made (``hooks.py``), in the same transaction too.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from hub.jobs import hooks
from hub.storage.models import Job, JobDependency, Task, new_id
from hub.webhooks import events


class JobStatus(enum.StrEnum):
    INIT = "init"
    PENDING = "pending"
    WAITING = "waiting"
    RUNNING = "running"
    PAUSED = "paused"
    FAILED = "failed"
    ABORTED = "aborted"
    DONE = "done"


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    BOOTING = "booting"
    EXECUTING = "executing"
    FAILED = "failed"
    ONHOLD = "onhold"
    EXCLUDED = "excluded"
    DONE = "done"


class Waits(enum.StrEnum):
    """What a job waits for of another (``JobDependency.kind``)."""

    JOB = "job"  # all of it done (``after``)
    ITEMS = "items"  # its task of the same item done (``after_items``)


class AfterFailed(enum.StrEnum):
    """What a job does when a job it waits for fails or is aborted (``after_failed``)."""

    FAIL = "fail"  # it fails too, naming that job
    WAIT = "wait"  # it waits on, until that job is retried and done


# what a task queued again forgets of its last run (its message says why it runs again)
FRESH_RUN = {"bucket_id": None, "started": None, "finished": None, "time": None,
             "exit_code": None, "log_tail": "", "has_log": False, "cpu_seconds": None,
             "peak_memory": None, "transferred": 0, "result": "", "progress": None,
             "stage": None, "outputs": None}

def new_task(job_id: str, seq: int, item: str, now: Any, priority: int, **fields: Any
             ) -> dict[str, Any]:
    """A task row as it is inserted: queued, never run, numbered ``seq`` in its job;
    ``fields`` set others (a transfer's ``destination``, ``status``)."""
    return {"id": new_id(), "job_id": job_id, "uri": str(seq), "seq": seq, "item": item,
            "status": TaskStatus.QUEUED, "priority": priority, "size": -1, "attempts": 0,
            "message": "", "log_tail": "", "has_log": False, "meta": {}, "created": now,
            "modified": now, **fields}


JOB_WRITABLE = ("pending", "waiting", "paused", "aborted", "done")
TASK_WRITABLE = ("queued", "failed", "onhold", "excluded", "done")
HELD_BY_USER = (JobStatus.PAUSED, JobStatus.ABORTED)
FINISHED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.ABORTED)
ACTIVE = (JobStatus.INIT, JobStatus.WAITING, JobStatus.RUNNING)  # may be dispatched
RUNNING_TASK = (TaskStatus.BOOTING, TaskStatus.EXECUTING)
ENDED_TASK = (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.EXCLUDED)
# a task killed on its way to one of these runs afresh: it forgets the killed run
RUN_AGAIN = (TaskStatus.QUEUED, TaskStatus.PENDING)
SPEED_WINDOW = timedelta(seconds=60)
# a job that reaches one of these (by its tasks) is news for webhooks
ENDED_EVENT = {JobStatus.DONE: events.Event.JOB_DONE, JobStatus.FAILED: events.Event.JOB_FAILED}


@dataclass
class Counts:
    by_status: dict[str, int] = field(default_factory=dict)
    recent: int = 0  # tasks that ended within SPEED_WINDOW
    partial: float = 0.0  # running tasks' progress (0-100 each), as they said it

    def __getitem__(self, status: str) -> int:
        return self.by_status.get(status, 0)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def running(self) -> int:
        return sum(self[s] for s in RUNNING_TASK)

    @property
    def remaining(self) -> int:
        return self.running + self[TaskStatus.QUEUED] + self[TaskStatus.ONHOLD] + \
            self[TaskStatus.PENDING]


# built once: the hot paths run them for every report batch
_COUNTS = (select(Task.job_id, Task.status, func.count())
           .where(Task.job_id.in_(bindparam("ids", expanding=True)))
           .group_by(Task.job_id, Task.status))
_RECENT = (select(Task.job_id, func.count())
           .where(Task.job_id.in_(bindparam("ids", expanding=True)),
                  Task.finished >= bindparam("since"))
           .group_by(Task.job_id))
# the running tasks alone (an indexed range per job: a few per lane, however big the job)
_PARTIAL = (select(Task.job_id, func.sum(Task.progress))
            .where(Task.job_id.in_(bindparam("ids", expanding=True)),
                   Task.status.in_(RUNNING_TASK), Task.progress.is_not(None))
            .group_by(Task.job_id))
# locked, in id order: on PostgreSQL two reports of one job must not each count the other's
# tasks as still running (each would leave the job "running" with every task done). FOR NO
# KEY UPDATE (key_share): a claim holds the job's key-share lock (its bucket's foreign key)
# until it marks the job running; FOR UPDATE would queue before it, and each wait on the other
_JOBS = (select(Job.id, Job.status, Job.finished)
         .where(Job.id.in_(bindparam("ids", expanding=True)))
         .order_by(Job.id).with_for_update(key_share=True))


_After, _Waiting = aliased(Job), aliased(Job)
# the jobs ``after_failed: fail`` makes fail now: active, waiting for a failed or aborted
# job, among the jobs refreshed or the jobs that wait for them
_BLOCKED = (select(JobDependency.job_id, _After.id, _After.status)
            .join(_After, _After.id == JobDependency.after_id)
            .join(_Waiting, _Waiting.id == JobDependency.job_id)
            .where(JobDependency.on_failure == AfterFailed.FAIL,
                   _After.status.in_((JobStatus.FAILED, JobStatus.ABORTED)),
                   _Waiting.status.in_(ACTIVE),
                   or_(JobDependency.job_id.in_(bindparam("ids", expanding=True)),
                       JobDependency.after_id.in_(bindparam("ids", expanding=True))))
            .order_by(JobDependency.job_id, _After.id))


def task_counts(conn: Connection, job_ids: Iterable[str], now: datetime, *,
                recent: bool = False, partial: bool = False) -> dict[str, Counts]:
    """Tasks per status (from the index alone); with ``recent``, also those that ended
    within the last minute (an indexed range per job); with ``partial``, the progress
    running tasks said (``hub/jobs/progress.py``)."""
    ids = list(job_ids)
    out = {job_id: Counts() for job_id in ids}
    if not ids:
        return out
    for job_id, status, count in conn.execute(_COUNTS, {"ids": ids}):
        out[job_id].by_status[status] = int(count)
    if recent:
        for job_id, count in conn.execute(_RECENT, {"ids": ids, "since": now - SPEED_WINDOW}):
            out[job_id].recent = int(count)
    if partial:
        for job_id, said in conn.execute(_PARTIAL, {"ids": ids}):
            out[job_id].partial = float(said or 0)
    return out


_BYTES = (select(Task.job_id, func.sum(Task.size), func.sum(Task.transferred), func.count())
          .where(Task.job_id.in_(bindparam("ids", expanding=True)), Task.size >= 0,
                 Task.status != TaskStatus.EXCLUDED)
          .group_by(Task.job_id))


@dataclass(frozen=True)
class Bytes:
    """A transfer job's bytes: of the tasks whose size is known, all and moved so far."""

    size: int
    done: int
    known: int  # tasks whose size is known


def transfer_bytes(conn: Connection, job_ids: Iterable[str]) -> dict[str, Bytes]:
    ids = list(job_ids)
    if not ids:
        return {}
    return {job_id: Bytes(int(size or 0), int(done or 0), int(known))
            for job_id, size, done, known in conn.execute(_BYTES, {"ids": ids})}


def transfer_figures(b: Bytes | None, started: datetime | None, now: datetime, status: str
                     ) -> tuple[int, int, float, str]:
    """``size``, ``progress`` (0-100), ``speed`` (MB/s since the job started) and ``etr``
    of a transfer job, from its bytes."""
    if b is None or b.known == 0:
        return -1, 100 if status == JobStatus.DONE else 0, 0.0, ""
    progress = 100 if b.size == 0 else int(100 * b.done / b.size)
    elapsed = (now - started).total_seconds() if started is not None else 0.0
    rate = b.done / elapsed if elapsed > 0 else 0.0
    left = ""
    if rate > 0 and status not in FINISHED and status not in HELD_BY_USER:
        left = format_etr((b.size - b.done) / rate)
    return b.size, progress, round(rate / 1e6, 3), left


def derived_status(current: str, counts: Counts) -> JobStatus:
    if current in HELD_BY_USER:
        return JobStatus(current)
    if counts.running:
        return JobStatus.RUNNING
    if counts[TaskStatus.QUEUED] or counts[TaskStatus.ONHOLD]:
        return JobStatus.WAITING
    if counts[TaskStatus.PENDING]:
        return JobStatus.PENDING
    if counts[TaskStatus.FAILED]:
        return JobStatus.FAILED
    return JobStatus.DONE


def refresh(conn: Connection, job_ids: Iterable[str], now: datetime) -> None:
    """Bring the stored status and ``finished`` of these jobs in line with their tasks.

    A function of a synchronous connection (``Database.run``); from async code:
    ``await conn.run_sync(refresh, ids, now)``.
    """
    ids = sorted(set(job_ids))
    while ids:  # the jobs that fail with a job, then those that fail with them, …
        _refresh(conn, ids, now)
        ids = _fail_waiting(conn, ids, now)


def _refresh(conn: Connection, ids: list[str], now: datetime) -> None:
    rows = conn.execute(_JOBS, {"ids": ids}).all()  # first the lock, then the counts
    counts = task_counts(conn, ids, now)
    ended: dict[events.Event, list[str]] = {}
    for job_id, status, finished in rows:
        new = derived_status(status, counts[job_id])
        values: dict[str, Any] = {}
        if new != status:
            values["status"] = str(new)
            if new in ENDED_EVENT:
                ended.setdefault(ENDED_EVENT[new], []).append(job_id)
        if new in FINISHED and finished is None:
            values["finished"] = now
        elif new not in FINISHED and finished is not None:
            values["finished"] = None
        if values:
            values["modified"] = now
            conn.execute(update(Job).where(Job.id == job_id).values(**values))
    for event, job_ids in ended.items():
        events.jobs_event(conn, event, job_ids, now)
    made = hooks.start(conn, {str(s): ended.get(e, []) for s, e in ENDED_EVENT.items()}, now)
    if made:  # each a one-task compute job, queued
        conn.execute(insert(Task), [new_task(j, 0, "1", now, p) for j, p in made])
        events.jobs_event(conn, events.Event.JOB_CREATED, [j for j, _ in made], now)


def _fail_waiting(conn: Connection, ids: list[str], now: datetime) -> list[str]:
    """Fail the queued tasks of the active jobs that wait, with ``after_failed: fail``, for
    a failed or aborted job among ``ids`` (or that are among ``ids`` and wait for one); the
    jobs whose tasks failed, to refresh in turn. Dependencies are acyclic (they are set
    only on creation, to jobs that exist), so this ends."""
    blocked: dict[str, str] = {}
    for job_id, after_id, status in conn.execute(_BLOCKED, {"ids": ids}):
        blocked.setdefault(job_id, f"job {after_id} it waits for "
                           f"{'was aborted' if status == JobStatus.ABORTED else 'failed'}")
    failed = []
    for job_id, why in blocked.items():
        done = conn.execute(update(Task).where(
            Task.job_id == job_id, Task.status == TaskStatus.QUEUED).values(
            status=TaskStatus.FAILED, message=why, finished=now, modified=now))
        conn.execute(update(Job).where(Job.id == job_id).values(status_reason=why))
        if done.rowcount:
            failed.append(job_id)
    return failed


def progress(counts: Counts, status: str) -> int:
    """Percent of the job's work done: its done tasks, and its running tasks as far as
    they said they are (one at 50 % counts half a task; ``partial``)."""
    useful = counts.total - counts[TaskStatus.EXCLUDED]
    if useful <= 0:
        return 100 if status == JobStatus.DONE else 0
    return min(100, int((100 * counts[TaskStatus.DONE] + counts.partial) / useful))


def format_etr(seconds: float) -> str:
    """jobs.rst's form: hours, minutes and seconds (``0h:01m:30s``)."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}h:{whole % 3600 // 60:02d}m:{whole % 60:02d}s"


def etr(counts: Counts, started: datetime | None, now: datetime, status: str) -> str:
    """Time left at the average rate since the job started: steadier than the last minute's."""
    if status in FINISHED or status in HELD_BY_USER or started is None:
        return ""
    ended = counts[TaskStatus.DONE] + counts[TaskStatus.FAILED]
    elapsed = (now - started).total_seconds()
    if ended == 0 or elapsed <= 0:
        return ""
    return format_etr(counts.remaining / (ended / elapsed))


def speed(counts: Counts, started: datetime | None, now: datetime) -> float:
    """Tasks ended per second over the last minute, or since the job started when that is
    sooner (compute jobs have no bytes to move)."""
    if started is None:
        return 0.0
    window = min(SPEED_WINDOW.total_seconds(), (now - started).total_seconds())
    return round(counts.recent / window, 3) if window > 0 else 0.0


def storable(text: str) -> str:
    """A task's output as text any database keeps: PostgreSQL refuses NUL characters, so
    they show as U+FFFD (and a tail with one makes the agent upload the whole log, bytes
    as they were)."""
    return text.replace("\x00", "\ufffd")
