"""Small stand-ins for the agent's bucket tests: a runner the test drives and a lane that
runs nothing (the hub's stand-in is agent/fakehub.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from agent.buckets.base import Held
from agent.buckets.reports import Reporter
from lanes.base import Outcome, TaskRun
from protocol import BucketKind, BucketWork, ClaimRequest, TaskWork


def bucket(bucket_id: str = "b1", tasks: int = 2, kind: BucketKind = BucketKind.COMPUTE,
           lane: str = "lane-1", job: str = "job-1") -> BucketWork:
    return BucketWork(id=bucket_id, job_id=job, lane_id=lane, kind=kind, tasks=[
        TaskWork(id=f"{bucket_id}-t{n}", uri=str(n), item=str(n), argv=["true"], attempt=1)
        for n in range(1, tasks + 1)])


def outcome(status: str = "done") -> Outcome:
    now = time.time()
    return Outcome(status=status, exit_code=0 if status == "done" else None,  # type: ignore[arg-type]
                   message="", started=now, ended=now, log_tail="ok\n", log_size=3)


class StepRunner:
    """A runner whose buckets run one task per ``step()``, until the bucket says stop."""

    def __init__(self, kind: BucketKind = BucketKind.COMPUTE, slots: int = 1) -> None:
        self.kind = kind
        self.slots = slots
        self.steps: asyncio.Queue[str] = asyncio.Queue()  # "next" or "fail"
        self.stopped: list[tuple[str, str, str | None]] = []  # (bucket, reason, task)
        self.closed = False
        self.result: int | None = 0  # None: the bucket's end is not this agent's
        self.running = 0  # buckets whose task runs (waits for its step)

    async def started(self, buckets: int = 1) -> None:
        """Until the tasks of ``buckets`` buckets run."""
        for _ in range(1000):
            if self.running >= buckets:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"never happened: {buckets} buckets running")

    def step(self, what: str = "next") -> None:
        self.steps.put_nowait(what)

    def free(self, held: Sequence[Held]) -> ClaimRequest:
        return ClaimRequest(lanes=[], slots=max(0, self.slots - len(held)))

    async def run(self, bucket: Held, reporter: Reporter) -> int | None:
        taken = 0
        for task in bucket.work.tasks:
            if bucket.stopping:
                break
            self.running += 1
            try:
                what = await self.steps.get()
            finally:
                self.running -= 1
            if what == "fail":
                raise RuntimeError("the runner broke")
            taken += 1
            bucket.ended.add(task.id)
            if not bucket.lost:
                reporter.finished(bucket.work, task, outcome())
        return taken if self.result is not None else None

    def stop(self, bucket: Held, reason: str, task_id: str | None = None) -> None:
        self.stopped.append((bucket.work.id, reason, task_id))
        if task_id is None:
            self.step()  # its running task ends at once

    async def close(self) -> None:
        self.closed = True


class QuietLane:
    """A lane whose tasks end at once, told from another thread as a real lane's are."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.aborted: list[tuple[str | None, str]] = []
        self.closed = False

    async def run_many(self, tasks: list[TaskRun], started: Callable[[TaskRun], None],
                       ended: Callable[[TaskRun, Outcome], None], go_on: Callable[[], bool],
                       skip: Callable[[TaskRun], bool] = lambda _t: False) -> int:
        def on_thread() -> int:
            count = 0
            for task in tasks:
                if not go_on():
                    break
                task.log.write_text("ok\n")
                started(task)
                ended(task, outcome("aborted" if skip(task) else "done"))
                count += 1
            return count

        return await asyncio.to_thread(on_thread)

    def abort(self, task_id: str | None, reason: str = "aborted") -> bool:
        self.aborted.append((task_id, reason))
        return True

    def close(self) -> None:
        self.closed = True
