"""Jobs that wait for other jobs (issue 18): ``after``, ``after_items``, ``after_failed``.

A compute job may name, when it is created::

    {"after": ["<job id>", ...],     # it starts once all of them are done
     "after_items": "<job id>",      # its item N starts once item N of that job is done
     "after_failed": "fail"}         # or "wait": see below

* ``after``: none of its tasks is leased until every job named is ``done`` (a job written
  ``done`` by a user counts: its user said so).
* ``after_items`` names a compute job; a task of this job is leased once the task of the
  same ``item`` there is done. A task whose item that job does not have waits for all of
  it to be done: it never starts before what it may read could exist (a job whose items
  are chunks, ``1-10``, and another's frames then wait as with ``after``, instead of not
  at all).
* ``after_failed``: when a job waited for fails or is aborted, ``fail`` (the default)
  fails this job's queued tasks, and so this job, with ``status_reason`` and each task's
  message naming that job (``status.py``); ``wait`` keeps it waiting, saying so, until
  that job is retried (written ``waiting``) and done. A job that is deleted cannot be
  retried: the jobs that wait for it fail, whatever their ``after_failed``.

Only jobs the creator can see may be named; one it cannot (another organization's) gets
the same answer as one that does not exist: ``422 unknown_job`` naming ``after[i]`` or
``after_items``, and nothing is created. Dependencies are set on creation only (``PATCH``
refuses the fields as read-only): a new job's id is unknown until it exists, so no job can
name it or itself, and no circle can form.

Dispatch reads them in SQL (``hub/jobs/dispatch.py``): a job with a job it waits for not
done is not eligible (``NOT EXISTS`` on ``job_dependencies``), and a job waiting for items
takes only tasks whose item is among the other job's done ones (``leases.py``). Claims
waiting for work wake when a job waited for is done: that happens in a report, a user's
write or a lease's end, each of which already tells them (``hub/wakeup.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from hub.access import JOBS
from hub.errors import Invalid
from hub.jobs import status as st
from hub.runtime import Ctx
from hub.storage.models import Job, JobDependency, Task
from protocol import BucketKind

S = st.JobStatus
_After = aliased(Job)

# a job waiting for a job that is not done yet: not eligible for dispatch
WAITS_FOR_A_JOB = exists().where(
    JobDependency.job_id == Job.id, JobDependency.kind == st.Waits.JOB,
    JobDependency.after_id == _After.id, _After.status != S.DONE)
# the job whose items it waits for, while that job is not done (else null: any task runs)
ITEMS_OF = (select(JobDependency.after_id).join(_After, _After.id == JobDependency.after_id)
            .where(JobDependency.job_id == Job.id, JobDependency.kind == st.Waits.ITEMS,
                   _After.status != S.DONE).scalar_subquery())
# what the jobs refreshed wait for, that is not done
_PENDING = (select(JobDependency.job_id, JobDependency.after_id, JobDependency.kind,
                   JobDependency.on_failure, _After.status)
            .join(_After, _After.id == JobDependency.after_id)
            .where(JobDependency.job_id.in_(bindparam("ids", expanding=True)),
                   _After.status != S.DONE)
            .order_by(JobDependency.job_id, JobDependency.kind, JobDependency.after_id))
_OF_JOBS = (select(JobDependency.job_id, JobDependency.after_id, JobDependency.kind,
                   JobDependency.on_failure)
            .where(JobDependency.job_id.in_(bindparam("ids", expanding=True)))
            .order_by(JobDependency.job_id, JobDependency.after_id))


def _unknown(job_id: str, field: str) -> Invalid:
    """One answer for a job that does not exist and one out of the caller's sight."""
    return Invalid("unknown_job", f"{field}: no job '{job_id}' to wait for", field=field)


async def check(conn: AsyncConnection, ctx: Ctx, after: list[str], after_items: str | None
                ) -> None:
    """Refuse a job to wait for that the caller cannot see (``unknown_job``, as for one that
    does not exist), a job named twice, and ``after_items`` naming other than a compute
    job."""
    named = [*after, *([after_items] if after_items is not None else [])]
    if not named:
        return
    visible = JOBS.visible(ctx)
    stmt = select(Job.id, Job.kind).where(Job.id.in_(named), Job.deleted.is_(None))
    seen = dict((await conn.execute(stmt if visible is None else stmt.where(visible))).all())
    for n, job_id in enumerate(after):
        if job_id not in seen:
            raise _unknown(job_id, f"after[{n}]")
        if job_id in after[:n]:
            raise Invalid("invalid_spec", f"after[{n}]: job '{job_id}' is named twice",
                          field=f"after[{n}]")
    if after_items is not None:
        if after_items not in seen:
            raise _unknown(after_items, "after_items")
        if after_items in after:
            raise Invalid("invalid_spec", f"after_items: job '{after_items}' is in after "
                          "too; name it once", field="after_items")
        if seen[after_items] != BucketKind.COMPUTE:
            raise Invalid("invalid_spec", "after_items: items are matched with a compute "
                          f"job's, and job '{after_items}' is a {seen[after_items]} job",
                          field="after_items")


