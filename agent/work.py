"""The agent's work: claim buckets for free lanes, run them, heartbeat, drain on stop.

Each lane is a ``SubprocessLane`` that runs one bucket's tasks one after the
other. Every event (task started, done, failed, handed back; bucket ended)
goes into the outbox at once and reaches the hub through the sender. While
the agent holds buckets it heartbeats; the answers renew the leases and
carry aborts (kill that task), pauses (hand back what has not started) and
lost leases (stop: the work was given to someone else).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil
import structlog

from agent.docker_buckets import DockerBuckets
from agent.docker_runs import DockerRuns
from agent.hubclient import HubClient, Retryable
from agent.inbox import LoopInbox
from agent.outbox import Outbox
from agent.state import AgentState
from agent.transfer import TransferService
from agent.transfer_buckets import TransferBuckets, iso
from core.errors import ApiError
from core.lifecycle import until_stopped
from lanes import Outcome, SubprocessLane, TaskRun
from lanes.accounting import CgroupTree
from lanes.docker_lane import Adopted
from lanes.kill import marked
from protocol import (
    BucketReport,
    BucketWork,
    ClaimRequest,
    ClaimResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    TaskReport,
    TaskWork,
    whole_log_needed,
)

log = structlog.get_logger("agent.work")

CLAIM_WAIT = 20.0  # seconds a claim may wait at the hub for work


def _log_path(folder: Path, task_id: str, bucket_id: str) -> Path:
    """One file per run: a run of the same task that starts while an earlier run's log
    still waits for its upload must not overwrite it."""
    return folder / f"{task_id}.{bucket_id}.log"


def _upload_log(outcome: Outcome) -> bool:
    return whole_log_needed(outcome.log_size, outcome.log_tail)


@dataclass
class BucketRun:
    work: BucketWork
    lane: SubprocessLane | None  # None: a transfer or docker bucket, in a slot
    stop_reason: str = ""  # "lost", "paused", "draining": no new task starts
    aborted: set[str] = field(default_factory=set)  # tasks the hub wants stopped
    ended: set[str] = field(default_factory=set)  # tasks whose end is reported
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    # a transfer bucket's running task: (task id, its coroutine), and why it was stopped
    transfer: tuple[str, asyncio.Task[Any]] | None = field(default=None, repr=False)
    stopped_because: str = ""
    docker: DockerRuns | None = field(default=None, repr=False)  # runs a docker bucket
    adopted: Adopted | None = field(default=None, repr=False)  # its container, adopted
    detached: bool = False  # the agent stopped while its container ran on (not reported)
    stopping: asyncio.Future[None] | None = field(default=None, repr=False)  # docker stop

    @property
    def lost(self) -> bool:
        return self.stop_reason == "lost"

    def stop_current(self, reason: str, task_id: str | None = None) -> None:
        """Stop the running task (``task_id``: only if it is that one)."""
        if self.lane is not None:
            self.lane.abort(task_id, reason)
        if self.transfer is not None and task_id in (None, self.transfer[0]):
            self.stopped_because = reason
            self.transfer[1].cancel()
        if self.docker is not None and self.work.kind == "docker":
            running = self.work.tasks[0].id
            if task_id in (None, running):
                self.stopping = asyncio.ensure_future(
                    self.docker.abort(running, reason, self.work.grace))


class Work(TransferBuckets, DockerBuckets):
    def __init__(self, hub: HubClient, outbox: Outbox, state: AgentState, data_dir: Path,
                 agent_id: str) -> None:
        self.hub = hub
        self.outbox = outbox
        self.state = state
        self.logs = data_dir / "logs"
        self.agent_id = agent_id
        self.cgroups = CgroupTree(agent_id)
        self.lanes: dict[str, SubprocessLane] = {}
        self.buckets: dict[str, BucketRun] = {}
        self.heartbeat_interval = 5.0
        self._lane_free = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._held = asyncio.Event()  # set while any bucket is held
        self.idle = asyncio.Event()  # set while none is
        self.idle.set()
        self._lane_events: LoopInbox | None = None
        self.transfer: TransferService | None = None  # runs transfer tasks (the daemon sets it)
        self.transfer_slots = 0  # transfer buckets at once, beside the lanes (the daemon sets it)
        self.docker: DockerRuns | None = None  # runs docker buckets (the daemon sets it)
        self._docker_free = asyncio.Event()

    def _inbox(self) -> LoopInbox:
        if self._lane_events is None:  # made on the loop that runs the buckets
            self._lane_events = LoopInbox(asyncio.get_running_loop())
        return self._lane_events

    # -- lanes
    def set_lanes(self, ids: list[str]) -> None:
        """The lane clients the hub keeps for us (on every enrollment, in order)."""
        for lane_id in ids:
            if lane_id not in self.lanes:
                self.lanes[lane_id] = SubprocessLane(lane_id, self.cgroups)
        self._lane_free.set()

    def free_lanes(self) -> list[str]:
        busy = {b.lane.name for b in self.buckets.values() if b.lane is not None}
        return [lane for lane in self.lanes if lane not in busy]

    def free_slots(self) -> int:
        """Transfer slots with no bucket: transfers run beside the lanes, not in them."""
        if self.transfer is None:
            return 0
        return max(0, self.transfer_slots - sum(
            1 for b in self.buckets.values() if b.work.kind == "transfer"))

    def _held_buckets(self) -> list[BucketRun]:
        return list(self.buckets.values())

    def kill_leftovers(self) -> int:
        """Tasks a killed earlier run of this agent left running: the hub gives them to
        someone else, so they must not go on here. Found by their cgroup and by the
        agent's mark in their environment."""
        killed = self.cgroups.kill_all()
        for proc in marked("FERRY_AGENT_ID", self.agent_id):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                killed += 1
        return killed

    # -- claims
    async def claim_loop(self, stop: asyncio.Event) -> None:
        """Two claimers, each long-polling on its own: one for free lanes, one for free
        transfer slots. A claim waiting for transfers never keeps a free lane idle."""
        claimers = [self._claimer(stop, "lanes"), self._claimer(stop, "transfers")]
        if self.docker is not None and self.docker.ready:
            claimers.append(self._claimer(stop, "docker"))
        await asyncio.gather(*claimers)

    async def _claimer(self, stop: asyncio.Event, kind: str) -> None:
        freed = {"lanes": self._lane_free, "transfers": self._slot_free,
                 "docker": self._docker_free}[kind]
        while not stop.is_set():
            free = self.free_lanes() if kind == "lanes" else []
            slots = self.free_slots() if kind == "transfers" else 0
            docker = self.free_docker() if kind == "docker" else 0
            if not (free or slots or docker) or not self.state.accepting_work:
                freed.clear()
                # nothing free: until something is; disabled: look again in a second
                await until_stopped(stop, freed.wait() if not (free or slots or docker)
                             else asyncio.sleep(1.0))
                continue
            try:
                # the hub answers within the wait: keep it well inside the request timeout,
                # or an answer (and its leases) could be lost to our own time-out
                timeout = self.hub.request_timeout
                wait = min(CLAIM_WAIT, max(timeout - 5.0, timeout / 2))
                answer = await until_stopped(stop, self.hub.request(
                    "POST", "/agent/claim", ClaimRequest(lanes=free, wait=wait, slots=slots,
                                                         docker=docker), ClaimResponse))
            except ApiError as exc:
                log.error("hub refused the claim", error=str(exc))
                await until_stopped(stop, asyncio.sleep(5.0))
                continue
            if answer is None:  # stopping
                return
            self.heartbeat_interval = answer.heartbeat_interval
            for bucket in answer.buckets:
                self._start(bucket)

    def _start(self, bucket: BucketWork, adopted: Adopted | None = None) -> None:
        lane = self.lanes.get(bucket.lane_id)
        if lane is None and bucket.kind == "compute":
            log.error("hub gave work to a lane we do not have", lane=bucket.lane_id)
            return
        if bucket.kind == "docker" and self.docker is None:
            log.error("hub gave a docker run to an agent that runs none", bucket=bucket.id)
            return
        run = BucketRun(bucket, lane if bucket.kind == "compute" else None,
                        docker=self.docker if bucket.kind == "docker" else None,
                        adopted=adopted)
        self.buckets[bucket.id] = run
        self._held.set()
        self.idle.clear()
        self.state.busy = len(self.buckets)
        run.task = asyncio.create_task(self._run_bucket(run), name=f"bucket-{bucket.id}")

    # -- buckets
    async def _run_bucket(self, run: BucketRun) -> None:
        """Its tasks run back to back on the lane's thread; their events come back here."""
        bucket = run.work
        started = time.time()
        inbox = self._inbox()
        by_id = {task.id: task for task in bucket.tasks}

        def on_start(task: TaskRun) -> None:  # on the lane's thread
            inbox.call(self._report, bucket, by_id[task.task_id], "started", time.time())

        def on_end(task: TaskRun, outcome: Outcome) -> None:  # on the lane's thread
            run.ended.add(task.task_id)
            if run.lost or not _upload_log(outcome):  # a lost lease: the hub refuses it
                task.log.unlink(missing_ok=True)
            if not run.lost:
                inbox.call(self._finish, bucket, by_id[task.task_id], outcome)

        try:
            if bucket.kind == "transfer":
                ran = await self._run_transfers(run)
            elif bucket.kind == "docker":
                ran = await self._run_docker(run)
                if run.detached:
                    return
            else:
                assert run.lane is not None  # compute buckets come for a lane
                ran = await run.lane.run_many(self._task_runs(bucket), on_start, on_end,
                                              lambda: not run.stop_reason,
                                              lambda task: task.task_id in run.aborted)
            inbox.flush()  # every task's end is in the outbox before the bucket's
            if run.stop_reason and not run.lost:
                self._hand_back(bucket, bucket.tasks[ran:], run.stop_reason)
            with contextlib.suppress(OSError):  # the job's log folder, once it is empty
                (self.logs / bucket.job_id).rmdir()
            if not run.lost:
                self.outbox.add("report", f"{bucket.id}/end", msgspec.json.encode(BucketReport(
                    key=f"{bucket.id}/end", bucket_id=bucket.id, started=iso(started),
                    ended=iso(time.time()))))
        except Exception:
            log.exception("bucket failed in the agent; handing back what it did not run",
                          bucket=bucket.id)
            if not run.lost:
                self._hand_back(bucket, [t for t in bucket.tasks if t.id not in run.ended],
                                "the agent failed")
        finally:
            self.buckets.pop(bucket.id, None)
            self.state.busy = len(self.buckets)
            if not self.buckets:
                self._held.clear()
                self.idle.set()
            {"compute": self._lane_free, "transfer": self._slot_free,
             "docker": self._docker_free}.get(bucket.kind, self._lane_free).set()

    def _task_runs(self, bucket: BucketWork) -> list[TaskRun]:
        folder = self.logs / bucket.job_id
        folder.mkdir(parents=True, exist_ok=True)
        common = {**bucket.env, "FERRY_JOB_ID": bucket.job_id, "FERRY_BUCKET_ID": bucket.id,
                  "FERRY_LANE": bucket.lane_id, "FERRY_AGENT_ID": self.agent_id}
        return [TaskRun(task_id=task.id, argv=task.argv, log=_log_path(folder, task.id, bucket.id),
                        env={**common, "FERRY_ITEM": task.item, "FERRY_TASK_ID": task.id,
                             "FERRY_ATTEMPT": str(task.attempt), "FERRY_URI": task.uri},
                        cwd=bucket.cwd, timeout=bucket.timeout, grace=bucket.grace,
                        mark="FERRY_TASK_ID")
                for task in bucket.tasks]

    def _log_of(self, bucket: BucketWork, task: TaskWork) -> Path:
        return _log_path(self.logs / bucket.job_id, task.id, bucket.id)

    def _finish(self, bucket: BucketWork, task: TaskWork, outcome: Outcome,
                result: str | None = None, log_uploaded: bool = True) -> None:
        self._report(bucket, task, outcome.status, at=outcome.ended, outcome=outcome,
                     result=result)
        if log_uploaded and _upload_log(outcome):
            path = self._log_of(bucket, task)
            self.outbox.add("log", f"{bucket.id}/{task.id}/log", msgspec.json.encode(
                {"task_id": task.id, "bucket_id": bucket.id, "path": str(path)}))

    def _report(self, bucket: BucketWork, task: TaskWork, event: str, at: float,
                outcome: Outcome | None = None, message: str = "",
                result: str | None = None) -> None:
        key = f"{bucket.id}/{task.id}/{'started' if event == 'started' else 'end'}"
        report = TaskReport(key=key, task_id=task.id, bucket_id=bucket.id, event=event,  # type: ignore[arg-type]
                            at=iso(at), message=message)
        if outcome is not None:
            report = TaskReport(
                key=key, task_id=task.id, bucket_id=bucket.id, event=outcome.status, at=iso(at),
                started=iso(outcome.started), exit_code=outcome.exit_code,
                message=outcome.message[:4096], log_tail=outcome.log_tail[-16384:],
                log_size=outcome.log_size, cpu_seconds=outcome.cpu_seconds,
                peak_memory=outcome.peak_memory, size=outcome.size, result=result)
        self.outbox.add("report", key, msgspec.json.encode(report), volatile=event == "started")

    def _hand_back(self, bucket: BucketWork, tasks: list[TaskWork], why: str) -> None:
        for task in tasks:
            self._report(bucket, task, "returned", at=time.time(),
                         message=f"handed back unstarted ({why})")

    # -- heartbeats
    async def heartbeat_loop(self, stop: asyncio.Event) -> None:
        """Runs until the agent has drained: leases must be renewed while work finishes."""
        while not (stop.is_set() and not self.buckets):
            if not self.buckets:
                await until_stopped(stop, self._held.wait())
                continue
            await asyncio.sleep(self.heartbeat_interval)
            held = list(self.buckets)
            if not held:
                continue
            try:
                answer = await self.hub.request(
                    "POST", "/agent/heartbeat", HeartbeatRequest(
                        buckets=held,
                        progress=self.transfer.mover.progress() if self.transfer else {},
                        logs=self.docker.take_output() if self.docker else {}),
                    HeartbeatResponse, attempts=3)
            except (Retryable, ApiError) as exc:
                log.warning("heartbeat failed; leases run on until the hub is back",
                            error=str(exc))
                continue
            self.apply(answer)

    def apply(self, answer: HeartbeatResponse) -> None:
        self.heartbeat_interval = answer.heartbeat_interval
        for bucket_id in answer.lost:
            run = self.buckets.get(bucket_id)
            if run is not None:
                log.warning("lease lost; stopping the bucket", bucket=bucket_id)
                run.stop_reason = "lost"
                run.stop_current("lease lost")
        abort = set(answer.abort)
        for run in self.buckets.values():
            mine = {t.id for t in run.work.tasks} & abort
            run.aborted |= mine  # those not started yet are skipped
            for task_id in mine:  # the one running (if any) is stopped
                run.stop_current("aborted at the hub", task_id)
            if run.work.job_id in answer.paused and not run.stop_reason:
                run.stop_reason = "paused"

    # -- stop
    async def drain(self, deadline: float, forced: asyncio.Event) -> None:
        """Start nothing new, let running tasks finish until ``deadline`` (monotonic) or
        ``forced``, then stop them; everything unfinished is handed back to the hub."""
        for run in self.buckets.values():
            run.stop_reason = run.stop_reason or "draining"
        pending: set[asyncio.Future[Any]] = {r.task for r in self.buckets.values()
                                             if r.task is not None}
        if pending:
            log.info("draining", buckets=len(pending), running=sum(
                1 for r in self.buckets.values() if r.lane is None or r.lane.current))
        force = asyncio.ensure_future(forced.wait())
        try:
            while pending and not forced.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                done, _ = await asyncio.wait(pending | {force}, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                pending -= done
        finally:
            force.cancel()
        if pending:  # past the deadline: stop them; the buckets report them handed back
            for run in list(self.buckets.values()):
                run.stop_current("the agent is stopping")
            await asyncio.wait(pending, timeout=60)
        for lane in self.lanes.values():
            lane.close()
        self.cgroups.close()
