"""What agents and the hub exchange about work: claims, buckets and their tasks,
heartbeats, resets and reports (enrollment, check-ins and errors are in ``models``)."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec

from protocol.docker import MAX_RESULT, DockerWork
from protocol.models import Struct


class BucketKind(enum.StrEnum):
    """What the tasks of a bucket are, and so which runner of the agent takes it.

    The hub's job kinds map one to one: a compute job's buckets are compute buckets, and so on.
    """

    COMPUTE = "compute"  # commands, run in compute lanes
    TRANSFER = "transfer"  # files moved between agents' shares
    DOCKER = "docker"  # algorithm runs in containers


class TransferWork(Struct, frozen=True):
    """A transfer task as the receiving agent runs it: pull ``path`` (a file or a folder) of
    share ``share`` from the agent at ``url`` (pinning ``fingerprint``) with ``ticket``, into
    its own share ``dest_share`` at ``dest_path`` (inside that folder when ``into_folder``)."""

    url: str
    fingerprint: str
    share: str
    path: str
    ticket: str
    dest_share: str
    dest_path: str
    into_folder: bool
    streams: int = 4
    dest_root: str = ""  # the destination share's folder, as the hub has it
    # push: this agent serves the source (``source_root``) and sends to the destination's
    # agent at ``url``, whose ``dest_share`` the ticket lets it write
    direction: str = "pull"
    source_root: str = ""
    # bytes, as the hub last heard them (from an earlier attempt): the agent does not rely
    # on them, and hubs from before always send them
    size: int = -1
    # bytes a second the job's streams on this agent move at most together (0: no limit);
    # heartbeat answers carry its changes (``HeartbeatResponse.speed_limits``)
    speed_limit: int = 0
    # a frame sequence (``protocol.sequences``): ``path`` is its folder, ``sequence`` the
    # file name pattern, ``frames`` the range ("": the frames there), ``missing_frames``
    # "list" (reported) or "fail" (the task fails, naming them)
    sequence: str = ""
    frames: str = ""
    missing_frames: Literal["list", "fail"] = "list"


class TaskWork(Struct, frozen=True):
    """One task as a lane runs it; the hub has already filled in the command."""

    id: str
    uri: str
    item: str
    argv: list[str]
    attempt: int  # 1 for the first try
    transfer: TransferWork | None = None  # a transfer task: no command
    docker: DockerWork | None = None  # a docker task: a container run
    # no retry follows if this one fails: a transfer then leaves no part file behind
    last_attempt: bool = False


class BucketWork(Struct, frozen=True):
    """Tasks of one job leased to one lane, to be run one after the other."""

    id: str
    job_id: str
    lane_id: str
    tasks: list[TaskWork]
    env: dict[str, str] = {}
    cwd: str | None = None
    timeout: float | None = None  # seconds per task
    grace: float = 10.0  # seconds between SIGTERM and SIGKILL
    leased_until: str = ""
    kind: BucketKind = BucketKind.COMPUTE


class ClaimRequest(Struct, frozen=True):
    """Free lanes (compute) and free transfer slots ask for work; the hub answers at once
    or within ``wait`` seconds."""

    lanes: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                     msgspec.Meta(max_length=1024)]
    wait: Annotated[float, msgspec.Meta(ge=0, le=60)] = 20.0
    slots: Annotated[int, msgspec.Meta(ge=0, le=256)] = 0  # free transfer slots
    docker: Annotated[int, msgspec.Meta(ge=0, le=256)] = 0  # free docker slots


class ClaimResponse(Struct, frozen=True):
    buckets: list[BucketWork]
    heartbeat_interval: float


class ResetRequest(Struct, frozen=True):
    """Hand back every lease: ``restarted`` (the work was lost: one attempt spent) or
    ``stopped`` (a drained agent returning what it never started: no attempt spent)."""

    reason: Literal["restarted", "stopped"]
    # buckets the agent still runs: containers a restarted agent adopted (kept, renewed)
    keep: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                    msgspec.Meta(max_length=4096)] = []


class ResetResponse(Struct, frozen=True):
    released: int  # buckets handed back


class Progress(Struct, frozen=True, array_like=True):
    """A running transfer task's bytes: verified so far, and in all."""

    done: Annotated[int, msgspec.Meta(ge=0)]
    size: Annotated[int, msgspec.Meta(ge=0)]


