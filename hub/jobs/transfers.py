"""Transfer jobs (jobs.rst): parties, destination paths, where each file lands, resend.

A transfer job sends files from a share path to a party::

    {"source": "share=projects/thefilm/latest_edit.mov",
     "destination": "lars@edit.com",   # a user, a site ("hq") or a share path
     "status": "paused"}

A share path as destination says where the files land, and the job can run
at once. A user or a site says only who receives them: the job is
``pending`` until a destination path is set (``destination_path``, a share
served by one of that user's agents or by an agent at that site). Writing
``pending`` resends the job: every task runs again, to a destination path
set anew.

Each task stores where it lands (``Task.destination``). By default a task
*mirrors* its source: its path below the job's source folder is kept below
the job's destination folder. A task may instead name its own destination
on the job's destination share.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import func, insert, or_, select, update

from hub.access import SHARES
from hub.bodies import expect, invalid
from hub.errors import Conflict, Invalid
from hub.jobs import status as st
from hub.runtime import Ctx
from hub.storage.models import Client, Job, Share, Site, Task, User, new_id
from protocol.paths import PathRefused, join, share_parts, split_share_path

S, T = st.JobStatus, st.TaskStatus


class TransferCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A transfer job (jobs.rst): ``source`` a share path, ``destination`` a party."""

    source: Annotated[str, msgspec.Meta(min_length=1, max_length=4200)]
    destination: Annotated[str, msgspec.Meta(min_length=1, max_length=4200)]
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    priority: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    status: Literal["waiting", "paused"] = "waiting"
    queue: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "default"
    metadata: dict[str, Any] = {}
    retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 2
    streams: Annotated[int, msgspec.Meta(ge=1, le=32)] = 4
    # pull: the destination's agent fetches (default); push: the source's agent sends, for
    # a source behind NAT that nobody can reach
    direction: Literal["pull", "push"] = "pull"


def share_party(text: str, field: str) -> tuple[str, tuple[str, ...], bool]:
    """``share=<name>/<path>`` as (share name, path parts, names a folder: ends in '/' or is
    the share's root)."""
    if not isinstance(text, str) or not text.startswith("share="):
        raise Invalid("invalid_path", f"{field}: write a share path, "
                      "share=<share>/<path>", field=field)
    try:
        name, parts = split_share_path(text)
    except PathRefused as exc:
        raise Invalid("invalid_path", f"{field}: {exc}", field=field) from None
    return name, parts, text.endswith("/") or not parts


async def find_party(conn: Any, text: str, field: str) -> tuple[str, str]:
    """A receiving user or site as (scope, id): ``lars@edit.com``, ``hq``, ``user:lars``,
    ``site:stockholm``. A bare name is a site if one has it, else a user."""
    scope, sep, value = text.partition(":")
    if not sep or scope not in ("user", "site"):
        scope, value = "", text
    value = value.strip()
    if not value:
        raise Invalid("unknown_party", f"{field}: names no user or site", field=field)
    if scope in ("", "site"):
        site = (await conn.execute(select(Site.id).where(
            or_(Site.id == value, Site.name == value)))).scalar()
        if site is not None:
            return "site", site
    if scope in ("", "user"):
        user = (await conn.execute(select(User.id).where(or_(
            User.id == value, User.username == value,
            func.lower(User.email) == value.lower())))).scalar()
        if user is not None:
            return "user", user
    what = {"": "no site or user", "site": "no site", "user": "no user"}[scope]
    raise Invalid("unknown_party", f"{field}: {what} named '{value}' (a destination is a "
                  "user, a site or a share path share=<share>/<path>)", field=field)


def landing(transfer: dict[str, Any], item: str) -> str:
    """Where ``item`` lands when it mirrors the job's paths. The job's own source lands
    inside the destination folder (``into_folder``) or at the destination path itself;
    what is below the source's folder keeps its place below the destination's; anything
    else lands by its name beside the job's own source."""
    src, dst = share_parts(transfer["source_path"]), share_parts(transfer["destination_path"])
    parts = share_parts(item)
    into = transfer["into_folder"]
    origin, target = (src[:-1], dst) if into else (src, dst)
    if parts[:len(origin)] == origin:
        return join(target + parts[len(origin):])
    if not into and src and parts[:len(src) - 1] == src[:-1]:
        return join(dst[:-1] + parts[len(src) - 1:])
    return join((dst if into else dst[:-1]) + parts[-1:])


