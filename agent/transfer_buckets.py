"""Transfer buckets, as the agent runs them in its transfer slots: one file at a time, or a
bucket of small files many to a request (``Work`` runs compute buckets on its lanes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec
import structlog

from agent.hubclient import HubClient
from agent.outbox import Outbox
from agent.transfer import TransferService
from core.errors import ApiError
from lanes import Outcome
from protocol import (
    BucketWork,
    ExpandRequest,
    ExpandResponse,
    FileResult,
    FilesReport,
    ListedFile,
    TaskWork,
)
from transports.chunks import TransferError
from transports.client import Landed

if TYPE_CHECKING:
    from agent.work import BucketRun

log = structlog.get_logger("agent.work")


def iso(ts: float) -> str:
    """A time as reports carry it: UTC, ISO 8601, milliseconds, ``Z``."""
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None).isoformat(
        timespec="milliseconds") + "Z"


def _keep(run: BucketRun, task: TaskWork) -> Callable[[bool], bool]:
    """Whether a transfer that ended without its file keeps its part file: only for an
    attempt that comes after. An aborted task has none; a failed one none on its last
    attempt; a stopped one none when its lease was lost on its last attempt (the hub
    fails it). A draining agent's tasks go back without an attempt spent: they keep it."""

    def keep(stopped: bool) -> bool:
        if task.id in run.aborted:
            return False
        if not stopped:
            return not task.last_attempt
        return not (task.last_attempt and run.lost)

    return keep


class TransferBuckets:
    """What ``Work`` adds for transfer buckets; it provides the attributes below."""

    hub: HubClient
    outbox: Outbox
    transfer: TransferService | None

    def _finish(self, bucket: BucketWork, task: TaskWork, outcome: Outcome) -> None:
        raise NotImplementedError

    def _report(self, bucket: BucketWork, task: TaskWork, event: str, at: float,
                outcome: Outcome | None = None, message: str = "") -> None:
        raise NotImplementedError

    def _hand_back(self, bucket: BucketWork, tasks: list[TaskWork], why: str) -> None:
        raise NotImplementedError

    async def _run_transfers(self, run: BucketRun) -> int:
        """Transfer tasks on the event loop (the bytes move on threads): one after the
        other, or a bucket of small files together. Returns how many were taken."""
        bucket = run.work
        if len(bucket.tasks) > 1 and self.transfer is not None and all(
                t.transfer is not None for t in bucket.tasks):
            return await self._run_small(run)
        taken = 0
        for task in bucket.tasks:
            if run.stop_reason:
                break
            taken += 1
            started = time.time()
            if task.id in run.aborted:
                outcome = Outcome(status="aborted", exit_code=None,
                                  message="aborted before it started", started=started,
                                  ended=started)
            else:
                self._report(bucket, task, "started", started)
                outcome = await self._transfer(run, task, started)
            run.ended.add(task.id)
            if not run.lost:
                self._finish(bucket, task, outcome)
        return taken

    async def _transfer(self, run: BucketRun, task: TaskWork, started: float) -> Outcome:
        def failed(message: str) -> Outcome:
            return Outcome(status="failed", exit_code=None, message=message, started=started,
                           ended=time.time())

        if self.transfer is None or task.transfer is None:
            return failed("this agent runs no transfer endpoint (transfer: false)")

        async def expand(files: list[ListedFile]) -> None:  # a folder: a task per file
            await self.hub.request("POST", "/agent/expand", ExpandRequest(
                bucket_id=run.work.id, task_id=task.id, files=files), ExpandResponse)

        runner = asyncio.create_task(self.transfer.mover.run_task(task.id, task.transfer,
                                                                  expand, _keep(run, task)))
        run.transfer = (task.id, runner)
        try:
            summary, size = await runner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being stopped, not the transfer
            return Outcome(status="aborted", exit_code=None, message=run.stopped_because,
                           started=started, ended=time.time())
        except (TransferError, ApiError) as exc:
            return failed(str(exc))
        except Exception as exc:
            log.exception("transfer failed in the agent", task=task.id)
            return failed(f"the agent failed while running it: {exc}")
        finally:
            run.transfer = None
        text = summary + "\n"
        return Outcome(status="done", exit_code=0, message="", started=started,
                       ended=time.time(), log_tail=text, log_size=len(text.encode()), size=size)

    async def _run_small(self, run: BucketRun) -> int:
        """A bucket of small files, many to a request. The files of each request are
        reported together, when it ends; what was never sent is reported aborted (if it
        was) or handed back (a stopping bucket)."""
        assert self.transfer is not None
        bucket = run.work
        started = iso(time.time())
        sent = 0

        def done(results: list[tuple[str, Landed | TransferError]]) -> None:
            nonlocal sent
            run.ended.update(task_id for task_id, _ in results)
            if run.lost or not results:
                return
            key = f"{bucket.id}/files/{sent}"
            sent += 1
            files = [FileResult(task_id=task_id, size=r.size, hash=r.hash)
                     if isinstance(r, Landed) else FileResult(task_id=task_id,
                                                              message=str(r)[:4096])
                     for task_id, r in results]
            self.outbox.add("report", key, msgspec.json.encode(FilesReport(
                key=key, bucket_id=bucket.id, at=iso(time.time()), started=started,
                files=files)))

        tasks = {t.id: t for t in bucket.tasks}
        runner = asyncio.create_task(self.transfer.mover.run_small(
            [(t.id, t.transfer) for t in bucket.tasks if t.transfer is not None], done,
            lambda task_id: not run.stop_reason and task_id not in run.aborted,
            lambda task_id: _keep(run, tasks[task_id])))
        run.transfer = ("", runner)  # stopped as a whole; an abort only skips its task
        failure = ""
        try:
            await runner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception as exc:
            log.exception("small-file bucket failed in the agent", bucket=bucket.id)
            failure = f"the agent failed while running it: {exc}"
        finally:
            run.transfer = None
        left = [t for t in bucket.tasks if t.id not in run.ended]
        if failure:
            done([(t.id, TransferError(failure)) for t in left])
        now = time.time()
        for task in left:
            if not failure and task.id in run.aborted:
                run.ended.add(task.id)
                if not run.lost:
                    self._finish(bucket, task, Outcome(
                        status="aborted", exit_code=None, message="aborted before it started",
                        started=now, ended=now))
        if not run.lost:
            self._hand_back(bucket, [t for t in bucket.tasks if t.id not in run.ended],
                            run.stop_reason or "stopped")
        return len(bucket.tasks)
