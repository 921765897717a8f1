"""Docker buckets, as the agent runs them in its docker slots: one organization's run of a
docker job each (``Work`` runs compute buckets on its lanes, transfers in their slots).

A run's end report is durable in the outbox before its container and folder go, and
its saved work stays until the hub has answered for that report (agent/docker_runs.py
gives the order and what a restarted agent makes of each step).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from agent.docker_runs import DockerRuns, move_log
from agent.outbox import Outbox
from lanes import Outcome
from lanes.docker_lane import Adopted, Detached
from protocol import BucketWork, TaskWork

if TYPE_CHECKING:
    from agent.work import BucketRun

log = structlog.get_logger("agent.work")


class DockerBuckets:
    """What ``Work`` adds for docker buckets; it provides the attributes below."""

    docker: DockerRuns | None
    outbox: Outbox

    def _finish(self, bucket: BucketWork, task: TaskWork, outcome: Outcome,
                result: str | None = None, log_uploaded: bool = True) -> None:
        raise NotImplementedError

    def _report(self, bucket: BucketWork, task: TaskWork, event: str, at: float,
                outcome: Outcome | None = None, message: str = "",
                result: str | None = None) -> None:
        raise NotImplementedError

    def _hand_back(self, bucket: BucketWork, tasks: list[TaskWork], why: str) -> None:
        raise NotImplementedError

    def _log_of(self, bucket: BucketWork, task: TaskWork) -> Path:
        raise NotImplementedError

    def _start(self, bucket: BucketWork, adopted: Adopted | None = None) -> None:
        raise NotImplementedError

    def free_docker(self) -> int:
        """Docker slots with no bucket (0 while docker runs are off)."""
        if self.docker is None or not self.docker.ready:
            return 0
        held = sum(1 for b in self._held_buckets() if b.work.kind == "docker")
        return max(0, self.docker.slots - held)

    def _held_buckets(self) -> list[BucketRun]:
        raise NotImplementedError

    def adopt(self, kept: list[tuple[BucketWork, Adopted | None]]) -> list[str]:
        """Runs an earlier agent left: those whose containers outlived it are watched to
        their end and reported as if this agent had started them; those whose end report
        it wrote (no ``Adopted``) wait for the hub to answer for it. Their bucket ids, to
        keep their leases."""
        for bucket, adopted in kept:
            if adopted is not None:
                self._start(bucket, adopted)
            elif self.docker is not None:
                task = bucket.tasks[0]
                self.docker.forget_when(task.id, self.outbox.sent(end_key(bucket, task)))
        return [bucket.id for bucket, _ in kept]

    async def _run_docker(self, run: BucketRun) -> int:
        """The bucket's one run; returns how many tasks were taken (0 or 1)."""
        bucket = run.work
        task = bucket.tasks[0]
        if run.stop_reason:
            return 0
        now = time.time()
        if task.id in run.aborted:
            run.ended.add(task.id)
            self._finish(bucket, task, Outcome(status="aborted", exit_code=None,
                                               message="aborted before it started",
                                               started=now, ended=now))
            return 1
        assert self.docker is not None and task.docker is not None
        if run.adopted is None:
            self._report(bucket, task, "started", now)
        try:
            end = await self.docker.run(bucket, task, run.adopted)
        except Detached:  # the agent stops while the container runs: the next one adopts it
            log.info("the container runs on, for the next start to adopt", task=task.id)
            run.detached = True
            return 1
        run.ended.add(task.id)
        sent = None
        if not run.lost:  # a lost lease: the hub refuses the report, there is none to keep
            uploaded = await asyncio.to_thread(move_log, end.log, self._log_of(bucket, task))
            self._finish(bucket, task, end.outcome, end.result, uploaded)
            if end.outcome.reason:
                log.info("docker run ended", task=task.id, status=end.outcome.status,
                         reason=end.outcome.reason)
            try:  # on disk before the container and the output go: they are the fallback
                await self.outbox.flush(sync=True)
            except Exception as exc:
                log.error("the run's end report is not on disk; its container stays for "
                          "the next start to read again", task=task.id, error=str(exc))
                return 1
            sent = self.outbox.sent(end_key(bucket, task))
        await self.docker.release(task.id, task.docker.job_id, sent)
        return 1


def end_key(bucket: BucketWork, task: TaskWork) -> str:
    """The idempotency key of a task's end report (as ``Work._report`` makes it)."""
    return f"{bucket.id}/{task.id}/end"