async def share_rows(conn: Any, names: list[str]) -> dict[str, Any]:
    return {r.name: r for r in (await conn.execute(
        select(Share.id, Share.name, Share.path, Share.client_id, Client.transfer_url,
               Client.user_id, Client.site_id)
        .outerjoin(Client, Client.id == Share.client_id)
        .where(Share.name.in_(names)))).all()}


def served(shares: dict[str, Any], name: str, field: str) -> Any:
    if name not in shares:
        raise Invalid("unknown_share", f"{field}: no share named '{name}'", field=field)
    if shares[name].client_id is None:
        raise Invalid("unknown_share", f"{field}: share '{name}' has no agent to serve "
                      "it", field=field)
    return shares[name]


def runner(source: Any, dest: Any, direction: str) -> str:
    """The agent that runs the job's tasks (the destination's when pulling, the source's
    when pushing). Both must run a transfer endpoint: one is called, the other moves."""
    for side, field in ((source, "source"), (dest, "destination")):
        if not side.transfer_url:  # it can neither serve a peer nor run transfers itself
            raise Invalid("not_served", f"{field}: the agent of share '{side.name}' runs "
                          "no transfer endpoint", field=field)
    return str((dest if direction == "pull" else source).client_id)


async def may_use(conn: Any, ctx: Ctx, shares: dict[str, Any], name: str, field: str,
                  operation: str) -> Any:
    """The share called ``name``, served by an agent, once the caller may ``read`` its
    files (to move them out) or ``write`` them (to move files in): 403 naming the rule
    otherwise. Seeing the share's record is neither. A share the caller cannot even see
    answers as one that does not exist: a job cannot probe other organizations' shares."""
    visible = SHARES.allowed(ctx, "view")  # 403 naming the rule: it may see no share at all
    share = shares.get(name)
    if share is not None and visible is not None and (await conn.execute(
            select(Share.id).where(Share.id == share.id, visible))).first() is None:
        share = None
    if share is None:
        raise Invalid("unknown_share", f"{field}: no share named '{name}'", field=field)
    await SHARES.check(conn, ctx, operation, share.id)
    return served(shares, name, field)


async def may_move(conn: Any, ctx: Ctx, transfer: dict[str, Any]) -> None:
    """A caller who adds files to a transfer job moves them on its own account: it must
    read the job's source share and write its destination share (403 naming the rule)."""
    await SHARES.check(conn, ctx, "read", transfer["source_share"])
    if transfer.get("destination_share") is not None:
        await SHARES.check(conn, ctx, "write", transfer["destination_share"])


async def create(ctx: Ctx, body: Any) -> str:
    """Store a transfer job and its first task; the job's id."""
    try:
        spec = msgspec.convert(body, TransferCreate)
    except msgspec.ValidationError as exc:
        raise invalid(exc, "invalid_spec") from None
    source_name, source_parts, _ = share_party(spec.source, "source")
    to_share = spec.destination.startswith("share=")
    if to_share:
        dest_name, dest_parts, into_folder = share_party(spec.destination, "destination")
    job_id, now = new_id(), ctx.now
    async with ctx.db.write() as conn:
        shares = await share_rows(conn, [source_name] + ([dest_name] if to_share else []))
        source = await may_use(conn, ctx, shares, source_name, "source", "read")
        item = join(source_parts)
        transfer: dict[str, Any] = {
            "source_share": source.id, "source_path": item, "streams": spec.streams,
            "direction": spec.direction, "destination_share": None, "destination_path": None,
            "destination": None, "into_folder": True, "hold": spec.status == "paused"}
        stored: dict[str, Any] = {"transfer": transfer, "targets": [], "bucket_size": 1,
                                  "retries": spec.retries}
        if to_share:
            dest = await may_use(conn, ctx, shares, dest_name, "destination", "write")
            stored["targets"] = [{"client": runner(source, dest, spec.direction)}]
            transfer.update(destination_share=dest.id, destination_path=join(dest_parts),
                            destination=spec.destination, into_folder=into_folder)
            party, status, lands = ("share", dest.id), str(spec.status), landing(transfer, item)
        else:
            party, status, lands = await find_party(conn, spec.destination, "destination"), \
                str(S.PENDING), ""
        await conn.execute(insert(Job).values(
            id=job_id, code=spec.code or (source_parts[-1] if source_parts else source_name),
            kind="transfer", queue=spec.queue, status=status, priority=spec.priority,
            user_id=ctx.principal.id, organization_id=ctx.caller.organization,
            source_scope="share", source_id=source.id,
            destination_scope=party[0], destination_id=party[1], spec=stored,
            meta=spec.metadata, size=-1, created=now, modified=now, modifier=ctx.principal.id))
        await insert_transfer_tasks(conn, job_id, [(item, lands)], 0, now,
                                    spec.priority, pending=not to_share)
        await conn.run_sync(st.refresh, [job_id], now)
    return job_id