async def store(conn: AsyncConnection, job_id: str, after: list[str], after_items: str | None,
                after_failed: str) -> None:
    """The rows of a new job's dependencies (checked by ``check``)."""
    rows = [{"job_id": job_id, "after_id": a, "kind": st.Waits.JOB, "on_failure": after_failed}
            for a in after]
    if after_items is not None:
        rows.append({"job_id": job_id, "after_id": after_items, "kind": st.Waits.ITEMS,
                     "on_failure": after_failed})
    if rows:
        await conn.execute(insert(JobDependency), rows)


async def fail_for_deleted(conn: AsyncConnection, job_id: str, now: Any) -> None:
    """``job_id`` is about to be deleted: the active jobs that wait for it fail (it can
    never be done now, nor retried), naming it, and wait for it no more."""
    waiting = [r.job_id for r in await conn.execute(
        select(JobDependency.job_id).join(Job, Job.id == JobDependency.job_id).where(
            JobDependency.after_id == job_id, Job.status.in_(st.ACTIVE)))]
    # no job waits for a deleted one any more (its row stays, inactive)
    await conn.execute(delete(JobDependency).where(JobDependency.after_id == job_id))
    if not waiting:
        return
    why = f"job {job_id} it waits for was deleted"
    await conn.execute(update(Task).where(
        Task.job_id.in_(waiting), Task.status == st.TaskStatus.QUEUED).values(
        status=st.TaskStatus.FAILED, message=why, finished=now, modified=now))
    await conn.execute(update(Job).where(Job.id.in_(waiting)).values(status_reason=why))
    await conn.run_sync(st.refresh, waiting, now)


def reasons(conn: Connection, job_ids: list[str]) -> dict[str, str]:
    """Why these jobs wait for others, as ``status_reason`` says it; a job that waits for
    nothing (any more) is not in the answer."""
    pending: dict[str, list[Any]] = defaultdict(list)
    for row in conn.execute(_PENDING, {"ids": job_ids}) if job_ids else ():
        pending[row.job_id].append(row)
    return {job_id: _reason(rows) for job_id, rows in pending.items()}


def _reason(rows: list[Any]) -> str:
    ended = [r for r in rows if r.status in (S.FAILED, S.ABORTED)]
    if ended:
        r = ended[0]
        said = "was aborted" if r.status == S.ABORTED else "failed"
        if r.on_failure == st.AfterFailed.FAIL:
            return f"job {r.after_id} it waits for {said}"
        return f"waiting for job {r.after_id} to be retried (it {said})"
    jobs = [r.after_id for r in rows if r.kind == st.Waits.JOB]
    if jobs:
        return f"waiting for job{'s' if len(jobs) > 1 else ''} {', '.join(jobs)}"
    return f"waiting for items of job {rows[0].after_id}"


def shown(conn: Connection, job_ids: Iterable[str], visible: Any) -> dict[str, dict[str, Any]]:
    """The record fields of these jobs' dependencies: ``after`` (ids), ``after_items``,
    ``after_failed`` and ``after_status`` (each job waited for, with its status, or null
    when the caller cannot see it)."""
    ids = list(job_ids)
    rows = conn.execute(_OF_JOBS, {"ids": ids}).all() if ids else []
    named = list({r.after_id for r in rows})
    statuses: dict[str, str] = {}
    if named:
        stmt = select(Job.id, Job.status).where(Job.id.in_(named))
        statuses = dict(conn.execute(stmt if visible is None else stmt.where(visible)).all())
    after: dict[str, list[str]] = defaultdict(list)
    items: dict[str, str] = {}
    failed: dict[str, str] = {}
    status: dict[str, dict[str, str | None]] = defaultdict(dict)
    for r in rows:
        if r.kind == st.Waits.ITEMS:
            items[r.job_id] = r.after_id
        else:
            after[r.job_id].append(r.after_id)
        failed[r.job_id] = r.on_failure
        status[r.job_id][r.after_id] = statuses.get(r.after_id)
    return {i: {"after": after.get(i, []), "after_items": items.get(i),
                "after_failed": failed.get(i), "after_status": status.get(i, {})}
            for i in ids}
