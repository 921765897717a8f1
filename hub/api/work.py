"""What agents call to get and report work: claim, heartbeat, report, reset, log upload."""

from __future__ import annotations

import asyncio
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web
from sqlalchemy import select

from core import refusals
from core.errors import ApiError
from hub.api.agents import agent_principal
from hub.api.common import Route, error_response, json_response, read_body, runtime
from hub.jobs import reports
from hub.jobs.dispatch import Dispatcher
from hub.storage.models import Bucket, Task, utcnow
from protocol import (
    ClaimRequest,
    ClaimResponse,
    HeartbeatRequest,
    ReportRequest,
    ReportResponse,
    ResetRequest,
    ResetResponse,
    routes,
)

CHUNK = 1 << 20

DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher", Dispatcher)


def dispatcher(request: web.Request) -> Dispatcher:
    return request.app[DISPATCHER]


async def claim(request: web.Request) -> web.Response:
    who = agent_principal(request)
    body = await read_body(request, ClaimRequest)
    rt = runtime(request)

    def gone() -> bool:  # the agent hung up (it died, or gave up waiting)
        return request.transport is None or request.transport.is_closing()

    buckets = await dispatcher(request).claim(who.id, body.lanes, body.wait, body.slots, gone,
                                              body.docker)
    if buckets and gone():  # leased to nobody: back in the queue at once, no attempt spent
        await dispatcher(request).unsent(who.id, [b.id for b in buckets])
        return error_response(499, "gone", "the agent hung up before its claim was answered")
    return json_response(ClaimResponse(buckets=buckets,
                                       heartbeat_interval=rt.config.heartbeat_interval))


async def heartbeat(request: web.Request) -> web.Response:
    who = agent_principal(request)
    body = await read_body(request, HeartbeatRequest)
    return json_response(await dispatcher(request).heartbeat(
        who.id, body.buckets, body.progress, body.logs, body.task_progress))


async def report(request: web.Request) -> web.Response:
    who = agent_principal(request)
    body = await read_body(request, ReportRequest, nul=True)
    rt = runtime(request)
    results = await rt.db.run(reports.apply, who.id, body.items, utcnow())
    rt.work.notify()  # failures and hand-backs may have queued tasks again
    return json_response(ReportResponse(results=results))


async def reset(request: web.Request) -> web.Response:
    who = agent_principal(request)
    body = await read_body(request, ResetRequest)
    released = await dispatcher(request).reset(who.id, body.reason, body.keep)
    return json_response(ResetResponse(released=released))


def _log_refused(task_id: str, task: Any, bucket: Any, bucket_id: str, client_id: str,
                 now: datetime, grace: timedelta) -> str:
    """Why this agent may not upload the log of this run, or ''. One answer for a task or
    bucket that does not exist and one of another agent's: nothing to probe."""
    if task is None or bucket is None or bucket.client_id != client_id \
            or bucket.job_id != task.job_id:
        return "no run of this task in a bucket leased to this agent"
    ran_here = task_id in bucket.task_ids if bucket.task_ids is not None \
        else task.bucket_id == bucket_id  # a bucket leased before buckets kept their tasks
    if not ran_here:
        return "the task did not run in this bucket"
    # the hub's own clock: a lease runs to ``leased_until`` unless renewed, and a bucket
    # that ended did so before that (the end time in its report is the agent's word)
    if bucket.status != "leased" and bucket.leased_until < now - grace:
        return f"the bucket ended more than {grace.total_seconds():g} s ago"
    return ""


def log_file(data_dir: Path, job_id: str, task_id: str, bucket_id: str) -> Path:
    """One log per run: a task run again (after a failure) keeps each run's log."""
    return data_dir / "logs" / job_id / f"{task_id}.{bucket_id}.log"


async def upload_log(request: web.Request) -> web.Response:
    """The whole log of one run of a task, streamed; kept up to ``max_log_size`` bytes.
    Taken only from the agent the run's bucket was leased to, for a task that ran in
    that bucket, while the lease lasts or ``log_grace`` seconds after its
    lease ran out: no agent writes the log of a run it did not make, nor one long ended."""
    who = agent_principal(request)
    rt = runtime(request)
    task_id = request.match_info["task"]
    bucket_id = request.query.get("bucket", "")
    async with rt.db.read() as conn:
        task = (await conn.execute(select(Task.job_id, Task.bucket_id)
                                   .where(Task.id == task_id))).first()
        bucket = (await conn.execute(select(Bucket.job_id, Bucket.client_id, Bucket.status,
                                            Bucket.leased_until, Bucket.task_ids)
                                     .where(Bucket.id == bucket_id))).first()
    why = _log_refused(task_id, task, bucket, bucket_id, who.id, utcnow(),
                       timedelta(seconds=rt.config.log_grace))
    if why:
        refusals.refused("log", f"client {who.id}", why, task=task_id, bucket=bucket_id)
        raise ApiError(409, "lease_lost", f"{why}; the log is not taken")
    assert task is not None
    job_id = task.job_id
    folder = rt.data_dir / "logs" / job_id
    final = log_file(rt.data_dir, job_id, task_id, bucket_id)
    limit = rt.config.max_log_size
    written = 0

    def open_partial() -> tuple[BinaryIO, Path]:
        """A file of this request's own: the same log may be uploaded twice at once (an
        agent that gave up waiting sends it again while the first upload still runs)."""
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{task_id}.{bucket_id}.",
                                    suffix=".part")
        return os.fdopen(fd, "wb"), Path(name)

    out, partial = await asyncio.to_thread(open_partial)
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            room = limit - written
            if room > 0:
                await asyncio.to_thread(out.write, chunk[:room])
            written += len(chunk)
        if written > limit:
            out.write(f"\n[ferry: log cut at {limit} of {written} bytes]\n".encode())
    except BaseException:
        out.close()
        partial.unlink(missing_ok=True)
        raise
    await asyncio.to_thread(out.close)
    await asyncio.to_thread(os.replace, partial, final)
    return json_response({"task_id": task_id, "bytes": written, "kept": min(written, limit)})


ROUTES = [
    Route.serving(routes.CLAIM, claim, "Ask for buckets of work for free lanes (long-poll)"),
    Route.serving(routes.HEARTBEAT, heartbeat, "Renew leases; learn of aborts and pauses"),
    Route.serving(routes.REPORT, report, "Report task and bucket events (idempotent)"),
    Route.serving(routes.RESET, reset, "Hand back every lease (after a restart, or a drain)"),
    Route.serving(routes.UPLOAD_LOG, upload_log, "Upload the whole log of one run of a task "
                  "(?bucket=<bucket id>)"),
]
