"""Hooks (issue 19): a job names a command to run when it is done or failed
(``"hooks": {"done": {"client": "code:pub01", "command": [...]}, "failed": {...}}``), run
as a one-task compute job on that agent with the job's id and status in its environment
(``FERRY_HOOK_JOB_ID``, ``FERRY_HOOK_JOB_STATUS``, ``FERRY_HOOK_EVENT``).

The hook job is its creator's as much as the job is: the same user, organization and
queue, and its agent is resolved when the job is created, among the agents the creator's
organization may use, by the rules of a compute job's targets (``targets.py``). A client
the creator could not run a compute job on is refused then, ``422`` naming
``hooks.done.client``, in the words a compute job would get, so a hook probes no more
than a job does.

It is made in the transaction that ends the job (``status.py``), once: a job that reaches
``done`` gets its ``done`` hook job unless it has one already (a job run again and done
again does not run it twice). ``hook_of`` links it to its job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import Invalid
from hub.jobs.targets import resolve
from hub.storage.models import Job, Site, new_id

Text = Annotated[str, msgspec.Meta(max_length=4096)]
ENV = ("FERRY_HOOK_JOB_ID", "FERRY_HOOK_JOB_STATUS", "FERRY_HOOK_EVENT")


class Hook(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    client: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    command: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=1024)]
    env: dict[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Text] = {}


class Hooks(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    done: Hook | None = None
    failed: Hook | None = None


def _bad(field: str, why: str) -> Invalid:
    return Invalid("invalid_spec", f"{field}: {why}", field=field)


async def stored(conn: AsyncConnection, hooks: Hooks | None, organization: str | None
                 ) -> dict[str, Any] | None:
    """The hooks as the job keeps them, each with its agent resolved; ``Invalid`` naming
    the field (``hooks.done.client``, ``hooks.failed.command[0]``…) otherwise."""
    if hooks is None:
        return None
    kept: dict[str, Any] = {}
    for when in ("done", "failed"):
        hook: Hook | None = getattr(hooks, when)
        if hook is None:
            continue
        field = f"hooks.{when}"
        if not hook.command[0].strip():
            raise _bad(f"{field}.command", "the program (first element) is empty")
        for n, arg in enumerate(hook.command):
            if "\0" in arg:
                raise _bad(f"{field}.command[{n}]", "a NUL character cannot be passed to "
                           "a program")
        for name, value in hook.env.items():
            if "\0" in value:
                raise _bad(f"{field}.env.{name}", "a NUL character cannot be put in the "
                           "environment")
            if name in ENV:
                raise _bad(f"{field}.env.{name}", "set by the hub for every hook")
        try:
            targets, destination = await resolve(conn, [hook.client], organization, None)
        except Invalid as exc:  # in a compute job's words, naming the hook's field
            raise Invalid(exc.code, exc.message.replace("compute.clients[0]",
                                                        f"{field}.client"),
                          field=f"{field}.client") from None
        kept[when] = {**msgspec.to_builtins(hook), "targets": targets,
                      "destination": list(destination)}
    return kept or None


_ENDED = select(Job.id, Job.code, Job.hooks, Job.user_id, Job.organization_id, Job.queue,
                Job.queue_id, Job.priority).where(
    Job.id.in_(bindparam("ids", expanding=True)), Job.hooks.is_not(None))
_MADE = select(Job.hook_of, Job.spec).where(Job.hook_of.in_(bindparam("ids", expanding=True)))


def start(conn: Connection, ended: dict[str, list[str]], now: datetime
          ) -> list[tuple[str, int]]:
    """Make the hook jobs of jobs that just ended (``{"done": [ids], "failed": [ids]}``),
    each unless made before; their ids and priorities (``status.py`` gives each its task)."""
    ids = [j for js in ended.values() for j in js]
    if not ids:
        return []
    jobs = {r.id: r for r in conn.execute(_ENDED, {"ids": ids})}
    if not jobs:
        return []
    made_before = {(r.hook_of, (r.spec or {}).get("env", {}).get("FERRY_HOOK_JOB_STATUS"))
                   for r in conn.execute(_MADE, {"ids": list(jobs)})}
    hq = conn.execute(select(Site.id).where(Site.name == "hq")).scalar() or ""
    made: list[tuple[str, int]] = []
    for when, job_ids in ended.items():
        for job_id in job_ids:
            job = jobs.get(job_id)
            hook = (job.hooks or {}).get(when) if job is not None else None
            if job is None or hook is None or (job_id, when) in made_before:
                continue
            made.append((_insert(conn, job, when, hook, hq, now), job.priority))
    return made


def _insert(conn: Connection, job: Any, when: str, hook: dict[str, Any], hq: str,
            now: datetime) -> str:
    """The hook job, as ``compute.py`` makes a compute job: from the main site, its
    destination the hook's lone agent (if it names one)."""
    hook_id = new_id()
    env = {**hook["env"], "FERRY_HOOK_JOB_ID": job.id, "FERRY_HOOK_JOB_STATUS": when,
           "FERRY_HOOK_EVENT": f"job.{when}"}
    spec = {"command": hook["command"], "items": "1", "bucket_size": 1, "env": env,
            "cwd": None, "timeout": None, "retries": 0, "grace": 10.0,
            "clients": [hook["client"]], "targets": hook["targets"]}
    scope, ident = hook["destination"]
    conn.execute(insert(Job).values(
        id=hook_id, code=f"{job.code} {when} hook"[:255], kind="compute", queue=job.queue,
        queue_id=job.queue_id, status="waiting", priority=job.priority, user_id=job.user_id,
        organization_id=job.organization_id, collaboration_id=None, hook_of=job.id,
        source_scope="site", source_id=hq,
        destination_scope=scope, destination_id=ident, spec=spec, meta={}, size=-1,
        created=now, modified=now, modifier=job.user_id))
    return hook_id
