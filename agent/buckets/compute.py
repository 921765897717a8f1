"""Compute buckets, on the agent's lanes: a bucket's tasks run one after the other on
the lane the hub leased it for, each as a process in its own session
(``lanes.subprocess``).

The lanes are client records at the hub (type 5); every enrollment names them, and
a lane holds one bucket at a time. A task's start and end are told on the lane's
thread and reach the outbox through a ``LoopInbox`` (in batches: waking the loop once
per short task would cost a lane a quarter of its speed). A task's log stays on disk
for its upload only when its tail does not say it all. While a task runs, what its log
gained since the last heartbeat rides on the next one (``output``): the hub shows it live.
So do its progress lines (``agent/buckets/progress.py``): the latest progress and stage
and new outputs ride on the heartbeats (``progress``), and all of them on its end report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import psutil
import structlog

from agent.buckets.base import Held
from agent.buckets.progress import ProgressScanner
from agent.buckets.reports import Reporter, upload_log
from agent.inbox import LoopInbox
from lanes.accounting import CgroupTree
from lanes.base import Lane, Outcome, TaskRun
from lanes.kill import marked
from lanes.subprocess import SubprocessLane
from protocol import LOG_TAIL_BYTES, BucketKind, BucketWork, ClaimRequest, TaskProgress

log = structlog.get_logger("agent.work")


class ComputeRunner:
    """Runs compute buckets on lanes made by ``make_lane`` (``SubprocessLane`` in the
    agent's cgroups, by default)."""

    kind = BucketKind.COMPUTE

    def __init__(self, cgroups: CgroupTree, agent_id: str,
                 make_lane: Callable[[str], Lane] | None = None) -> None:
        self.cgroups = cgroups
        self.agent_id = agent_id  # in every task's environment: a restarted agent finds them
        self.make_lane = make_lane or (lambda name: SubprocessLane(name, cgroups))
        self.lanes: dict[str, Lane] = {}
        self._events: LoopInbox | None = None
        # running tasks' logs, and how much of each the hub has been sent
        self._running: dict[str, tuple[Path, int]] = {}
        self._scanners: dict[str, ProgressScanner] = {}  # running tasks' progress lines
        self._running_lock = threading.Lock()

    def progress(self) -> dict[str, TaskProgress]:
        """What running tasks said in progress lines since the last call, for the
        heartbeat. Reads their logs' new lines: call it in a thread."""
        with self._running_lock:
            scanners = dict(self._scanners)
        return {task_id: news for task_id, scanner in scanners.items()
                if (news := scanner.news()) is not None}

    def output(self) -> dict[str, str]:
        """What each running task's log gained since the last call (its end, when that is
        more than ``LOG_TAIL_BYTES``), for the heartbeat. Whole characters only: the
        bytes of one cut by the read wait for the next call."""
        with self._running_lock:
            running = dict(self._running)
        out: dict[str, str] = {}
        for task_id, (path, sent) in running.items():
            try:
                with open(path, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    if size <= sent:
                        continue
                    start = max(sent, size - LOG_TAIL_BYTES)
                    fh.seek(start)
                    data = fh.read(LOG_TAIL_BYTES)
            except OSError:
                continue
            skip = 0
            if start > sent:  # the middle was left out: start at a character
                while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
                    skip += 1
            end = _whole(data)
            with self._running_lock:
                if task_id in self._running:
                    self._running[task_id] = (path, start + end)
            if end > skip:
                out[task_id] = data[skip:end].decode("utf-8", "replace")
        return out

    def set_lanes(self, ids: list[str]) -> None:
        """The lane clients the hub keeps for us (on every enrollment, in order)."""
        for lane_id in ids:
            if lane_id not in self.lanes:
                self.lanes[lane_id] = self.make_lane(lane_id)

    def kill_leftovers(self) -> int:
        """Tasks a killed earlier run of this agent left running: the hub gives them to
        someone else, so they must not go on here. Found by their cgroup and by the
        agent's mark in their environment. Blocks: call it in a thread."""
        killed = self.cgroups.kill_all()
        for proc in marked("FERRY_AGENT_ID", self.agent_id):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                killed += 1
        return killed

    def free(self, held: Sequence[Held]) -> ClaimRequest:
        busy = {h.work.lane_id for h in held}
        return ClaimRequest(lanes=[lane for lane in self.lanes if lane not in busy])

    def _inbox(self) -> LoopInbox:
        if self._events is None:  # made on the loop that runs the buckets
            self._events = LoopInbox(asyncio.get_running_loop())
        return self._events

    async def run(self, bucket: Held, reporter: Reporter) -> int | None:
        """Its tasks run back to back on the lane's thread; their events come back here."""
        work = bucket.work
        lane = self.lanes.get(work.lane_id)
        if lane is None:
            log.error("hub gave work to a lane we do not have", lane=work.lane_id)
            return None
        inbox = self._inbox()
        by_id = {task.id: task for task in work.tasks}

        def on_start(task: TaskRun) -> None:  # on the lane's thread
            with self._running_lock:
                self._running[task.task_id] = (task.log, 0)
                self._scanners[task.task_id] = ProgressScanner(task.log)
            inbox.call(reporter.started, work, by_id[task.task_id], time.time())

        def on_end(task: TaskRun, outcome: Outcome) -> None:  # on the lane's thread
            with self._running_lock:
                self._running.pop(task.task_id, None)
                scanner = self._scanners.pop(task.task_id, None)
            bucket.ended.add(task.task_id)
            # a task that ended soon was never told of as started: its scanner starts now
            said = None if bucket.lost else (scanner or ProgressScanner(task.log)).whole()
            if bucket.lost or not upload_log(outcome):  # a lost lease: the hub refuses it
                task.log.unlink(missing_ok=True)
            if not bucket.lost:
                inbox.call(partial(reporter.finished, said=said), work,
                           by_id[task.task_id], outcome)

        taken = await lane.run_many(self._task_runs(work, reporter), on_start, on_end,
                                    lambda: not bucket.stopping,
                                    lambda task: task.task_id in bucket.aborted)
        inbox.flush()  # every task's end is in the outbox before the bucket's
        return taken

    def _task_runs(self, bucket: BucketWork, reporter: Reporter) -> list[TaskRun]:
        reporter.log_folder(bucket).mkdir(parents=True, exist_ok=True)
        common = {**bucket.env, "FERRY_JOB_ID": bucket.job_id, "FERRY_BUCKET_ID": bucket.id,
                  "FERRY_LANE": bucket.lane_id, "FERRY_AGENT_ID": self.agent_id}
        return [TaskRun(task_id=task.id, argv=task.argv, log=reporter.log_path(bucket, task),
                        env={**common, "FERRY_ITEM": task.item, "FERRY_TASK_ID": task.id,
                             "FERRY_ATTEMPT": str(task.attempt), "FERRY_URI": task.uri},
                        cwd=bucket.cwd, timeout=bucket.timeout, grace=bucket.grace,
                        mark="FERRY_TASK_ID")
                for task in bucket.tasks]

    def stop(self, bucket: Held, reason: str, task_id: str | None = None) -> None:
        lane = self.lanes.get(bucket.work.lane_id)
        if lane is not None:
            lane.abort(task_id, reason)

    async def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()
        self.cgroups.close()


def _whole(data: bytes) -> int:
    """How much of ``data`` ends on a whole UTF-8 character (a cut one is left out)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): does its character fit?
            need = 1 if byte < 0x80 else 4 if byte >= 0xF0 else 3 if byte >= 0xE0 else 2
            return len(data) if back >= need else len(data) - back
    return len(data)
