"""Compute jobs: a command run once per item (a frame, a frame range) on agents' lanes.

What a user submits, checked before anything is stored::

    {"code": "shot010 lighting",            # optional; default from the command
     "priority": 500,                        # 1-1000, higher first
     "status": "waiting",                    # or "paused" to hold it at first
     "metadata": {...},
     "compute": {
         "command": ["render", "-f", "{item}", "-o", "/out/{item}.exr"],
         "items": "1-200",                   # "1-200x5" (step), "1,5,9", or a list
         "bucket_size": 1,                   # tasks a lane takes at once, run in turn
         "env": {"OCIO": "/studio/ocio.config"},
         "cwd": "/studio/shots/010",
         "timeout": 3600,                    # seconds per task
         "retries": 2,                       # more attempts after a failure or a lost lease
         "grace": 10,                        # seconds between SIGTERM and SIGKILL
         "clients": ["site:stockholm", "tag:gpu", "ram:>60GB", "!code:old*"]},
     "limits": ["nuke"],                     # its organization's limits it holds
     "max_lanes": 4,                         # at most this many of its buckets at once
     "collaboration": "ZEPPELIN",            # optional: its members' nodes run it too
     "after": ["<job id>"],                  # optional: start once these are done
     "after_items": "<job id>",              # optional: item N once item N there is done
     "after_failed": "fail"}                 # or "wait" (``hub/jobs/dependencies.py``)

``{item}``, ``{task}`` and ``{job}`` in the command are replaced per task. A job may
name an engine and its arguments instead of a command (``engines.py``): its command is
made from the engine's when it is created.
An empty ``clients`` means any agent the job's organization may use
(``hub/jobs/targets.py``); targets only narrow that (``hub/jobs/filters.py``: kinds,
how they combine). A job no usable agent matches says why in ``status_reason``
(``hub/jobs/reasons.py``). A bucket is the next
``bucket_size`` queued tasks of a job, run one after the other in one lane; each holds
one slot of each of the job's limits and one of its ``max_lanes`` (``hub/jobs/limits.py``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from sqlalchemy import ColumnElement, and_, insert, or_, select
from sqlalchemy.engine import Connection

from hub.bodies import invalid
from hub.errors import Invalid
from hub.jobs import dependencies, engines, hooks, reasons
from hub.jobs import status as st
from hub.jobs.hooks import Hooks
from hub.jobs.kind import JobKind, Lease
from hub.jobs.limits import MAX, limits_for
from hub.jobs.queues import queue_for
from hub.jobs.targets import resolve, usable_by
from hub.jobs.writes import insert_tasks
from hub.runtime import Ctx
from hub.storage.models import Collaboration, Job, Site, job_limits, members, new_id
from hub.webhooks import events
from protocol import BucketKind, BucketWork, TaskWork

MAX_ITEMS = 100_000

Text = Annotated[str, msgspec.Meta(max_length=4096)]
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_AFTER = 1000  # jobs one job may wait for


class ComputeSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    command: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=1024)]
    items: str | list[str | int]
    bucket_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1
    env: dict[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Text] = {}
    cwd: Text | None = None
    timeout: Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)] | None = None
    retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 2
    grace: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    clients: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=255)]],
                       msgspec.Meta(max_length=256)] = []


class ComputeCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    compute: ComputeSpec
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    priority: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    status: Literal["waiting", "paused"] = "waiting"
    queue: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "default"
    metadata: dict[str, Any] = {}
    limits: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=255)]],
                      msgspec.Meta(max_length=64)] = []
    max_lanes: Annotated[int, msgspec.Meta(ge=1, le=MAX)] | None = None
    # a collaboration (id or name) the caller's organization is in: the job is shown to
    # its members
    collaboration: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    # jobs it waits for (hub/jobs/dependencies.py)
    after: Annotated[list[JobId], msgspec.Meta(max_length=MAX_AFTER)] = []
    after_items: JobId | None = None
    after_failed: Literal["fail", "wait"] = "fail"
    hooks: Hooks | None = None  # commands run when it is done or failed (hooks.py)


_RANGE = re.compile(r"^(-?\d+)(?:-(-?\d+)(?:[x:](\d+))?)?$")


def expand_items(items: str | list[str | int]) -> list[str]:
    """``"1-100"``, ``"1-100x5"`` (or ``:5``), ``"1,5,9-12"``, or a list, as item strings."""
    if isinstance(items, list):
        out = [str(i) for i in items]
        for value in out:
            if not value or len(value) > 1024:
                raise _bad("items", "every item must be 1 to 1024 characters")
            if "\0" in value:
                raise _bad("items", "an item cannot hold a NUL character (it goes into the "
                           "command line)")
    else:
        out = []
        for raw in items.split(","):
            part = raw.strip()
            match = _RANGE.match(part)
            if match is None:
                raise _bad("items", f"'{part}' is not a frame, a range like 1-100 or a stepped "
                           "range like 1-100x5")
            first, last, step = match.groups()
            if last is None:
                out.append(first)
                continue
            start, end, stride = int(first), int(last), int(step or 1)
            if end < start:
                raise _bad("items", f"range '{part}' runs backwards")
            if stride < 1:
                raise _bad("items", f"range '{part}' needs a step of at least 1")
            if (end - start) // stride + 1 + len(out) > MAX_ITEMS:
                raise _bad("items", f"more than {MAX_ITEMS} items")
            out.extend(str(n) for n in range(start, end + 1, stride))
    if not out:
        raise _bad("items", "items is empty: give a range like 1-100 or a list")
    seen: set[str] = set()
    for item in out:
        if item in seen:
            raise _bad("items", f"item '{item}' is listed twice")
        seen.add(item)
    if len(out) > MAX_ITEMS:
        raise _bad("items", f"more than {MAX_ITEMS} items")
    return out


def _bad(field: str, message: str) -> Invalid:
    return Invalid("invalid_spec", f"compute.{field}: {message}", field=f"compute.{field}")


def check_command(spec: ComputeSpec) -> None:
    """What the spec's types cannot say: a program, and no NUL where the OS reads C strings."""
    if not spec.command[0].strip():
        raise _bad("command", "the program (first element) is empty")
    for n, arg in enumerate(spec.command):
        if "\0" in arg:
            raise _bad(f"command[{n}]", "a NUL character cannot be passed to a program")
    for name, value in spec.env.items():
        if "\0" in value:
            raise _bad(f"env.{name}", "a NUL character cannot be put in the environment")
    if spec.cwd is not None and "\0" in spec.cwd:
        raise _bad("cwd", "a NUL character cannot be in a folder name")