async def insert_transfer_tasks(conn: Any, job_id: str, pairs: list[tuple[str, str]],
                                first_seq: int, now: Any, priority: int, *, pending: bool
                                ) -> list[str]:
    rows = [st.new_task(job_id, first_seq + n, item, now, priority, destination=lands,
                        status=T.PENDING if pending else T.QUEUED)
            for n, (item, lands) in enumerate(pairs)]
    if rows:
        await conn.execute(insert(Task), rows)
    return [row["id"] for row in rows]


def has_path(spec: dict[str, Any]) -> bool:
    """The job knows where its files land (a pending job does not)."""
    return spec.get("transfer", {}).get("destination_share") is not None


async def set_destination(conn: Any, ctx: Ctx, job: Any, text: Any) -> None:
    """Give a job with no destination path one: each task gets its landing (kept relative
    to the job's landing when it had one before a resend) and the pending ones are
    queued."""
    text = expect({"destination_path": text}, "destination_path", str, "a share path")
    if job.kind != "transfer":
        raise Invalid("read_only", "'destination_path' belongs to transfer jobs", field="destination_path")
    if has_path(job.spec):
        raise Conflict("not_pending", f"the job is {job.status} and has its destination "
                       "path: it is set only while it is pending (write status 'pending' to "
                       "resend it)", field="destination_path")
    name, parts, into_folder = share_party(text, "destination_path")
    stored = dict(job.spec)
    transfer = dict(stored["transfer"])
    shares = await share_rows(conn, [name])
    dest = await may_use(conn, ctx, shares, name, "destination_path", "write")
    source = (await conn.execute(
        select(Share.id, Share.name, Client.transfer_url, Share.client_id)
        .outerjoin(Client, Client.id == Share.client_id)
        .where(Share.id == transfer["source_share"]))).first()
    if source is None or source.client_id is None:
        raise Conflict("unknown_share", "the job's source share is gone or served by no "
                       "agent", field="source")
    scope, ident = job.destination_scope, job.destination_id
    if scope == "user" and dest.user_id != ident:
        raise Invalid("not_theirs", f"destination_path: share '{name}' is not served by "
                      "an agent of the receiving user", field="destination_path")
    if scope == "site" and dest.site_id != ident:
        raise Invalid("not_theirs", f"destination_path: share '{name}' is not served by "
                      "an agent at the receiving site", field="destination_path")
    stored["targets"] = [{"client": runner(source, dest, transfer["direction"])}]
    previous = transfer.pop("previous", None)
    transfer.update(destination_share=dest.id, destination_path=join(parts),
                    destination=text, into_folder=into_folder)
    stored["transfer"] = transfer
    tasks = (await conn.execute(select(
        Task.id, Task.item, Task.destination, Task.status, Task.abort_to).where(
        Task.job_id == job.id))).all()
    for task in tasks:
        values: dict[str, Any] = {"destination": relanding(previous, transfer, task.item,
                                                          task.destination),
                                  "modified": ctx.now}
        if task.status == T.PENDING:  # one still being stopped is queued once it is
            values.update({"abort_to": T.QUEUED} if task.abort_to is not None
                          else {"status": T.QUEUED})
        await conn.execute(update(Task).where(Task.id == task.id).values(**values))
    values = {"spec": stored}
    if scope == "share":  # the job's party follows its path
        values["destination_id"] = dest.id
    if job.status == S.PENDING and transfer.get("hold"):
        values["status"] = S.PAUSED
    await conn.execute(update(Job).where(Job.id == job.id).values(**values))


