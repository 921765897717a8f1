"""Transfer buckets, in the agent's transfer slots beside its lanes: a bucket is one
task, a file or a folder (``agent.moving`` moves the bytes, ``agent.folder`` a folder's).

A transfer never holds a lane a render could use, nor waits for one: the hub leases
transfer buckets to free slots only. Each running transfer is a task of its own, so
that stopping it (an abort, a lost lease, the drain's deadline) cancels the transfer
and not the bucket, which goes on to report it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from agent.buckets.base import Held
from agent.buckets.reports import Reporter
from agent.config import AgentConfig
from agent.folder import FolderFailed
from agent.sequence import FramesMissing
from agent.transfer import Checkin, TransferService
from core.errors import ApiError
from lanes.base import Outcome
from protocol import BucketKind, ClaimRequest, Progress, TaskWork
from protocol.sequences import frames_text
from protocol.work import LOG_TAIL_BYTES, MAX_MISSING
from transports.chunks import TransferError

log = structlog.get_logger("agent.work")


def keep_part(bucket: Held, task: TaskWork) -> Callable[[bool], bool]:
    """Whether a transfer that ended without its file keeps its part file: only for an
    attempt that comes after. An aborted task has none; a failed one none on its last
    attempt; a stopped one none when its lease was lost on its last attempt (the hub
    fails it). A draining agent's tasks go back without an attempt spent: they keep it."""

    def keep(stopped: bool) -> bool:
        if task.id in bucket.aborted:
            return False
        if not stopped:
            return not task.last_attempt
        return not (task.last_attempt and bucket.lost)

    return keep


@dataclass
class _Moving:
    """A bucket's running transfer: its task's (``task_id``)."""

    task_id: str
    runner: asyncio.Task[Any]
    why: str = ""  # why it was stopped


class TransferRunner:
    """Runs transfer buckets with ``service``'s mover, at most ``slots`` at once."""

    kind = BucketKind.TRANSFER

    def __init__(self, service: TransferService, slots: int) -> None:
        self.service = service
        self.slots = slots
        self._moving: dict[str, _Moving] = {}  # by bucket id

    @classmethod
    def build(cls, config: AgentConfig, data_dir: Path, checkin: Checkin) -> TransferRunner:
        """The runner and the endpoint that serves this agent's shares (``checkin``: one
        check-in now, for a share a peer names that the endpoint does not know yet)."""
        return cls(TransferService(config, data_dir, checkin), config.transfer_slots)

    def free(self, held: Sequence[Held]) -> ClaimRequest:
        return ClaimRequest(lanes=[], slots=max(0, self.slots - len(held)))

    def progress(self) -> dict[str, Progress]:
        """Running transfer tasks' bytes, for the heartbeat."""
        return self.service.mover.progress()

    def speed_limits(self, limits: dict[str, int]) -> None:
        """A heartbeat's answer: running jobs' speed limits, as the hub has them now."""
        self.service.mover.set_speed_limits(limits)

    def stop(self, bucket: Held, reason: str, task_id: str | None = None) -> None:
        moving = self._moving.get(bucket.work.id)
        if moving is not None and task_id in (None, moving.task_id):
            moving.why = reason
            moving.runner.cancel()

    async def close(self) -> None:
        """Nothing to let go of: the endpoint stops with the agent, after the outbox."""

    async def run(self, bucket: Held, reporter: Reporter) -> int | None:
        """Transfer tasks on the event loop (the bytes move on threads), one after the
        other (the hub leases one a bucket). Returns how many were taken."""
        work = bucket.work
        taken = 0
        for task in work.tasks:
            if bucket.stopping:
                break
            taken += 1
            started = time.time()
            if task.id in bucket.aborted:
                outcome = Outcome(status="aborted", exit_code=None,
                                  message="aborted before it started", started=started,
                                  ended=started)
            else:
                reporter.started(work, task, started)
                outcome = await self._transfer(bucket, task, started)
            bucket.ended.add(task.id)
            if not bucket.lost:
                reporter.finished(work, task, outcome)
        return taken

    async def _transfer(self, bucket: Held, task: TaskWork, started: float) -> Outcome:
        def failed(message: str) -> Outcome:
            return Outcome(status="failed", exit_code=None, message=message, started=started,
                           ended=time.time())

        if task.transfer is None:
            return failed("this agent runs no transfer endpoint (transfer: false)")

        moving = _Moving(task.id, asyncio.create_task(self.service.mover.run_task(
            task.id, task.transfer, keep_part(bucket, task), bucket.work.job_id)))
        self._moving[bucket.work.id] = moving
        try:
            summary, size, missing = await moving.runner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being stopped, not the transfer
            return Outcome(status="aborted", exit_code=None, message=moving.why,
                           started=started, ended=time.time())
        except FramesMissing as exc:  # the job lists them, and fails naming them
            return Outcome(status="failed", exit_code=None, message=str(exc)[:4096],
                           started=started, ended=time.time(),
                           missing_frames=frames_text(exc.missing, MAX_MISSING - 100))
        except FolderFailed as exc:  # the files that did not arrive, by name, in the log
            text = exc.log()[-LOG_TAIL_BYTES // 2:]  # a tail: the message names the first
            return Outcome(status="failed", exit_code=None, message=str(exc)[:4096],
                           started=started, ended=time.time(), log_tail=text,
                           log_size=len(text.encode()))
        except (TransferError, ApiError) as exc:
            return failed(str(exc))
        except Exception as exc:
            log.exception("transfer failed in the agent", task=task.id)
            return failed(f"the agent failed while running it: {exc}")
        finally:
            self._moving.pop(bucket.work.id, None)
        text = summary + "\n"
        return Outcome(status="done", exit_code=0, message="", started=started,
                       ended=time.time(), log_tail=text, log_size=len(text.encode()), size=size,
                       missing_frames=missing)
