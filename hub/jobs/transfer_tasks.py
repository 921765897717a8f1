"""The tasks of transfer jobs beyond the first: files a user adds (jobs.rst's duplicate
rule). A folder is one task, whose files its agent moves (``agent/folder.py``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from hub.errors import Conflict, Invalid
from hub.jobs import status as st
from hub.jobs.transfer_paths import has_path, landing, may_move, share_party
from hub.jobs.writes import next_seq
from hub.runtime import Ctx
from hub.storage.models import Job, Share, Task
from protocol.paths import PathRefused, join, share_parts

T = st.TaskStatus


async def insert_transfer_tasks(conn: Any, job_id: str, pairs: list[tuple[str, str]],
                                first_seq: int, now: Any, priority: int, *, pending: bool
                                ) -> list[str]:
    """Tasks moving ``(item, landing)`` pairs, numbered from ``first_seq`` in their job:
    queued, or ``pending`` while the job has no destination path; their ids."""
    rows = [st.new_task(job_id, first_seq + n, item, now, priority, destination=lands,
                        status=T.PENDING if pending else T.QUEUED)
            for n, (item, lands) in enumerate(pairs)]
    if rows:
        await conn.execute(insert(Task), rows)
    return [row["id"] for row in rows]


async def add_tasks(conn: Any, ctx: Ctx, job: Any, tasks: list[Any], allow: bool
                    ) -> dict[str, Any]:
    """Add files to a transfer job: each mirrors the job's paths or names its own
    destination on the job's destination share. A task with the same source and
    destination is not added: it runs again (or, with ``allow_duplicates: false``, the
    call is refused)."""
    # PostgreSQL: two calls adding to one job at once must neither number alike nor both
    # add the same file; the job's row orders them (SQLite has one writer anyway). Not FOR
    # UPDATE: that would wait in a circle with a claim holding the row's key-share lock
    await conn.execute(select(Job.id).where(Job.id == job.id)
                       .with_for_update(key_share=True))
    transfer = job.spec["transfer"]
    await may_move(conn, ctx, transfer)
    pending = not has_path(job.spec)
    source = (await conn.execute(select(Share.name, Share.path).where(
        Share.id == transfer["source_share"]))).first()
    dest_name = None if pending else (await conn.execute(select(Share.name).where(
        Share.id == transfer["destination_share"]))).scalar()
    pairs: list[tuple[str, str]] = []
    for n, entry in enumerate(tasks):
        field = f"tasks[{n}]"
        task, explicit = entry, None
        if isinstance(entry, dict):
            if set(entry) - {"source", "destination"} or "source" not in entry:
                raise Invalid("invalid_body", f"{field}: a transfer task is a source path "
                              "or {\"source\": ..., \"destination\": ...}", field=field)
            task, explicit = entry["source"], entry.get("destination")
        item = _source_item(task, source, field)
        if explicit is None:
            lands = "" if pending else landing(transfer, item)
        else:
            if pending:
                raise Conflict("not_pending", f"{field}: the job has no destination "
                               "share yet; add it without a destination (mirrored)", field=field)
            name, parts, into_folder = share_party(explicit, f"{field}.destination")
            if name != dest_name:
                raise Invalid("invalid_path", f"{field}.destination: the job's files "
                              f"land on share '{dest_name}'", field=field)
            lands = join(parts + (share_parts(item)[-1:] if into_folder else ()))
        pairs.append((item, lands))
    if len(set(pairs)) != len(pairs):
        raise Invalid("invalid_body", "the same source and destination are listed twice", field="tasks")
    rows = (await conn.execute(select(Task.id, Task.item, Task.destination).where(
        Task.job_id == job.id, Task.item.in_([p[0] for p in pairs])))).all()
    existing = {(r.item, r.destination): r.id for r in rows}
    dupes = [p for p in pairs if p in existing]
    if dupes and not allow:
        raise Conflict("duplicate", f"'{dupes[0][0]}' to '{dupes[0][1]}' is already a "
                       f"task of this job ({len(dupes)} duplicates; nothing added)", field="tasks")
    retried = [existing[p] for p in dupes]
    if retried:  # jobs.rst: a duplicate is not added; the existing task runs again
        await conn.execute(update(Task).where(
            Task.id.in_(retried), Task.status.in_((*st.ENDED_TASK, T.ONHOLD))).values(
            **st.FRESH_RUN, status=T.PENDING if pending else T.QUEUED, attempts=0,
            message="", modified=ctx.now))
    created = await insert_transfer_tasks(
        conn, job.id, [p for p in pairs if p not in existing], await next_seq(conn, job.id),
        ctx.now, job.priority, pending=pending)
    return {"created": created, "retried": retried}


def _source_item(task: Any, source: Any, field: str) -> str:
    """A source on the job's source share: ``share=<share>/<path>``, or an absolute path
    below the share's root folder on its agent (jobs.rst's ``/Volumes/projects/...``)."""
    if not isinstance(task, str) or not task:
        raise Invalid("invalid_body", f"{field}: a source is a non-empty string", field=field)
    if task.startswith("share="):
        name, parts, _ = share_party(task, field)
        if name != source.name:
            raise Invalid("invalid_path", f"{field}: the job's files come from share "
                          f"'{source.name}'", field=field)
        return join(parts)
    root = source.path.rstrip("/\\")
    normal = task.replace("\\", "/")
    if root and normal.startswith(root.replace("\\", "/") + "/"):
        try:
            return join(share_parts(normal[len(root) + 1:]))
        except PathRefused as exc:
            raise Invalid("invalid_path", f"{field}: {exc}", field=field) from None
    raise Invalid("invalid_path", f"{field}: '{task}' is neither a path of share "
                  f"'{source.name}' (share={source.name}/...) nor below its folder "
                  f"'{source.path}'", field=field)
