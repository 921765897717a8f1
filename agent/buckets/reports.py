"""What the agent owes the hub about the buckets it runs, written to its outbox.

Each task's start (volatile: its end report carries it too) and end, its whole log
when the tail does not say it all, the tasks handed back unstarted, and each bucket's
end. The idempotency keys are made here and only here: a report written twice (an
adopted run's end, after a restart) is one report at the hub.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from agent.outbox import Outbox
from lanes.base import Outcome
from protocol import (
    BucketReport,
    BucketWork,
    TaskProgress,
    TaskReport,
    TaskWork,
    whole_log_needed,
)
from protocol.work import TaskEvent


def iso(ts: float) -> str:
    """A time as reports carry it: UTC, ISO 8601, milliseconds, ``Z``."""
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None).isoformat(
        timespec="milliseconds") + "Z"


def end_key(bucket: BucketWork, task: TaskWork) -> str:
    """The idempotency key of a task's end report."""
    return f"{bucket.id}/{task.id}/end"


def upload_log(outcome: Outcome) -> bool:
    """Does the task's whole log go to the hub (its tail does not say it all)?"""
    return whole_log_needed(outcome.log_size, outcome.log_tail)


class Reporter:
    """Writes reports on buckets to ``outbox``; task logs live under ``logs``."""

    def __init__(self, outbox: Outbox, logs: Path) -> None:
        self.outbox = outbox
        self.logs = logs
        self.ended: Counter[str] = Counter()  # runs ended since start, by outcome (/metrics)

    def log_folder(self, bucket: BucketWork) -> Path:
        """The logs of the bucket's job (``tidy`` removes the folder once it is empty)."""
        return self.logs / bucket.job_id

    def log_path(self, bucket: BucketWork, task: TaskWork) -> Path:
        """One file per run: a run of the same task that starts while an earlier run's log
        still waits for its upload must not overwrite it."""
        return self.log_folder(bucket) / f"{task.id}.{bucket.id}.log"

    def started(self, bucket: BucketWork, task: TaskWork, at: float) -> None:
        self.task(bucket, task, "started", at)

    def task(self, bucket: BucketWork, task: TaskWork, event: TaskEvent, at: float,
             outcome: Outcome | None = None, message: str = "",
             result: str | None = None, said: TaskProgress | None = None) -> None:
        """A task's start, or its end (with ``outcome``, which then names the event, and
        what its progress lines ``said``: all of it)."""
        key = f"{bucket.id}/{task.id}/started" if event == "started" else end_key(bucket, task)
        report = TaskReport(key=key, task_id=task.id, bucket_id=bucket.id, event=event,
                            at=iso(at), message=message)
        if outcome is not None:
            report = TaskReport(
                key=key, task_id=task.id, bucket_id=bucket.id, event=outcome.status, at=iso(at),
                started=iso(outcome.started), exit_code=outcome.exit_code,
                message=outcome.message[:4096], log_tail=outcome.log_tail[-16384:],
                log_size=outcome.log_size, cpu_seconds=outcome.cpu_seconds,
                peak_memory=outcome.peak_memory, size=outcome.size, result=result,
                progress=said.progress if said else None, stage=said.stage if said else None,
                outputs=said.outputs if said else None, missing_frames=outcome.missing_frames)
        self.outbox.add("report", key, msgspec.json.encode(report), volatile=event == "started")

    def finished(self, bucket: BucketWork, task: TaskWork, outcome: Outcome,
                 result: str | None = None, log_uploaded: bool = True,
                 said: TaskProgress | None = None) -> None:
        """A task's end, and its log's upload when the tail does not say it all (and the
        log is where ``log_path`` says: ``log_uploaded``)."""
        self.ended[outcome.status] += 1
        self.task(bucket, task, outcome.status, at=outcome.ended, outcome=outcome,
                  result=result, said=said)
        if log_uploaded and upload_log(outcome):
            path = self.log_path(bucket, task)
            self.outbox.add("log", f"{bucket.id}/{task.id}/log", msgspec.json.encode(
                {"task_id": task.id, "bucket_id": bucket.id, "path": str(path)}))

    def handed_back(self, bucket: BucketWork, tasks: list[TaskWork], why: str) -> None:
        """Tasks that never started go back to the hub (no attempt spent)."""
        for task in tasks:
            self.task(bucket, task, "returned", at=time.time(),
                      message=f"handed back unstarted ({why})")

    def bucket_ended(self, bucket: BucketWork, started: float) -> None:
        """The bucket's end: after every one of its tasks' ends."""
        key = f"{bucket.id}/end"
        self.outbox.add("report", key, msgspec.json.encode(BucketReport(
            key=key, bucket_id=bucket.id, started=iso(started), ended=iso(time.time()))))

    def tidy(self, bucket: BucketWork) -> None:
        """The job's log folder goes once it is empty (logs still to upload keep it)."""
        with contextlib.suppress(OSError):
            self.log_folder(bucket).rmdir()

    async def durable(self) -> None:
        """Everything written so far is on disk, across a power loss too."""
        await self.outbox.flush(sync=True)

    def sent(self, bucket: BucketWork, task: TaskWork) -> Awaitable[None]:
        """Done once the hub has answered for the task's end report."""
        return self.outbox.sent(end_key(bucket, task))
