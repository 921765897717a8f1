"""Live changes for the dashboard: ``GET /dashboard/events?watch=…``, server-sent events.

The page watches up to ``WATCH_MAX`` topics: ``farm`` (the agents it may view),
``jobs`` (its active jobs and their tasks), ``job:<id>`` (one job, its tasks and buckets)
and ``task:<id>`` (one task and its log). Every ``TICK`` seconds the stream checks the
caller's token anew (a token expired, revoked by a password change, or a user deleted
ends the stream with an ``error`` event), works out a digest of each topic *within the
caller's reach* (the same ``Access`` conditions as every read), and sends
``event: change`` with ``{"topic": …}`` for each digest that moved. It never sends
records: the page reads them again through the entity API, with the same token. So a
stream tells a caller nothing it could not learn by reading again.

The token travels in the ``Authorization`` header (the page reads the stream with
``fetch``, not ``EventSource``, which cannot send one), never in the URL. A stream ends
after ``LIFETIME`` seconds and the page opens another; each user holds at most
``STREAMS_PER_USER`` at once (429 past that).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy import and_, case, func, not_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import ApiError
from hub.access import JOBS, TASKS
from hub.api.common import Route, context
from hub.api.errors import as_api_error
from hub.api.work import log_file
from hub.entities import entity
from hub.entities.jobs import JobEntity
from hub.errors import Refusal
from hub.jobs.limits import in_use
from hub.runtime import Ctx
from hub.storage.models import Bucket, Client, Job, Limit, Task

log = structlog.get_logger("hub.events")

WATCH_MAX = 8
TICK = 2.0  # seconds between looks at the watched topics
GLANCE = 0.25  # seconds between looks at whether the page hung up or the hub stops
PING = 15.0  # seconds between keep-alive comments (proxies close quiet connections)
LIFETIME = 600.0  # seconds a stream lasts; the page then opens another
STREAMS_PER_USER = 4
TOPICS = ("farm", "jobs")
PREFIXED = ("job:", "task:")
_ID_CHARS = frozenset("0123456789abcdefABCDEF-")


def topics_of(request: web.Request) -> list[str]:
    """The watched topics, checked: 400 naming the bad one."""
    watched = list(dict.fromkeys(request.query.getall("watch", [])))
    if not watched:
        raise ApiError(400, "missing_parameter", "parameter 'watch' is required: farm, jobs, "
                       "job:<id> or task:<id> (repeat it to watch several)", {"field": "watch"})
    if len(watched) > WATCH_MAX:
        raise ApiError(422, "too_large", f"at most {WATCH_MAX} topics a stream",
                       {"field": "watch"})
    for topic in watched:
        kind, _, ident = topic.partition(":")
        if topic in TOPICS:
            continue
        if f"{kind}:" in PREFIXED and 0 < len(ident) <= 64 and set(ident) <= _ID_CHARS:
            continue
        raise ApiError(400, "invalid_parameter", f"cannot watch '{topic[:80]}' (topics: farm, "
                       "jobs, job:<id>, task:<id>)", {"field": "watch"})
    return watched


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()


def _where(stmt: Any, condition: Any) -> Any:
    return stmt if condition is None else stmt.where(condition)


async def digest(ctx: Ctx, topic: str) -> str:
    """A digest of what the caller sees of ``topic``; ``Refusal`` when it may see none of
    it (a job out of reach, a rule it lacks)."""
    kind, _, ident = topic.partition(":")
    async with ctx.db.read() as conn:
        if kind == "farm":
            cutoff = ctx.now - ctx.rt.offline_grace
            fresh = and_(not_(Client.gone), Client.last_checkin >= cutoff)
            stmt = select(func.count(), func.max(Client.last_checkin), func.max(Client.modified),
                          func.sum(case((Client.disabled, 1), else_=0)),
                          func.sum(case((fresh, 1), else_=0)))
            row = (await conn.execute(_where(stmt, entity("client").visible(ctx)))).one()
            return _hash(*row)
        if kind == "jobs":
            lifecycle = JobEntity.lifecycle(ctx, False, False)
            visible = JOBS.visible(ctx)
            jobs = _where(select(func.count(), func.max(Job.modified), func.max(Job.finished))
                          .where(lifecycle), visible)
            open_jobs = _where(select(Job.id).where(Job.finished.is_(None)), visible)
            counts = (select(Task.status, func.count()).where(Task.job_id.in_(open_jobs))
                      .group_by(Task.status).order_by(Task.status))
            return _hash(*(await conn.execute(jobs)).one(),
                         [tuple(r) for r in await conn.execute(counts)],
                         await _limits(conn, ctx))
        if kind == "job":
            await JOBS.check(conn, ctx, "view", ident)
            job = (await conn.execute(select(Job.status, Job.modified, Job.finished)
                                      .where(Job.id == ident))).one()
            counts = (select(Task.status, func.count()).where(Task.job_id == ident)
                      .group_by(Task.status).order_by(Task.status))
            buckets = select(func.count(), func.count(Bucket.ended)).where(Bucket.job_id == ident)
            return _hash(*job, [tuple(r) for r in await conn.execute(counts)],
                         *(await conn.execute(buckets)).one())
        await TASKS.check(conn, ctx, "view", ident)
        task = (await conn.execute(select(Task.job_id, Task.bucket_id, Task.status, Task.attempts,
                                          Task.has_log, func.length(Task.log_tail),
                                          Task.finished).where(Task.id == ident))).one()
    mtime = None
    if task.bucket_id:  # the uploaded log of the current run
        mtime = await asyncio.to_thread(_mtime, log_file(ctx.rt.data_dir, task.job_id, ident,
                                                       task.bucket_id))
    return _hash(*task, mtime)


async def _limits(conn: AsyncConnection, ctx: Ctx) -> list[tuple[Any, ...]]:
    """The limits the caller may view, each with its max and its use now: the jobs page
    shows them, and a bucket of a job that has finished still holds its slot until it
    ends, which no job's figures tell."""
    if ctx.caller.widest("limit", "view") is None:
        return []  # a role without the rule: the page shows no limits
    limits = entity("limit").visible(ctx)
    rows = (await conn.execute(_where(select(Limit.id, Limit.name, Limit.max)
                                      .order_by(Limit.id), limits))).all()
    used = await conn.run_sync(in_use, [r.id for r in rows])
    return [(*r, used[r.id]) for r in rows]


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


