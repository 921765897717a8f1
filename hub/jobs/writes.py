"""What users write to jobs and tasks, by the rules every kind of job shares.

A job's status write (jobs.rst: ``paused``, ``waiting``, ``aborted``, ``done``), tasks
added by item with the reference's duplicate rule, and status, priority or metadata
changes of single tasks. A kind whose jobs need more (a transfer's ``pending``, its
files as tasks) does that itself and falls back on these (``kind.py``). Each function
runs on the caller's connection, inside its transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update

from hub.errors import Conflict, Invalid
from hub.jobs import status as st
from hub.runtime import Ctx
from hub.storage.models import Job, Task

S, T = st.JobStatus, st.TaskStatus


async def change_status(conn: Any, job_id: str, current: str, wanted: str, ctx: Ctx) -> None:
    """A user's status write, by the rules in the README's job section.

    A task still running on an agent when its job is aborted (or closed) takes its new
    status at once; ``abort_to`` tells the agent, at its next heartbeat, to kill it.
    """
    finished = current in st.FINISHED
    if wanted == S.PAUSED:
        if finished:
            raise Conflict("invalid_transition", f"the job has ended ({current}); write "
                           "'waiting' to run it again", field="status")
        await conn.execute(update(Job).where(Job.id == job_id).values(status=S.PAUSED))
    elif wanted == S.WAITING:
        requeued = 0
        if finished:  # run again what did not succeed
            requeued = (await conn.execute(update(Task).where(
                Task.job_id == job_id, Task.status.in_((T.FAILED, T.QUEUED)),
                Task.abort_to.is_(None)).values(
                **st.FRESH_RUN, status=T.QUEUED, attempts=0, message="", modified=ctx.now))
            ).rowcount
            # still being killed on an agent: queued again once the kill is confirmed
            requeued += (await conn.execute(update(Task).where(
                Task.job_id == job_id, Task.abort_to.is_not(None)).values(
                abort_to=T.QUEUED, attempts=0))).rowcount
        if current in st.HELD_BY_USER or requeued:  # a done job with nothing to redo stays
            await conn.execute(update(Job).where(Job.id == job_id).values(
                status=S.WAITING, finished=None))
    elif wanted == S.ABORTED:
        if current in (S.DONE, S.FAILED):
            raise Conflict("invalid_transition", f"the job has already ended ({current})",
                           field="status")
        if current == S.ABORTED:
            return  # already: its finished time stays
        await conn.execute(update(Task).where(
            Task.job_id == job_id, Task.status.in_(st.RUNNING_TASK)).values(
            status=T.FAILED, message="aborted", abort_to=T.FAILED, finished=ctx.now,
            modified=ctx.now))
        await conn.execute(update(Job).where(Job.id == job_id).values(
            status=S.ABORTED, finished=ctx.now))
    elif wanted == S.DONE:
        await conn.execute(update(Task).where(
            Task.job_id == job_id, Task.status.in_(st.RUNNING_TASK)).values(
            status=T.EXCLUDED, abort_to=T.EXCLUDED, finished=ctx.now, modified=ctx.now))
        await conn.execute(update(Task).where(
            Task.job_id == job_id, Task.status.in_((T.QUEUED, T.ONHOLD, T.PENDING))).values(
            status=T.EXCLUDED, finished=ctx.now, modified=ctx.now))
        if current in st.HELD_BY_USER:
            await conn.execute(update(Job).where(Job.id == job_id).values(status=S.WAITING))


async def insert_tasks(conn: Any, job_id: str, items: list[str], first_seq: int, now: Any,
                       priority: int) -> list[str]:
    """Queued tasks for ``items``, numbered from ``first_seq`` in their job; their ids."""
    rows = [st.new_task(job_id, first_seq + n, item, now, priority)
            for n, item in enumerate(items)]
    if rows:
        await conn.execute(insert(Task), rows)
    return [row["id"] for row in rows]


async def next_seq(conn: Any, job_id: str) -> int:
    """The number the next task of the job gets."""
    last = (await conn.execute(select(func.max(Task.seq)).where(Task.job_id == job_id))).scalar()
    return (last if last is not None else -1) + 1


async def add_items(conn: Any, ctx: Ctx, job: Any, tasks: list[Any], allow: bool
                    ) -> dict[str, Any]:
    """Tasks for more items (``"5"``, ``5`` or ``{"item": "5"}``). An item the job has
    already is not added: its task runs again, or (``allow`` false) the call is refused."""
    items = [_item(t, n) for n, t in enumerate(tasks)]
    if len(set(items)) != len(items):
        raise Invalid("invalid_body", "the same item is listed twice", field="tasks")
    existing = dict((await conn.execute(select(Task.item, Task.id).where(
        Task.job_id == job.id, Task.item.in_(items)))).all())
    if existing and not allow:
        first = next(i for i in items if i in existing)
        raise Conflict("duplicate", f"item '{first}' is already a task of this job "
                       f"({len(existing)} duplicates; nothing added)", field="tasks")
    retried = [existing[i] for i in items if i in existing]
    if retried:  # jobs.rst: a duplicate is not added; the existing task runs again
        await conn.execute(update(Task).where(
            Task.id.in_(retried), Task.status.in_((*st.ENDED_TASK, T.ONHOLD))
        ).values(**st.FRESH_RUN, status=T.QUEUED, attempts=0, message="", modified=ctx.now))
    created = await insert_tasks(conn, job.id, [i for i in items if i not in existing],
                                 await next_seq(conn, job.id), ctx.now, job.priority)
    return {"created": created, "retried": retried}


def _item(task: Any, index: int) -> str:
    if isinstance(task, dict):
        if set(task) != {"item"}:
            raise Invalid("invalid_body", f"tasks[{index}]: a compute task is an item or "
                          "{\"item\": ...}", field=f"tasks[{index}]")
        task = task["item"]
    if isinstance(task, bool) or not isinstance(task, str | int) or not str(task) \
            or len(str(task)) > 1024:
        raise Invalid("invalid_body", f"tasks[{index}]: an item is a string or an integer "
                      "of 1 to 1024 characters", field=f"tasks[{index}]")
    if "\0" in str(task):
        raise Invalid("invalid_body", f"tasks[{index}]: an item cannot hold a NUL "
                      "character (it goes into the command line)", field=f"tasks[{index}]")
    return str(task)


async def reopen(conn: Any, job: Any, ctx: Ctx) -> None:
    """A job that ended runs again for the tasks just added or retried (not an aborted one)."""
    if job.status in st.FINISHED and job.status != S.ABORTED:
        await conn.execute(update(Job).where(Job.id == job.id).values(
            status=S.WAITING, finished=None))
    await conn.run_sync(st.refresh, [job.id], ctx.now)


def task_change(change: dict[str, Any], current: str, ctx: Ctx, held: bool = False
                ) -> dict[str, Any]:
    """The values one task change (already checked field by field) writes to a task now
    ``current``. ``held``: the job cannot queue tasks yet (a transfer with no destination
    path): a task written ``queued`` waits as ``pending``."""
    values: dict[str, Any] = {"modified": ctx.now}
    if "priority" in change:
        values["priority"] = change["priority"]
    if "metadata" in change:
        values["meta"] = change["metadata"]
    wanted = change.get("status")
    if wanted is None or wanted == current:
        return values
    running = current in st.RUNNING_TASK
    if wanted == T.QUEUED:
        if running:
            raise Conflict("invalid_transition", f"task {change['id']} is {current}; it "
                           "cannot be queued while it runs", field="status")
        values.update(st.FRESH_RUN, status=T.PENDING if held else wanted, attempts=0,
                      message="")
    else:
        values["status"] = wanted
        if running:  # the agent kills it at its next heartbeat
            values["abort_to"] = wanted
        if wanted in st.ENDED_TASK:
            values["finished"] = ctx.now
    return values
