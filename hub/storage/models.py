"""Tables of the hub, as SQLAlchemy declarative models.

Times are naive UTC. Ids are 24 hex characters: 6 bytes of creation time in
milliseconds, a 2-byte counter, then 4 random bytes, so they sort by age
(and, within one process, by order of creation).
"""

from __future__ import annotations

import itertools
import os
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(24)


_counter = itertools.count(int.from_bytes(os.urandom(2), "big"))


def new_id() -> str:
    return f"{int(time.time() * 1000):012x}{next(_counter) & 0xFFFF:04x}{os.urandom(4).hex()}"


def utcnow() -> datetime:
    """Now, as the hub stores times: UTC, without a time zone."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """A stored time as answers show it: UTC ISO 8601 to the millisecond, with a trailing Z."""
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class HubState(Base):
    """Small key/value facts the hub keeps about itself (secrets, bootstrap)."""

    __tablename__ = "hub_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Organization(Base):
    """An organization (server-shell-v4.rst): users, nodes and the jobs they start belong to one."""

    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    domain: Mapped[str] = mapped_column(String(255), default="")
    address1: Mapped[str] = mapped_column(String(255), default="")
    address2: Mapped[str] = mapped_column(String(255), default="")
    zipcode: Mapped[str] = mapped_column(String(64), default="")
    country: Mapped[str] = mapped_column(String(255), default="")
    public_key: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


class Collaboration(Base):
    """Organizations that work together; each has one node per collaboration."""

    __tablename__ = "collaborations"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


members = Table(
    "collaboration_organizations", Base.metadata,
    Column("collaboration_id", ID, ForeignKey("collaborations.id", ondelete="CASCADE"),
           primary_key=True),
    Column("organization_id", ID, ForeignKey("organizations.id", ondelete="CASCADE"),
           primary_key=True, index=True),
)


class Rule(Base):
    """A permission: ``operation`` on ``resource`` within ``scope`` (hub/permissions.py)."""

    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("resource", "operation", "scope"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    resource: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(16))


class Role(Base):
    """A named set of rules. Default roles have no organization and cannot be changed."""

    __tablename__ = "roles"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    organization_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    default: Mapped[bool] = mapped_column("is_default", Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


role_rules = Table(
    "role_rules", Base.metadata,
    Column("role_id", ID, ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("rule_id", ID, ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True),
)
user_roles = Table(
    "user_roles", Base.metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ID, ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True,
           index=True),
)
user_rules = Table(
    "user_rules", Base.metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("rule_id", ID, ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True),
)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    organization_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("organizations.id", ondelete="RESTRICT"), index=True)
    email: Mapped[str | None] = mapped_column(String(255))
    firstname: Mapped[str] = mapped_column(String(255), default="")
    lastname: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    # the name of the first role given, shown in ``user_hr``; "root" marks the root account
    role: Mapped[str] = mapped_column(String(32), default="viewer")
    # set by a batch import of a weak password: it must be changed before it logs in
    password_change_required: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


class Node(Base):
    """What an agent enrolls with: a name and a (hashed) API key. It belongs to an
    organization and, for federated work, a collaboration: one node per organization
    per collaboration."""

    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("organization_id", "collaboration_id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    user_id: Mapped[str | None] = mapped_column(ID, ForeignKey("users.id", ondelete="SET NULL"))
    organization_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("organizations.id", ondelete="RESTRICT"), index=True)
    collaboration_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("collaborations.id", ondelete="RESTRICT"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


class ApiKey(Base):
    """An API key of a user or a node, stored as an argon2 hash.

    ``lookup`` holds 32 bits of a peppered SHA-256 of the key: enough to find
    the one row to verify, too little to test guesses against offline.
    """

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("nodes.id", ondelete="CASCADE"), index=True
    )
    lookup: Mapped[str] = mapped_column(String(8), index=True)
    hash: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(DateTime)
    # a user's key: the version of the password it was made under (it stops working
    # once the password changes), and when it stops working anyway (None: never)
    password_version: Mapped[str | None] = mapped_column(String(16))
    expires: Mapped[datetime | None] = mapped_column(DateTime)


class Client(Base):
    """A running agent (type 1 or 2) or one of its compute lanes (type 5).

    ``status`` is not stored: it follows from ``disabled``, ``gone`` (the
    agent said goodbye) and the age of ``last_checkin``.
    """

    __tablename__ = "clients"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(ID, ForeignKey("users.id", ondelete="SET NULL"))
    node_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("nodes.id", ondelete="SET NULL"), index=True
    )
    site_id: Mapped[str | None] = mapped_column(ID, ForeignKey("sites.id", ondelete="SET NULL"))
    parent_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    host_id: Mapped[str] = mapped_column(Text, default="")
    machine_id: Mapped[str] = mapped_column(String(128), default="")
    last_checkin: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
    os: Mapped[str] = mapped_column(String(255), default="")
    username: Mapped[str] = mapped_column(String(255), default="")
    version: Mapped[str] = mapped_column(String(255), default="")
    wan_ip: Mapped[str] = mapped_column(String(255), default="")
    benchmark: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # why the agent takes no work now, as its last check-in said (its schedule or NIMBY);
    # null: it takes work
    status_reason: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    boot_id: Mapped[str] = mapped_column(String(64), default="")  # the agent process's
    # its transfer endpoint, as it said at enrollment (empty: it serves none)
    transfer_url: Mapped[str] = mapped_column(String(1024), default="")
    transfer_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    # its certificate's public key, sha256//<base64>, for curl --pinnedpubkey (download links)
    transfer_pin: Mapped[str] = mapped_column(String(64), default="")
    # when webhooks were last told it went offline (``client.offline``): told again only
    # once it has checked in since (hub/webhooks/offline.py)
    offline_told: Mapped[datetime | None] = mapped_column(DateTime)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


class Share(Base):
    """A named root folder (``share=projects/...``) served by one agent (type 1 or 2)."""

    __tablename__ = "shares"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # the agent that serves it; null once that client is deleted (the share is kept)
    client_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("clients.id", ondelete="SET NULL"), index=True
    )
    path: Mapped[str] = mapped_column(String(4096))  # the root folder, on that agent
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


class FileChange(Base):
    """A change a user made to a share's files through the hub (issue 19: ``mkdir``,
    ``rename``, ``mv``, ``delete``; ``hub/files.py``): who, where, what. Kept when the user,
    organization or share goes (their ids and names stay as they were)."""

    __tablename__ = "file_changes"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user_id: Mapped[str] = mapped_column(ID)
    username: Mapped[str] = mapped_column(String(255))
    organization_id: Mapped[str | None] = mapped_column(ID)
    share_id: Mapped[str] = mapped_column(ID, index=True)
    share: Mapped[str] = mapped_column(String(64))  # its name then
    op: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(4096))  # inside the share
    result: Mapped[str] = mapped_column(String(4096))  # where it is now ("" once deleted)
    recursive: Mapped[bool] = mapped_column(Boolean, default=False)


class Queue(Base):
    """Where jobs wait (accsyn's job ``parent``): dispatch takes the jobs of open queues,
    highest ``priority`` first. Queues belong to an organization, and its jobs go only
    into its own; its ``default`` queue is made when a job first needs it."""

    __tablename__ = "queues"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    priority: Mapped[int] = mapped_column(Integer, default=500)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open or paused
    # null only once its organization is deleted (its jobs keep their queue)
    organization_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("organizations.id", ondelete="SET NULL"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


class Limit(Base):
    """A counted resource (a licence, a database's connections): at most ``max`` buckets of
    the jobs that name it are leased at once, across every hub process (hub/jobs/limits.py).
    Limits belong to an organization, and only its jobs name them."""

    __tablename__ = "limits"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    max: Mapped[int] = mapped_column(Integer)
    # null only once its organization is deleted
    organization_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("organizations.id", ondelete="SET NULL"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


class Engine(Base):
    """A program a farm runs (issue 18): compute jobs name it and its arguments instead of
    a command, and the hub makes their command from ``argv`` when each is created. It
    belongs to one organization, whose jobs alone may name it."""

    __tablename__ = "engines"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    argv: Mapped[list[str]] = mapped_column(JSON)  # the command, with {placeholders}
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    bucket_size: Mapped[int] = mapped_column(Integer, default=1)
    clients: Mapped[list[str]] = mapped_column(JSON, default=list)  # targets, as jobs give them
    # null only once its organization is deleted
    organization_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("organizations.id", ondelete="SET NULL"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


class Job(Base):
    """A job (jobs.rst). ``status`` is stored: tasks keep it current, and users set
    ``paused``/``aborted``/``waiting``. Counts, progress, etr and speed are derived."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default="compute")
    queue: Mapped[str] = mapped_column(String(255), default="default")  # its queue's name
    # the queue it waits in (``Queue``); a queue with jobs is never deleted
    queue_id: Mapped[str | None] = mapped_column(ID, index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=500)
    user_id: Mapped[str | None] = mapped_column(ID, ForeignKey("users.id", ondelete="SET NULL"))
    # the organization that started it (its user's, when created)
    organization_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("organizations.id", ondelete="SET NULL"), index=True)
    # the collaboration it runs in, if any: its organization is one of the members
    collaboration_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("collaborations.id", ondelete="SET NULL"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ID)
    source_scope: Mapped[str] = mapped_column(String(16), default="")
    source_id: Mapped[str] = mapped_column(String(255), default="")
    destination_scope: Mapped[str] = mapped_column(String(16), default="")
    destination_id: Mapped[str] = mapped_column(String(255), default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    size: Mapped[int] = mapped_column(BigInteger, default=-1)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)
    started: Mapped[datetime | None] = mapped_column(DateTime)
    finished: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    # why a waiting compute job runs nowhere (no agent it may use matches its targets),
    # in words; null when there is nothing to say (hub/jobs/reasons.py)
    status_reason: Mapped[str | None] = mapped_column(Text)
    # at most this many of its buckets leased at once (null: as many as lanes take)
    max_lanes: Mapped[int | None] = mapped_column(Integer)
    # commands to run when it is done or failed (hub/jobs/hooks.py); null: none
    hooks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the job whose hook this job is
    hook_of: Mapped[str | None] = mapped_column(ID, index=True)
    # when delete_one made it inactive: kept, with its tasks, out of every find but one
    # with inactive=True (null: not deleted)
    deleted: Mapped[datetime | None] = mapped_column(DateTime)
    # a transfer job's: bytes a second its transfers move at most (null: no limit), and a
    # frame sequence's frames missing from its range (null: not listed yet)
    speed_limit: Mapped[int | None] = mapped_column(BigInteger)
    frames_missing: Mapped[str | None] = mapped_column(Text)


# the limits a job holds while a bucket of it is leased
job_limits = Table(
    "job_limits", Base.metadata,
    Column("job_id", ID, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("limit_id", ID, ForeignKey("limits.id", ondelete="CASCADE"), primary_key=True,
           index=True),
)


class JobDependency(Base):
    """A job that waits for another (issue 18's dependencies): ``kind`` ``job``, it starts
    once ``after_id`` is done; ``items``, its item N starts once item N of ``after_id`` is
    done. ``on_failure`` (the job's ``after_failed``): ``fail``, it fails when ``after_id``
    fails or is aborted; ``wait``, it waits for a retry. Rows go with either job."""

    __tablename__ = "job_dependencies"
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    after_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"),
                                          primary_key=True, index=True)
    kind: Mapped[str] = mapped_column(String(8))  # job or items
    on_failure: Mapped[str] = mapped_column(String(8))  # fail or wait


class Task(Base):
    """One item of a job: a frame to compute (or, later, a file to move)."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_job_status", "job_id", "status"),
                      Index("ix_tasks_job_finished", "job_id", "finished"),
                      Index("ix_tasks_organization_status", "organization_id", "status"),
                      # pages of one job's tasks, in id order (hub/entities/paging.py)
                      Index("ix_tasks_job_id", "job_id", "id"))
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"))
    uri: Mapped[str] = mapped_column(String(32))  # "0", "1", … in order of creation
    seq: Mapped[int] = mapped_column(Integer)
    item: Mapped[str] = mapped_column(String(4096))  # a compute item, or a source path
    # transfer tasks: where the file (or folder) lands on the job's destination share
    # (empty: pending)
    destination: Mapped[str] = mapped_column(String(4096), default="")
    # docker tasks: the organization whose node runs it, its input and its result (each
    # sealed in an encrypted collaboration: the hub keeps ciphertext only)
    organization_id: Mapped[str | None] = mapped_column(ID)
    input: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=500)
    size: Mapped[int] = mapped_column(BigInteger, default=-1)
    transferred: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes, transfer tasks
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    bucket_id: Mapped[str | None] = mapped_column(ID, index=True)
    client_id: Mapped[str | None] = mapped_column(ID)
    lane_id: Mapped[str | None] = mapped_column(ID)
    abort_to: Mapped[str | None] = mapped_column(String(16))  # status once the agent killed it
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")
    log_tail: Mapped[str] = mapped_column(Text, default="")
    has_log: Mapped[bool] = mapped_column(Boolean, default=False)
    cpu_seconds: Mapped[float | None] = mapped_column(Float)
    peak_memory: Mapped[int | None] = mapped_column(BigInteger)
    time: Mapped[int | None] = mapped_column(BigInteger)  # ms of the whole bucket (jobs.rst)
    # what a compute task's progress lines said (issue 18): its latest progress (0-100) and
    # stage, and the outputs it named (null: nothing said)
    progress: Mapped[float | None] = mapped_column(Float)
    stage: Mapped[str | None] = mapped_column(String(255))
    outputs: Mapped[list[str] | None] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started: Mapped[datetime | None] = mapped_column(DateTime)
    finished: Mapped[datetime | None] = mapped_column(DateTime)


class Bucket(Base):
    """Tasks of one job leased together to one lane, run one after the other."""

    __tablename__ = "buckets"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(ID, index=True)
    lane_id: Mapped[str | None] = mapped_column(ID)
    status: Mapped[str] = mapped_column(String(16), index=True)  # leased, done, lost, returned
    leased_until: Mapped[datetime] = mapped_column(DateTime, index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started: Mapped[datetime | None] = mapped_column(DateTime)
    ended: Mapped[datetime | None] = mapped_column(DateTime)
    time: Mapped[int | None] = mapped_column(BigInteger)  # ms, dispatch to last report
    # the tasks leased in it: a run's log is taken only for a task that ran here (None:
    # a bucket from before this was kept)
    task_ids: Mapped[list[str] | None] = mapped_column(JSON)


class ReportKey(Base):
    """Idempotency keys of agent reports already applied: each the reporting client's own,
    within one of its buckets (another agent cannot spend them)."""

    __tablename__ = "report_keys"
    client_id: Mapped[str] = mapped_column(ID, primary_key=True)
    bucket_id: Mapped[str] = mapped_column(ID, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    received: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class Webhook(Base):
    """Where the hub POSTs an organization's events (issue 19): ``events`` names which
    (``job.done``, …). ``secret`` signs each body (HMAC-SHA256); it is never shown after
    the record's creation."""

    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), default="")
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # null only once its organization is deleted
    organization_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("organizations.id", ondelete="SET NULL"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modifier: Mapped[str | None] = mapped_column(ID)


class WebhookDelivery(Base):
    """One event for one webhook: the outbox row written in the transaction of the change
    it tells of, then its delivery log. ``status`` pending (``next_at``: when it is tried
    next, or when a hub process's claim on it lapses), delivered or failed (attempts used
    up). ``body`` is the exact JSON sent, signed at each attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    webhook_id: Mapped[str] = mapped_column(
        ID, ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)  # the last attempt's answer
    error: Mapped[str] = mapped_column(Text, default="")  # the last attempt's, if it failed
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    delivered: Mapped[datetime | None] = mapped_column(DateTime)  # or failed for good