_STREAMS: weakref.WeakKeyDictionary[web.Application, Counter[str]] = \
    weakref.WeakKeyDictionary()


@asynccontextmanager
async def _place(request: web.Request, who: str) -> AsyncIterator[None]:
    streams = _STREAMS.setdefault(request.app, Counter())
    if streams[who] >= STREAMS_PER_USER:
        raise ApiError(429, "too_many_streams", f"{streams[who]} event streams of yours are "
                       f"open, the most one user holds ({STREAMS_PER_USER}); close one",
                       {"retry_after": 5})
    streams[who] += 1
    try:
        yield
    finally:
        streams[who] -= 1
        if not streams[who]:
            del streams[who]


CLOSING: web.AppKey[asyncio.Event] = web.AppKey("events_closing", asyncio.Event)


def install(app: web.Application) -> None:
    """Streams end when the hub stops (its ``on_shutdown``), rather than hold its
    shutdown until ``shutdown_timeout``."""
    app[CLOSING] = closing = asyncio.Event()

    async def close(_app: web.Application) -> None:
        closing.set()

    app.on_shutdown.append(close)


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    topics = topics_of(request)
    ctx = await context(request)  # 401 before the stream starts, as any call
    if ctx.principal.kind != "user":
        raise ApiError(403, "forbidden", "event streams are for users (use a user's token)")
    # each topic within reach, or the refusal (404, or 403 naming the rule) as any read
    seen = {topic: await digest(ctx, topic) for topic in topics}
    async with _place(request, ctx.principal.id):
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store", "X-Accel-Buffering": "no",
            "X-Content-Type-Options": "nosniff"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the page went away
            await _stream(request, response, topics, seen)
        return response


async def _stream(request: web.Request, response: web.StreamResponse, topics: list[str],
                  seen: dict[str, str]) -> None:
    loop = asyncio.get_running_loop()
    started = last_write = loop.time()
    closing = request.app[CLOSING]
    await response.write(_event("hello", {"topics": topics, "tick": TICK}))
    while loop.time() - started < LIFETIME:
        tick_ends = loop.time() + TICK
        while loop.time() < tick_ends:  # a look at the hub and the page every GLANCE
            if closing.is_set():
                await response.write(_event("bye", {"reason": "the hub is stopping"}))
                return
            if request.transport is None or request.transport.is_closing():
                return  # the page went away (or moved on): its place is free at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), GLANCE)
        try:
            ctx = await context(request)
            changed = []
            for topic in topics:
                now = await digest(ctx, topic)
                if now != seen[topic]:
                    seen[topic] = now
                    changed.append(topic)
        except (ApiError, Refusal) as exc:
            error = exc if isinstance(exc, ApiError) else as_api_error(exc)
            await response.write(_event("error", {"status": error.status, "code": error.code,
                                                  "message": error.message}))
            return
        for topic in changed:
            await response.write(_event("change", {"topic": topic}))
            last_write = loop.time()
        if loop.time() - last_write >= PING:
            await response.write(b": ping\n\n")
            last_write = loop.time()
    await response.write(_event("bye", {"reason": f"streams last {LIFETIME:g} s; open another"}))


ROUTES = [
    Route("GET", "/dashboard/events", events, "Server-sent events: which watched topics "
          "changed (?watch=farm|jobs|job:<id>|task:<id>, repeated); records are read again "
          "through the API", response="text", errors=(400, 401, 403, 404, 422, 429)),
]
