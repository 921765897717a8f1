"""Docker jobs: one algorithm image run for several organizations of a collaboration.

A docker job is what the reference calls a task; each of its tasks is one
organization's *run*, with its own input, status, result, log and timings,
and goes only to that organization's node in the job's collaboration::

    {"docker": {"image": "studio/avg:2",
                "command": ["avg", "/ferry/input/input"],
                "organizations": [{"organization": "IKNL", "input": "..."},
                                  {"organization": "Small Organization", "input": "..."}],
                "memory": "512m", "cpus": 1, "timeout": 600, "grace": 10},
     "collaboration": "ExampleCollab",
     "parent": "<a docker job id>",       # a child job: shares its parent's job_id
     "code": "average age"}

``job_id`` groups a job with the child jobs its runs create (the reference's
``job_id``): it is the id of the first job of the group. In an encrypted
collaboration each input is an envelope sealed by the caller's organization
for the run's organization (``protocol.sealing``), checked for shape and
address here and stored as it came: the hub keeps ciphertext only, and so
are the results, sealed by each node for the initiating organization.

A node's free docker slots take the queued runs of its own organization in the
collaboration it was enrolled for, across jobs (``next_runs``), one run to a bucket;
each run gets a token of its job's user that lets it create child jobs (``run_work``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection

from hub.access import JOBS
from hub.bodies import invalid
from hub.errors import Conflict, Invalid
from hub.jobs import status as st
from hub.jobs.kind import JobKind, Lease
from hub.jobs.queues import QueueStatus, queue_for
from hub.jobs.runs import MAX_RUNS, RunFor, add_runs, check_input
from hub.runtime import Ctx
from hub.security import TokenService, password_version
from hub.storage.models import (
    Collaboration,
    Job,
    Organization,
    Queue,
    Task,
    User,
    members,
    new_id,
)
from hub.webhooks import events
from protocol import LOG_TAIL_BYTES, BucketKind, BucketWork, DockerWork, TaskWork, sealing
from protocol.docker import MAX_RESULT, parse_size

Text = Annotated[str, msgspec.Meta(max_length=4096)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
RUN_TOKEN_SLACK = 3600.0  # seconds a run token outlives the run's timeout, at most


class DockerSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    image: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    # none only for a job made paused, whose runs are added later (the hub shell's
    # db.Task, then a db.Run per organization: ``runs.add_runs``)
    organizations: Annotated[list[RunFor], msgspec.Meta(max_length=MAX_RUNS)]
    command: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=1024)] | None = None
    env: dict[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Text] = {}
    cpus: Annotated[float, msgspec.Meta(gt=0, le=1024)] | None = None
    memory: int | str | None = None  # bytes, or "512m"
    pids: Annotated[int, msgspec.Meta(ge=1, le=1 << 22)] | None = None
    gpus: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0
    # "uid" or "uid:gid"; default an unprivileged one; 0 only where the node allows root
    user: Annotated[str, msgspec.Meta(pattern=r"^\d{1,10}(:\d{1,10})?$")] | None = None
    timeout: Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)] | None = None
    grace: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0


class DockerJobCreate(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    docker: DockerSpec
    collaboration: Name | None = None  # required unless a parent gives it
    parent: Name | None = None
    code: Name | None = None
    priority: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    status: Literal["waiting", "paused"] = "waiting"
    queue: Name = "default"
    metadata: dict[str, Any] = {}


def _bad(field: str, message: str, code: str = "invalid_spec") -> Invalid:
    return Invalid(code, f"{field}: {message}", field=field)


async def create(ctx: Ctx, body: Any, initiator: str | None = None,
                 ident: str | None = None) -> str:
    """Check a docker job and store it with one queued run per organization; its id.
    ``initiator``: the organization that starts it, when not the caller's (an import, the
    hub shell); ``ident``: its id, when the hub shell took one first (``next_job_id``)."""
    try:
        spec = msgspec.convert(body, DockerJobCreate)
    except msgspec.ValidationError as exc:
        raise invalid(exc, "invalid_spec") from None
    docker = spec.docker
    if not docker.organizations and spec.status != "paused":
        raise _bad("docker.organizations", "name at least one organization to run the image "
                   "for (or make the job paused, and add its runs later)")
    memory = None
    if docker.memory is not None:
        try:
            memory = parse_size(docker.memory)
        except ValueError as exc:
            raise _bad("docker.memory", str(exc)) from None
    if docker.command is not None and not docker.command[0].strip():
        raise _bad("docker.command", "the program (first element) is empty")
    for n, arg in enumerate(docker.command or []):
        if "\0" in arg:
            raise _bad(f"docker.command[{n}]", "a NUL character cannot be passed to a program")
    for name, value in docker.env.items():
        if "\0" in value:
            raise _bad(f"docker.env.{name}", "a NUL character cannot be put in the environment")
    run = ctx.principal.run
    job_id, now = ident or new_id(), ctx.now
    async with ctx.db.write() as conn:
        if ident is not None and (await conn.execute(select(Job.id).where(
                Job.id == ident))).first() is not None:
            raise Conflict("duplicate", f"job_id '{ident}' is taken: a job of another group "
                           "has it (children share their parent's: give parent=)",
                           field="job_id")
        parent = await _parent(conn, ctx, spec.parent if run is None else await _run_job(
            conn, run, spec.parent))
        given = spec.collaboration or (parent.collaboration_id if parent else None)
        if given is None:
            raise _bad("collaboration", "a docker job runs in a collaboration: name it",
                       "invalid_body")
        if parent is not None:
            initiator = parent.organization_id
        elif initiator is None:
            initiator = ctx.caller.organization
        if initiator is None:
            raise Invalid("no_organization", "docker jobs are started by a user of an "
                          "organization of the collaboration; yours has none", field="collaboration")
        # among the initiator's collaborations only: one it is not in answers as one that
        # does not exist (nothing to probe)
        collab = (await conn.execute(
            select(Collaboration.id).join(members, members.c.collaboration_id == Collaboration.id)
            .where(or_(Collaboration.id == given, Collaboration.name == given),
                   members.c.organization_id == initiator))).scalar()
        if collab is None:
            raise Invalid("not_a_member", f"your organization is in no collaboration "
                          f"'{given}'", field="collaboration")
        if parent is not None and collab != parent.collaboration_id:
            raise _bad("collaboration", "a child job runs in its parent's collaboration",
                       "invalid_body")
        partners = set((await conn.execute(select(members.c.organization_id).where(
            members.c.collaboration_id == collab))).scalars())
        encrypted = bool((await conn.execute(select(Collaboration.encrypted).where(
            Collaboration.id == collab))).scalar())
        keys = dict((await conn.execute(select(Organization.id, Organization.public_key).where(
            Organization.id.in_(partners)))).all())
        if encrypted and not keys.get(initiator):
            raise Conflict("no_public_key", "the collaboration is encrypted and your "
                           "organization has published no public key yet: results could be "
                           "sealed for nobody (its node publishes it when it first starts)",
                           field="collaboration")
        runs: list[tuple[str, str]] = []
        for n, wanted in enumerate(docker.organizations):
            field = f"docker.organizations[{n}]"
            org = (await conn.execute(select(Organization.id).where(
                or_(Organization.id == wanted.organization,
                    Organization.name == wanted.organization),
                Organization.id.in_(sorted(partners))))).scalar()
            if org is None:  # the same for one that does not exist: nothing to probe
                raise _bad(f"{field}.organization", f"organization '{wanted.organization}' is "
                           f"not in collaboration '{given}'", "not_a_member")
            if any(org == seen for seen, _ in runs):
                raise _bad(f"{field}.organization", f"organization '{wanted.organization}' is "
                           "listed twice", "invalid_body")
            check_input(wanted.input, f"{field}.input", encrypted, org, initiator, keys)
            runs.append((org, wanted.input))
        stored = {k: v for k, v in msgspec.to_builtins(docker).items() if k != "organizations"}
        stored.update(memory=memory, encrypted=encrypted,
                      job_id=(parent.spec or {}).get("job_id", parent.id) if parent else job_id,
                      organizations=[org for org, _ in runs])
        queue = await queue_for(conn, initiator, spec.queue)
        await conn.execute(insert(Job).values(
            id=job_id, code=spec.code or docker.image.rsplit("/", 1)[-1][:255], kind=BucketKind.DOCKER,
            queue=spec.queue, queue_id=queue, status=spec.status, priority=spec.priority,
            user_id=parent.user_id if parent is not None else ctx.principal.id,
            organization_id=initiator, collaboration_id=collab,
            parent_id=parent.id if parent is not None else None, source_scope="", source_id="",
            destination_scope="", destination_id="", spec=stored, meta=spec.metadata, size=-1,
            created=now, modified=now, modifier=ctx.principal.id))
        if runs:
            await conn.execute(insert(Task), [
                st.new_task(job_id, n, org, now, spec.priority, organization_id=org, input=text)
                for n, (org, text) in enumerate(runs)])
        await conn.run_sync(st.refresh, [job_id], now)
        await conn.run_sync(events.jobs_event, events.Event.JOB_CREATED, [job_id], now)
    return job_id


async def _run_job(conn: Any, task_id: str, given: str | None) -> str:
    """A run's token creates child jobs of the run's own job, and of no other."""
    job = (await conn.execute(select(Task.job_id).where(Task.id == task_id))).scalar()
    if given is not None and given != job:
        raise _bad("parent", "a run's token creates child jobs of its own job only",
                   "forbidden_parent")
    return str(job)


async def _parent(conn: Any, ctx: Ctx, parent: str | None) -> Any:
    if parent is None:
        return None
    row = (await conn.execute(select(
        Job.id, Job.kind, Job.user_id, Job.organization_id, Job.collaboration_id, Job.spec,
        Job.status).where(Job.id == parent))).first()
    if row is None or row.kind != BucketKind.DOCKER:
        raise _bad("parent", f"no docker job '{parent}'", "unknown_parent")
    if ctx.principal.run is None:  # a user: one who may act on the parent, since the
        await JOBS.check(conn, ctx, "edit", parent)  # child runs in its user's name
    if row.status in st.FINISHED:
        raise _bad("parent", f"job '{parent}' has ended ({row.status})", "parent_ended")
    return row


def check_result(result: str, spec: dict[str, Any]) -> str:
    """Why a run's reported result cannot be stored ('' when it can): in an encrypted
    collaboration only an envelope for the initiating organization is kept."""
    if not result:  # none
        return ""
    if len(result) > MAX_RESULT:
        return f"the result is larger than {MAX_RESULT} characters"
    if "\0" in result:
        return "the result holds a NUL character: results are text (encode binary data)"
    if not spec.get("encrypted"):
        return ""
    try:
        envelope = sealing.parse(result)
    except sealing.SealError as exc:
        return f"the collaboration is encrypted and the result is not sealed ({exc}); it " \
               "was discarded"
    return "" if envelope["to"] else "the result is sealed for nobody"


# -- leases
_NEXT_RUNS = (select(Task.id, Task.uri, Task.item, Task.attempts, Task.input, Task.job_id,
                     Task.organization_id, Job.spec)
              .join(Job, Job.id == Task.job_id).join(Queue, Queue.id == Job.queue_id)
              .where(Job.kind == BucketKind.DOCKER, Job.status.in_(st.ACTIVE),
                     Queue.status == QueueStatus.OPEN,
                     Job.collaboration_id == bindparam("collab"),
                     Task.organization_id == bindparam("org"),
                     Task.status == st.TaskStatus.QUEUED)
              .order_by(Queue.priority.desc(), Job.priority.desc(), Job.created,
                        Task.priority.desc(), Task.seq)
              .limit(bindparam("n")).with_for_update(of=Task, skip_locked=True))
# the initiating organization's key and the user whose run tokens the runs get
_STARTED_BY = (select(Job.organization_id, Job.user_id, Organization.public_key,
                      User.password_hash)
               .outerjoin(Organization, Organization.id == Job.organization_id)
               .outerjoin(User, User.id == Job.user_id)
               .where(Job.id == bindparam("job")))


def next_runs(conn: Connection, org: str, collab: str, n: int) -> list[Any]:
    """The next queued runs for this organization's node in this collaboration, of any
    job, each with its job's spec: docker runs are not taken job by job, as a queue's
    buckets are, but by the organization they are for."""
    return list(conn.execute(_NEXT_RUNS, {"org": org, "collab": collab, "n": n}))


def run_work(row: Any, spec: dict[str, Any], job: Any, tokens: TokenService | None
             ) -> TaskWork:
    """What the agent gets for one run; the token lets the run create child jobs."""
    token = ""
    if tokens is not None and job.user_id and job.password_hash:
        lifetime = (spec.get("timeout") or 7 * 86400.0) + RUN_TOKEN_SLACK
        token = tokens.issue_run(job.user_id, password_version(job.password_hash), row.id,
                                 timedelta(seconds=lifetime)).token
    return TaskWork(id=row.id, uri=row.uri, item=row.item, attempt=row.attempts + 1, argv=[],
                    docker=DockerWork(
                        image=spec["image"], job_id=spec["job_id"],
                        organization=row.organization_id,
                        initiator=job.organization_id or "", command=spec.get("command"),
                        env=spec.get("env") or {}, input=row.input,
                        encrypted=bool(spec.get("encrypted")),
                        initiator_key=job.public_key or "", token=token,
                        cpus=spec.get("cpus"), memory=spec.get("memory"),
                        pids=spec.get("pids"), gpus=spec.get("gpus", 0), user=spec.get("user"),
                        timeout=spec.get("timeout"), grace=spec.get("grace", 10.0)))


def follow_logs(conn: Connection, held: list[str], logs: dict[str, str]) -> None:
    """Output of running tasks (docker runs, compute tasks), from a heartbeat: appended
    to their ``log_tail``, which so follows them live."""
    running = conn.execute(select(Task.id, Task.log_tail).where(
        Task.id.in_(list(logs)), Task.bucket_id.in_(held), Task.status.in_(st.RUNNING_TASK)))
    for task_id, tail in running:
        text = st.storable(tail + logs[task_id])[-LOG_TAIL_BYTES:]
        conn.execute(update(Task).where(Task.id == task_id).values(log_tail=text))


class DockerJobs(JobKind):
    kind = BucketKind.DOCKER
    markers: ClassVar[tuple[str, ...]] = ("docker",)

    async def create(self, ctx: Ctx, body: Any) -> str:
        return await create(ctx, body)

    async def add_tasks(self, conn: Any, ctx: Ctx, job: Any, tasks: list[Any], allow: bool
                        ) -> dict[str, Any]:
        """More runs: ``[{"organization": "IKNL", "input": "..."}]``."""
        return await add_runs(conn, ctx, job, tasks)

    def shown(self, spec: dict[str, Any]) -> dict[str, Any]:
        # the image run, and the group shared with parent and child jobs
        return {"docker": {k: v for k, v in spec.items() if k != "job_id"},
                "job_id": spec.get("job_id")}

    def bucket(self, conn: Connection, lease: Lease, spec: dict[str, Any], rows: list[Any]
               ) -> BucketWork:
        """One run to a bucket: each has its own lease, abort and report."""
        job = conn.execute(_STARTED_BY, {"job": lease.job_id}).one()
        return BucketWork(
            id=lease.bucket_id, job_id=lease.job_id, lane_id=lease.lane_id, kind=self.kind,
            tasks=[run_work(row, spec, job, lease.signing.tokens) for row in rows],
            timeout=spec.get("timeout"), grace=spec.get("grace", 10.0),
            leased_until=lease.leased_until)


DOCKER = DockerJobs()