MAX_OUTPUTS = 1000  # output paths a task keeps (``{"output": "path"}`` lines)
MAX_OUTPUT_PATH = 1024  # characters of one
MAX_OUTPUTS_SIZE = 256 * 1024  # UTF-8 bytes of all of a task's output paths together
MAX_STAGE = 255  # characters of a stage's name

Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Stage = Annotated[str, msgspec.Meta(max_length=MAX_STAGE)]
OutputPath = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_OUTPUT_PATH)]
Outputs = Annotated[list[OutputPath], msgspec.Meta(max_length=MAX_OUTPUTS)]


class TaskProgress(Struct, frozen=True):
    """What a running compute task said of itself in progress lines since the last
    heartbeat (``agent/buckets/progress.py``): its latest ``progress`` (0-100) and
    ``stage`` (None: not said), and the ``outputs`` it named (the hub adds those it does
    not hold yet)."""

    progress: Percent | None = None
    stage: Stage | None = None
    outputs: Outputs = []


class HeartbeatRequest(Struct, frozen=True):
    buckets: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                       msgspec.Meta(max_length=4096)]
    progress: Annotated[dict[str, Progress], msgspec.Meta(max_length=4096)] = {}
    # output of running docker runs since the last heartbeat (task id: text; the end of
    # it when there was more than LOG_TAIL_BYTES): the task's log_tail follows it live
    logs: Annotated[dict[str, Annotated[str, msgspec.Meta(max_length=LOG_TAIL_BYTES)]],
                    msgspec.Meta(max_length=256)] = {}
    # what running compute tasks said of their progress (task id: the news); agents from
    # before progress lines send none
    task_progress: Annotated[dict[str, TaskProgress], msgspec.Meta(max_length=256)] = {}


class HeartbeatResponse(Struct, frozen=True):
    """``lost``: buckets no longer ours (stop them). ``abort``: tasks to kill now.
    ``paused``: jobs whose tasks not yet started go back to the hub."""

    lost: list[str]
    abort: list[str]
    paused: list[str]
    heartbeat_interval: float
    # the speed limit (bytes/s, 0: none) of each transfer job the agent holds buckets of:
    # a limit changed while the job runs reaches its streams with the next heartbeat
    speed_limits: dict[str, int] = {}


TaskEvent = Literal["started", "done", "failed", "returned", "aborted"]

LOG_TAIL_BYTES = 4096  # the end of a task's log that its end report carries
MAX_MISSING = 4096  # characters of a sequence's missing frames a report carries


def whole_log_needed(log_size: int, log_tail: str) -> bool:
    """Does a run's log say more than its tail? Then the agent uploads the whole log (and
    the hub shows ``has_log``). The tail is text: bytes that are not UTF-8 come out as
    U+FFFD, so such a log is uploaded too, to keep its bytes; so is one with NUL characters,
    which the hub's tail shows as U+FFFD (PostgreSQL stores no NUL in text)."""
    return log_size > LOG_TAIL_BYTES or "\ufffd" in log_tail or "\x00" in log_tail


class TaskReport(Struct, frozen=True, tag="task", tag_field="kind"):
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    task_id: str
    bucket_id: str
    event: TaskEvent
    at: str  # ISO time of the event
    started: str | None = None
    exit_code: int | None = None
    message: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    log_tail: Annotated[str, msgspec.Meta(max_length=16384)] = ""
    log_size: int = 0  # bytes in the whole log (uploaded when whole_log_needed)
    cpu_seconds: float | None = None
    peak_memory: int | None = None
    size: Annotated[int, msgspec.Meta(ge=0)] | None = None  # a transfer's bytes, when done
    result: Annotated[str, msgspec.Meta(max_length=MAX_RESULT)] | None = None  # docker runs
    # a compute task's progress lines, all of them: the last ``progress`` and ``stage`` it
    # said and every output it named (None: it said none, or an agent from before them)
    progress: Percent | None = None
    stage: Stage | None = None
    outputs: Outputs | None = None
    # a frame sequence's frames missing from its range, as ranges ("1003, 1007-1009";
    # "": none), for the job to list (None: not a sequence)
    missing_frames: Annotated[str, msgspec.Meta(max_length=MAX_MISSING)] | None = None


class BucketReport(Struct, frozen=True, tag="bucket", tag_field="kind"):
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    bucket_id: str
    started: str
    ended: str


Report = TaskReport | BucketReport


class ReportRequest(Struct, frozen=True):
    items: Annotated[list[Report], msgspec.Meta(max_length=5000)]


class ReportResult(Struct, frozen=True):
    key: str
    outcome: Literal["applied", "duplicate", "refused"]
    reason: str = ""


class ReportResponse(Struct, frozen=True):
    results: list[ReportResult]
