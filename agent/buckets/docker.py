"""Docker buckets, in the agent's docker slots: one organization's run of a docker job
each, in a hardened container (``agent.docker_runs`` runs it, ``lanes.docker_lane``
holds the container).

A run's end report is durable in the outbox before its container and folder go, and
its saved work stays until the hub has answered for that report (agent/docker_runs.py
gives the order and what a restarted agent makes of each step). A run whose container
outlives the agent (it stopped while the run went on) is not reported here: the next
start adopts it, watches it to its end and reports it as if it had started it.

This module brings the Docker SDK and cryptography: it is loaded only by an agent whose
settings run docker jobs (agent/buckets/registry.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from agent.buckets.base import Held
from agent.buckets.pool import BucketPool
from agent.buckets.reports import Reporter
from agent.config import DockerConfig
from agent.docker_runs import DockerRuns, move_log
from agent.hubclient import HubClient
from agent.orgkey import OrgKey
from core.tasks import Supervisor
from lanes.base import Outcome
from lanes.docker_lane import Adopted, Detached
from protocol import BucketKind, BucketWork, ClaimRequest

log = structlog.get_logger("agent.work")


class DockerRunner:
    """Runs docker buckets with ``runs``, at most ``runs.slots`` at once while the engine
    answers."""

    kind = BucketKind.DOCKER

    def __init__(self, runs: DockerRuns) -> None:
        self.runs = runs
        self._adopted: dict[str, Adopted] = {}  # by bucket id, until its run is watched
        self._aborts = Supervisor("docker aborts")

    @classmethod
    def build(cls, config: DockerConfig, folder: Path, agent_id: str, org_key: OrgKey,
              hub: HubClient) -> DockerRunner:
        """The runner and its runs; runs reach the hub the agent talks to now."""
        return cls(DockerRuns(config, folder, agent_id, org_key, lambda: hub.base_url))

    def free(self, held: Sequence[Held]) -> ClaimRequest:
        docker = max(0, self.runs.slots - len(held)) if self.runs.ready else 0
        return ClaimRequest(lanes=[], docker=docker)

    def output(self) -> dict[str, str]:
        """Running runs' output since the last call, for the heartbeat."""
        return self.runs.take_output()

    async def start(self, pool: BucketPool) -> list[str]:
        """Connect to the engine and take over the runs an earlier agent left (``adopt``);
        the ids of their buckets, whose leases the hub is to keep."""
        return self.adopt(await self.runs.start(), pool)

    def adopt(self, kept: list[tuple[BucketWork, Adopted | None]], pool: BucketPool
              ) -> list[str]:
        """Runs an earlier agent left: those whose containers outlived it are held in
        ``pool``, watched to their end and reported as if this agent had started them;
        those whose end report it wrote (no ``Adopted``) wait for the hub to answer for
        it. Their bucket ids, to keep their leases."""
        for bucket, adopted in kept:
            if adopted is not None:
                self._adopted[bucket.id] = adopted
                pool.hold(bucket)
            else:
                task = bucket.tasks[0]
                self.runs.forget_when(task.id, pool.reporter.sent(bucket, task))
        return [bucket.id for bucket, _ in kept]

    async def run(self, bucket: Held, reporter: Reporter) -> int | None:
        """The bucket's one run; returns how many tasks were taken (0 or 1), None when its
        container runs on past this agent."""
        work = bucket.work
        task = work.tasks[0]
        adopted = self._adopted.pop(work.id, None)
        if bucket.stopping:
            return 0
        now = time.time()
        if task.id in bucket.aborted:
            bucket.ended.add(task.id)
            reporter.finished(work, task, Outcome(status="aborted", exit_code=None,
                                                  message="aborted before it started",
                                                  started=now, ended=now))
            return 1
        assert task.docker is not None
        if adopted is None:
            reporter.started(work, task, now)
        try:
            end = await self.runs.run(work, task, adopted)
        except Detached:  # the agent stops while the container runs: the next one adopts it
            log.info("the container runs on, for the next start to adopt", task=task.id)
            return None
        bucket.ended.add(task.id)
        sent = None
        if not bucket.lost:  # a lost lease: the hub refuses the report, there is none to keep
            uploaded = await asyncio.to_thread(move_log, end.log, reporter.log_path(work, task))
            reporter.finished(work, task, end.outcome, end.result, uploaded)
            if end.outcome.reason:
                log.info("docker run ended", task=task.id, status=end.outcome.status,
                         reason=end.outcome.reason)
            try:  # on disk before the container and the output go: they are the fallback
                await reporter.durable()
            except Exception as exc:
                log.error("the run's end report is not on disk; its container stays for "
                          "the next start to read again", task=task.id, error=str(exc))
                return 1
            sent = reporter.sent(work, task)
        await self.runs.release(task.id, task.docker.job_id, sent)
        return 1

    def stop(self, bucket: Held, reason: str, task_id: str | None = None) -> None:
        running = bucket.work.tasks[0].id
        if task_id in (None, running) and not self._aborts.closed:
            self._aborts.spawn(self.runs.abort(running, reason, bucket.work.grace),
                               name=f"abort-{running}")

    async def close(self) -> None:
        """Stop watching: containers still running go on, for the next start to adopt."""
        await self._aborts.close()
        await self.runs.close()
