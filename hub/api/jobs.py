"""Task groups of a job, and task logs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from core.errors import ApiError
from hub.api.common import Route, context, json_response, read_json
from hub.api.work import log_file
from hub.entities.tasks import TaskEntity
from hub.storage.models import Task

TASKS = TaskEntity()


async def add_tasks(request: web.Request) -> web.Response:
    ctx = await context(request)
    return json_response(await TASKS.add(ctx, request.match_info["id"], await read_json(request)),
                         201)


async def update_tasks(request: web.Request) -> web.Response:
    ctx = await context(request)
    return json_response(await TASKS.update_many(ctx, request.match_info["id"],
                                                 await read_json(request)))


async def task_log(request: web.Request) -> web.StreamResponse:
    ctx = await context(request)
    task_id = request.match_info["id"]
    async with ctx.db.read() as conn:
        await TASKS.check(conn, ctx, "view", task_id)
        row = (await conn.execute(select(Task.job_id, Task.bucket_id, Task.log_tail)
                                  .where(Task.id == task_id))).first()
    if row is None:
        raise ApiError(404, "not_found", f"no Task with id '{task_id}'")
    path = await asyncio.to_thread(_latest_log, ctx.rt.data_dir, row.job_id, task_id,
                                   row.bucket_id)
    if path is not None:
        return web.FileResponse(path, headers={"Content-Type": "text/plain; charset=utf-8"})
    # no log file: the tail is the whole log (a short one is never uploaded), or the
    # upload has not come yet
    return web.Response(text=row.log_tail, content_type="text/plain", charset="utf-8")


def _latest_log(data_dir: Path, job_id: str, task_id: str, bucket_id: str | None
                ) -> Path | None:
    """The uploaded log of the task's current (or last) run. A task queued again has
    no run of its own yet: then the newest log of an earlier run, to show why it failed."""
    if bucket_id:
        current = log_file(data_dir, job_id, task_id, bucket_id)
        return current if current.exists() else None  # else its tail tells all, or will
    runs = []
    for path in (data_dir / "logs" / job_id).glob(f"{task_id}.*.log"):
        try:
            runs.append((path.stat().st_mtime, path))
        except OSError:  # deleted meanwhile (the job, by another request)
            continue
    return max(runs)[1] if runs else None


ROUTES = [
    Route("POST", "/job/{id}/tasks", add_tasks, "Add tasks to a job (jobs.rst duplicate rule)",
          body="object", status=201),
    Route("PATCH", "/job/{id}/tasks", update_tasks,
          "Change status, priority or metadata of tasks; returns them", body="object"),
    Route("GET", "/task/{id}/log", task_log, "A task's whole log, as text", response="text"),
]
