"""What compute tasks say of themselves in progress lines (issue 18), kept on the tasks.

An agent reads them from a running task's output (``agent/buckets/progress.py``): the
latest ``progress`` (0-100) and ``stage`` ride on its heartbeats, with the outputs named
since the last one; its end report carries all of it. Only the agent that holds the
task's bucket changes them, and only while the task runs (``follow_progress``), as for
its live output: another agent's news of the task, or news that comes after the task
ended, changes nothing. The protocol's types bound each value (``TaskProgress``); the
outputs a task keeps are bounded here too, however many reports and heartbeats add to
them.

A job's progress weighs its running tasks by what they said (``status.task_counts``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from hub.jobs import status as st
from hub.storage.models import Task
from protocol import TaskProgress
from protocol.work import MAX_OUTPUTS, MAX_OUTPUTS_SIZE


def merged_outputs(kept: Iterable[str] | None, new: Iterable[str]) -> list[str]:
    """``kept`` with the paths of ``new`` it lacks added, in order, within the bounds
    (``MAX_OUTPUTS`` paths, ``MAX_OUTPUTS_SIZE`` bytes): a heartbeat sent twice adds
    nothing twice."""
    out = list(kept or [])
    known = set(out)
    size = sum(len(p.encode()) for p in out)
    for path in new:
        if len(out) >= MAX_OUTPUTS:
            break
        if path in known or size + len(path.encode()) > MAX_OUTPUTS_SIZE:
            continue
        out.append(path)
        known.add(path)
        size += len(path.encode())
    return out


def follow_progress(conn: Connection, held: list[str], said: dict[str, TaskProgress]
                    ) -> None:
    """Progress news of a heartbeat, for the running tasks of the buckets the agent holds
    (``held``); news of any other task is dropped."""
    theirs = (Task.bucket_id.in_(held), Task.status.in_(st.RUNNING_TASK))
    running = conn.execute(select(Task.id, Task.outputs).where(Task.id.in_(list(said)),
                                                                *theirs)).all()
    for task_id, outputs in running:
        news = said[task_id]
        values: dict[str, Any] = {}
        if news.progress is not None:
            values["progress"] = news.progress
        if news.stage is not None:
            values["stage"] = news.stage
        if news.outputs:
            values["outputs"] = merged_outputs(outputs, news.outputs)
        if values:
            # still running when written: an end report that came meanwhile has the last word
            conn.execute(update(Task).where(Task.id == task_id, *theirs).values(**values))