def relanding(previous: dict[str, Any] | None, transfer: dict[str, Any], item: str,
              old: str) -> str:
    """Where a task lands under the job's new destination path. A task that landed
    somewhere before a resend keeps its place relative to the job's landing (below the
    job's source, or beside it); one named elsewhere on the share keeps its path; a new
    one mirrors."""
    if not old or previous is None or item == transfer["source_path"]:
        return landing(transfer, item)
    before = {**transfer, **previous}
    was = share_parts(old)
    for old_base, new_base in (
            (share_parts(landing(before, transfer["source_path"])),
             share_parts(landing(transfer, transfer["source_path"]))),
            (_beside(before), _beside(transfer))):
        if old_base and was[:len(old_base)] == old_base:
            return join(new_base + was[len(old_base):])
    return old


def _beside(transfer: dict[str, Any]) -> tuple[str, ...]:
    """The folder the job's source lands in."""
    dst = share_parts(transfer["destination_path"])
    return dst if transfer["into_folder"] else dst[:-1]


async def resend(conn: Any, ctx: Ctx, job: Any) -> None:
    """``status: pending``: every task runs again, once a destination path is set anew.
    A task still running (or still being stopped) is stopped: the agent hears it at its
    next heartbeat, and until it confirms the task keeps its bucket."""
    if job.kind != "transfer":
        raise Invalid("invalid_status", "'pending' resends a transfer; compute jobs have "
                      "no destination to reset", field="status")
    transfer = dict(job.spec["transfer"])
    if has_path(job.spec):
        transfer["previous"] = {k: transfer[k] for k in (
            "destination_share", "destination_path", "into_folder")}
    transfer.update(destination_share=None, destination_path=None, destination=None,
                    hold=job.status == S.PAUSED or (
                        job.status == S.PENDING and bool(transfer.get("hold"))))
    stored = {**job.spec, "transfer": transfer, "targets": []}
    stopping = or_(Task.status.in_(st.RUNNING_TASK), Task.abort_to.is_not(None))
    await conn.execute(update(Task).where(Task.job_id == job.id, stopping).values(
        status=T.PENDING, abort_to=T.PENDING, modified=ctx.now))
    await conn.execute(update(Task).where(
        Task.job_id == job.id, ~stopping, Task.status != T.EXCLUDED).values(
        **st.FRESH_RUN, status=T.PENDING, attempts=0, message="", modified=ctx.now))
    await conn.execute(update(Job).where(Job.id == job.id).values(
        status=S.PENDING, spec=stored, started=None, finished=None))


async def status_write(conn: Any, ctx: Ctx, job: Any, wanted: str) -> bool:
    """``paused`` or ``waiting`` written to a transfer job with no destination path: it
    stays (or becomes again) pending, and remembers which to become once it has a path.
    Returns whether the write was handled here."""
    if job.kind != "transfer" or has_path(job.spec) or wanted not in (S.PAUSED, S.WAITING):
        return False
    if wanted == S.PAUSED and job.status in st.FINISHED:
        return False  # refused as for any ended job
    stored = {**job.spec, "transfer": {**job.spec["transfer"], "hold": wanted == S.PAUSED}}
    if wanted == S.WAITING:  # run again what did not succeed, once there is a path
        await conn.execute(update(Task).where(
            Task.job_id == job.id, Task.status.in_((T.FAILED, T.QUEUED)),
            Task.abort_to.is_(None)).values(
            **st.FRESH_RUN, status=T.PENDING, attempts=0, message="", modified=ctx.now))
        await conn.execute(update(Task).where(
            Task.job_id == job.id, Task.abort_to.is_not(None)).values(abort_to=T.PENDING))
    await conn.execute(update(Job).where(Job.id == job.id).values(
        spec=stored, status=S.PENDING, finished=None))
    return True
