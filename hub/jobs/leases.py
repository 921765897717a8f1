"""What a lease takes: the next queued tasks of a job, and for a transfer job its bucket
(one file, or small files of one folder together) and the work the agent gets for it, with
one ticket that covers no more than the bucket's paths."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Connection

from hub.jobs import status as st
from hub.storage.models import Bucket, Client, Job, Share, Task
from protocol import TaskWork, TransferWork, tickets
from protocol.paths import join, share_parts
from protocol.transfer import SMALL_FILE

TICKET_TTL = 6 * 3600.0  # seconds a transfer task's ticket lasts: a long pull must not outlive it

# PostgreSQL: several hub processes claim at once; SKIP LOCKED leaves each its own
# tasks (SQLite has one writer, and renders no FOR UPDATE)
_COLUMNS = (Task.id, Task.uri, Task.item, Task.attempts, Task.destination, Task.size,
            Task.folder)
NEXT_TASKS = (select(*_COLUMNS)
              .where(Task.job_id == bindparam("job"), Task.status == st.TaskStatus.QUEUED)
              .order_by(Task.priority.desc(), Task.seq).limit(bindparam("n"))
              .with_for_update(skip_locked=True))


def transfer_work(conn: Connection, key: Ed25519PrivateKey | None, job_id: str,
                  bucket_id: str, spec: dict[str, Any], rows: list[Any]) -> list[TaskWork]:
    """Transfer tasks with one fresh ticket for the agent the runner calls, scoped to
    the narrowest folder that holds every path of the bucket. A source whose agent is
    gone (or serves nothing now) gets an empty url: the tasks fail on the agent with
    that reason, and are retried like any failure."""
    transfer = spec["transfer"]
    push = transfer.get("direction") == "push"
    shares = {r.id: r for r in conn.execute(
        select(Share.id, Share.path, Share.client_id, Client.transfer_url,
               Client.transfer_fingerprint)
        .outerjoin(Client, Client.id == Share.client_id)
        .where(Share.id.in_([transfer["source_share"], transfer["destination_share"]])))}
    source, dest = shares.get(transfer["source_share"]), shares.get(
        transfer["destination_share"])
    called = dest if push else source  # the agent whose endpoint the runner calls
    ticket = ""
    if called is not None and called.client_id and key is not None:
        paths = [r.destination if push else r.item for r in rows]
        ticket = tickets.issue(key, tickets.TicketScope(
            server=called.client_id, share=called.id, path=_common_folder(paths),
            op="write" if push else "read", job=job_id,
            task=rows[0].id if len(rows) == 1 else bucket_id, tree=True), ttl=TICKET_TTL)
    return [TaskWork(id=row.id, uri=row.uri, item=row.item, attempt=row.attempts + 1,
                     last_attempt=row.attempts + 1 > spec.get("retries", 0),  # as release has it
                     argv=[], transfer=TransferWork(
                         url=(called.transfer_url or "") if called else "",
                         fingerprint=(called.transfer_fingerprint or "") if called else "",
                         share=called.id if called else "", path=row.item, ticket=ticket,
                         dest_share=transfer["destination_share"],
                         dest_path=row.destination, into_folder=False,
                         streams=transfer.get("streams", 4),
                         dest_root=dest.path if dest else "",
                         direction="push" if push else "pull",
                         source_root=source.path if source else "", size=row.size))
            for row in rows]


# a bucket of small files: up to this many, and this many bytes (one slot moves them in
# several batched requests at once)
SMALL_BUCKET_FILES = 256
SMALL_BUCKET_BYTES = 16 << 20
_NEXT_SMALL = (select(*_COLUMNS)
               .where(Task.job_id == bindparam("job"), Task.status == st.TaskStatus.QUEUED,
                      Task.folder == bindparam("folder"), Task.size >= 0,
                      Task.size <= SMALL_FILE)
               .order_by(Task.priority.desc(), Task.seq).limit(SMALL_BUCKET_FILES)
               .with_for_update(skip_locked=True))


def has_destination(spec: dict[str, Any]) -> bool:
    """A transfer job runs only once it knows where its files land."""
    return "transfer" not in spec or spec["transfer"].get("destination_share") is not None


def transfer_rows(conn: Connection, job_id: str) -> list[Any]:
    """The next transfer task alone, or, when it is a small file listed from a folder (its
    size known from that listing), the next small files of that folder together: they
    travel many to a request, under one ticket for that folder and nothing more."""
    first = conn.execute(NEXT_TASKS, {"job": job_id, "n": 1}).first()
    if first is None or not first.folder or not 0 <= first.size <= SMALL_FILE:
        return [first] if first is not None else []
    rows: list[Any] = []
    total = 0
    for row in conn.execute(_NEXT_SMALL, {"job": job_id, "folder": first.folder}):
        if rows and total + row.size > SMALL_BUCKET_BYTES:
            break
        rows.append(row)
        total += row.size
    return rows


def _common_folder(paths: list[str]) -> str:
    """The deepest folder (or the one path) that holds every path."""
    split = [share_parts(p) for p in paths]
    common = split[0]
    for parts in split[1:]:
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return join(common)


def release(conn: Connection, bucket_ids: list[str], bucket_status: str,
                  now: datetime, why: str, *, penalty: bool = True) -> None:
    """End these leases. Their unfinished tasks go back to the queue with one more attempt,
    or fail once the job's retries are used up; a task being killed takes its new status."""
    if not bucket_ids:
        return
    conn.execute(update(Bucket).where(Bucket.id.in_(bucket_ids)).values(
        status=bucket_status, ended=now))
    rows = (conn.execute(select(Task.id, Task.job_id, Task.attempts, Task.abort_to,
                                      Job.spec).join(Job, Job.id == Task.job_id).where(
        Task.bucket_id.in_(bucket_ids),
        or_(Task.status.in_(st.RUNNING_TASK), Task.abort_to.is_not(None))))).all()
    for row in rows:
        if row.abort_to is not None:
            values: dict[str, Any] = {"status": row.abort_to, "abort_to": None}
            if row.abort_to in st.RUN_AGAIN:
                values.update(st.FRESH_RUN)
        elif not penalty:
            values = {**st.FRESH_RUN, "status": st.TaskStatus.QUEUED, "message": why}
        elif row.attempts + 1 > row.spec.get("retries", 0):
            values = {"status": st.TaskStatus.FAILED, "attempts": row.attempts + 1,
                      "message": f"{why} (attempt {row.attempts + 1}; no retries left)",
                      "finished": now}
        else:
            values = {**st.FRESH_RUN, "status": st.TaskStatus.QUEUED,
                      "attempts": row.attempts + 1, "message": f"{why}; queued again"}
        values["modified"] = now
        conn.execute(update(Task).where(Task.id == row.id).values(**values))
    st.refresh(conn, {r.job_id for r in rows}, now)
