"""What the web dashboard reads beyond the entity API, under the same rules.

* ``GET /dashboard/me``: the caller and the widest scope of each rule it holds, so that
  the page offers only the buttons the hub would honour (the hub still decides each
  click).
* ``GET /dashboard/history?client=<id>&…``: the last hour of metrics of agents the caller
  may view (``hub/dashboard/history.py``); others are left out, as a list leaves out
  records out of reach.
* ``GET /job/<id>/buckets``: a page of a job's buckets (which lane ran which items
  when, and the bytes it moved), for a caller who may view the job and its tasks.

Live changes are ``hub/api/events.py``.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select

from core.errors import ApiError
from hub.access import JOBS
from hub.api.common import Route, context, json_response
from hub.dashboard.history import HISTORY
from hub.entities import entity
from hub.permissions import RESOURCES, operations
from hub.runtime import Ctx
from hub.storage.models import Bucket, Client, Task, iso

MAX_CLIENTS = 200  # agents whose history one request asks for: a page of the farm
BUCKET_PAGE = 200
BUCKET_PAGE_MAX = 1000
ITEMS_SHOWN = 8  # items named per bucket; the rest are counted


def integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"parameter '{name}' must be an integer",
                       {"field": name}) from None
    if not low <= value <= high:
        raise ApiError(422, "invalid_value", f"parameter '{name}' must be from {low} to "
                       f"{high}", {"field": name})
    return value


async def me(request: web.Request) -> web.Response:
    ctx = await context(request)
    if ctx.principal.kind != "user":
        raise ApiError(403, "forbidden", "the dashboard is for users (use a user's token)")
    caller = ctx.caller
    widest = {resource: {op: scope for op in operations(resource)
                         if (scope := caller.widest(resource, op)) is not None}
              for resource in RESOURCES}
    return json_response({"id": caller.id, "organization": caller.organization,
                          "collaborations": sorted(caller.collaborations),
                          "rules": {r: ops for r, ops in widest.items() if ops}})


async def history(request: web.Request) -> web.Response:
    ctx = await context(request)
    wanted = list(dict.fromkeys(request.query.getall("client", [])))
    if len(wanted) > MAX_CLIENTS:
        raise ApiError(422, "too_large", f"at most {MAX_CLIENTS} clients a request (got "
                       f"{len(wanted)})", {"field": "client"})
    visible = await _visible_clients(ctx, wanted)
    samples = request.app[HISTORY].of(c for c in wanted if c in visible)
    return json_response({"window": 3600, "result": samples})


async def _visible_clients(ctx: Ctx, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    clients = entity("client")
    stmt = select(Client.id).where(Client.id.in_(ids))
    where = clients.visible(ctx)  # Forbidden naming the rule when it may view none
    if where is not None:
        stmt = stmt.where(where)
    async with ctx.db.read() as conn:
        return {row[0] for row in await conn.execute(stmt)}


async def job_buckets(request: web.Request) -> web.Response:
    """Oldest first; ``limit`` (1 to 1,000, default 200) and ``skip``."""
    ctx = await context(request)
    job_id = request.match_info["id"]
    limit = integer(request, "limit", BUCKET_PAGE, 1, BUCKET_PAGE_MAX)
    skip = integer(request, "skip", 0, 0, 1_000_000_000)
    async with ctx.db.read() as conn:
        await JOBS.check(conn, ctx, "view", job_id)
        await JOBS.check(conn, ctx, "view", job_id, resource="task")  # which items ran where
        total = (await conn.execute(select(func.count()).select_from(Bucket)
                                    .where(Bucket.job_id == job_id))).scalar_one()
        rows = (await conn.execute(
            select(Bucket.id, Bucket.client_id, Bucket.lane_id, Bucket.status, Bucket.created,
                   Bucket.started, Bucket.ended, Bucket.time, Bucket.task_ids)
            .where(Bucket.job_id == job_id)
            .order_by(Bucket.created, Bucket.id).offset(skip).limit(limit))).all()
        ids = [r.id for r in rows]
        items: dict[str, list[str]] = {}
        moved: dict[str, int] = {}
        if ids:  # the tasks whose (last) run was in one of these buckets
            for bucket_id, transferred in await conn.execute(
                    select(Task.bucket_id, func.sum(Task.transferred))
                    .where(Task.bucket_id.in_(ids), Task.job_id == job_id)
                    .group_by(Task.bucket_id)):
                moved[str(bucket_id)] = int(transferred or 0)
            ranked = (select(Task.bucket_id, Task.item, func.row_number().over(
                partition_by=Task.bucket_id, order_by=Task.seq).label("n"))
                .where(Task.bucket_id.in_(ids), Task.job_id == job_id).subquery())
            for bucket_id, item in await conn.execute(
                    select(ranked.c.bucket_id, ranked.c.item).where(ranked.c.n <= ITEMS_SHOWN)
                    .order_by(ranked.c.bucket_id, ranked.c.n)):
                items.setdefault(bucket_id, []).append(item)
    lanes = await _lane_codes(ctx, {r.lane_id or r.client_id for r in rows})
    result = [{
        "id": r.id, "client": r.client_id, "lane": r.lane_id,
        "lane_hr": lanes.get(r.lane_id or r.client_id), "status": r.status,
        "created": iso(r.created), "started": iso(r.started or r.created),
        "ended": iso(r.ended), "time": r.time, "tasks": len(r.task_ids or []),
        "items": items.get(r.id, []), "transferred": moved.get(r.id, 0),
    } for r in rows]
    return json_response({"result": result, "total": total, "skip": skip, "now": iso(ctx.now)})


async def _lane_codes(ctx: Ctx, ids: set[str]) -> dict[str, str]:
    """The codes of the lanes (and agents) the caller may view; others stay ids."""
    if not ids:
        return {}
    clients = entity("client")
    widest = ctx.caller.widest("client", "view")
    if widest is None:
        return {}
    stmt = select(Client.id, Client.code).where(Client.id.in_(sorted(ids)))
    where = clients.visible(ctx)
    if where is not None:
        stmt = stmt.where(where)
    async with ctx.db.read() as conn:
        return {row.id: row.code for row in await conn.execute(stmt)}


ROUTES = [
    Route("GET", "/dashboard/me", me, "The caller and the widest scope of each rule it holds"),
    Route("GET", "/dashboard/history", history, "The last hour of metrics of agents "
          "(?client=<id>, repeated; those out of reach are left out)"),
    Route("GET", "/job/{id}/buckets", job_buckets, "A page of a job's buckets: lane, items, "
          "times, bytes (?limit=&skip=)"),
]