def render_argv(command: list[str], *, item: str, task: str, job: str) -> list[str]:
    """The command of one task: placeholders replaced wherever they stand in an argument."""
    return [arg.replace("{item}", item).replace("{task}", task).replace("{job}", job)
            for arg in command]


def default_code(command: list[str], items: list[str]) -> str:
    """A job's code when its creator gives none: the program and the span of items."""
    program = command[0].replace("\\", "/").rsplit("/", 1)[-1]
    span = items[0] if len(items) == 1 else f"{items[0]}-{items[-1]}"
    return f"{program} {span}"[:255]


async def member_collaboration(conn: Any, ctx: Ctx, given: str | None) -> str | None:
    """The id of the collaboration a job runs in; ``Invalid`` unless the caller's
    organization is one of its members (the same answer whether it exists or not: no
    probing)."""
    if given is None:
        return None
    found = (await conn.execute(
        select(Collaboration.id).join(members, members.c.collaboration_id == Collaboration.id)
        .where(or_(Collaboration.id == given, Collaboration.name == given),
               members.c.organization_id == ctx.caller.organization))).scalar()
    if found is None:
        raise Invalid("not_a_member", f"your organization is in no collaboration "
                      f"'{given}'", field="collaboration")
    return str(found)


class ComputeJobs(JobKind):
    kind = BucketKind.COMPUTE
    markers: ClassVar[tuple[str, ...]] = ("compute", "engine")

    async def create(self, ctx: Ctx, body: Any) -> str:
        engine: dict[str, Any] = {}
        if isinstance(body, dict) and "engine" in body:  # its command comes from the engine
            async with ctx.db.read() as conn:
                body = await engines.expand(conn, ctx, body)
            engine = {"engine": body.pop("engine"), "args": body.pop("args")}
        try:
            spec = msgspec.convert(body, ComputeCreate)
        except msgspec.ValidationError as exc:
            raise invalid(exc, "invalid_spec") from None
        check_command(spec.compute)
        items = expand_items(spec.compute.items)
        job_id, now = new_id(), ctx.now
        async with ctx.db.write() as conn:
            collaboration = await member_collaboration(conn, ctx, spec.collaboration)
            await dependencies.check(conn, ctx, spec.after, spec.after_items)
            targets, destination = await resolve(conn, spec.compute.clients,
                                                 ctx.caller.organization, collaboration)
            hq = (await conn.execute(select(Site.id).where(Site.name == "hq"))).scalar() or ""
            stored = msgspec.to_builtins(spec.compute)
            stored.update(targets=targets, **engine)
            queue = await queue_for(conn, ctx.caller.organization, spec.queue)
            limits = await limits_for(conn, ctx.caller.organization, spec.limits)
            kept = await hooks.stored(conn, spec.hooks, ctx.caller.organization)
            await conn.execute(insert(Job).values(
                id=job_id, code=spec.code or default_code(spec.compute.command, items),
                kind=self.kind, queue=spec.queue, queue_id=queue, status=spec.status, priority=spec.priority,
                user_id=ctx.principal.id, organization_id=ctx.caller.organization,
                collaboration_id=collaboration, source_scope="site", source_id=hq,
                destination_scope=destination[0], destination_id=destination[1], spec=stored,
                meta=spec.metadata, size=-1, created=now, modified=now,
                modifier=ctx.principal.id, max_lanes=spec.max_lanes, hooks=kept))
            if limits:
                await conn.execute(insert(job_limits), [{"job_id": job_id, "limit_id": i}
                                                        for i in limits])
            await insert_tasks(conn, job_id, items, 0, now, spec.priority)
            await dependencies.store(conn, job_id, spec.after, spec.after_items,
                                     spec.after_failed)
            await conn.run_sync(st.refresh, [job_id], now)
            await conn.run_sync(events.jobs_event, events.Event.JOB_CREATED, [job_id], now)
            await conn.run_sync(reasons.refresh, [job_id])
        return job_id

    def shown(self, spec: dict[str, Any]) -> dict[str, Any]:
        # a job made from an engine names it and its args beside the command made of them
        made: dict[str, Any] = {k: spec[k] for k in ("engine", "args") if k in spec}
        return {"compute": {k: v for k, v in spec.items() if k not in ("targets", *made)},
                **made}

    def queued_for(self, organization: Any, collaboration: Any) -> ColumnElement[bool]:
        # only where the job's organization may use the agent, whatever its targets say
        return and_(Job.kind == self.kind, usable_by(organization, collaboration))

    def bucket(self, conn: Connection, lease: Lease, spec: dict[str, Any], rows: list[Any]
               ) -> BucketWork:
        return BucketWork(
            id=lease.bucket_id, job_id=lease.job_id, lane_id=lease.lane_id, kind=self.kind,
            tasks=[TaskWork(id=r.id, uri=r.uri, item=r.item, attempt=r.attempts + 1,
                            argv=render_argv(spec["command"], item=r.item, task=r.id,
                                             job=lease.job_id))
                   for r in rows],
            env=spec.get("env", {}), cwd=spec.get("cwd"), timeout=spec.get("timeout"),
            grace=spec.get("grace", 10.0), leased_until=lease.leased_until)


COMPUTE = ComputeJobs()
