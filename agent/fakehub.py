"""A hub in a box: an in-process HTTP server that answers the agent's endpoints.

Fast tests of the agent's loops (check-in, claim, heartbeat, outbox, failover, drain) run a
real agent against a :class:`FakeHub` in the same event loop, instead of a hub process with
a database. It is built on the same typed table as the real hub (``protocol.routes``): it
serves exactly those endpoints, decodes each request with its request type (an unknown or
malformed field is a 400, as at the hub), encodes each answer with its answer type, and
answers errors in the hub's shape (``{"error": {"code", "message"}}``). What it keeps is in
memory and open to the test: the agents it enrolled, their check-ins, the buckets it leased,
the reports it applied (once per key, as the hub does) and every request in order.

A test scripts it::

    async with FakeHub(api_keys={"node-key-0123"}) as hub:
        bucket = hub.lease(["true"], ["false"])        # a compute bucket of two tasks
        ...run an agent with hub.url...
        await hub.wait_for(lambda: hub.task_events(bucket) == {...})
        hub.fail(routes.REPORT, status=503, times=2)  # the next two reports fail
        hub.abort("t2")                                # the next heartbeat aborts task t2

It is not a hub: no database, no permissions, no jobs. Leases never expire on their own and
nothing is retried for the agent; tests say what should happen next.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from core.version import VERSION as FERRY_VERSION
from protocol import API_PREFIX, PROTOCOL_VERSION, ClientStatus
from protocol import routes as r
from protocol.models import (
    CheckinRequest,
    CheckinResponse,
    EnrollRequest,
    EnrollResponse,
    OrganizationKeyRequest,
)
from protocol.routes import AGENT_ENDPOINTS, Endpoint
from protocol.work import (
    BucketKind,
    BucketReport,
    BucketWork,
    ClaimRequest,
    ClaimResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    ReportRequest,
    ReportResponse,
    ReportResult,
    ResetRequest,
    ResetResponse,
    TaskReport,
    TaskWork,
)

Handler = Callable[[Any, "Caller"], Any]


@dataclass(frozen=True)
class Caller:
    """Who made a request: the client its token names (None before enrollment)."""

    client_id: str | None
    token: str | None


@dataclass
class Enrolled:
    """An agent the fake hub enrolled."""

    client_id: str
    request: EnrollRequest
    lanes: list[str]
    token: str


@dataclass
class Fault:
    status: int
    times: int
    retry_after: float | None = None
    code: str = "unavailable"


@dataclass
class FakeHub:
    """The agent's side of a hub, in memory; see the module's docstring."""

    api_keys: set[str] = field(default_factory=lambda: {"node-key-0123456789"})
    checkin_interval: float = 0.2
    heartbeat_interval: float = 0.2
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.url = ""
        self.enrolled: dict[str, Enrolled] = {}  # client id -> agent
        self.checkins: list[tuple[str, CheckinRequest]] = []
        self.requests: list[tuple[str, Caller]] = []  # (endpoint name, caller), in order
        self.reports: dict[str, TaskReport | BucketReport] = {}  # key -> report
        self.resets: list[tuple[str, ResetRequest]] = []
        self.heartbeats: list[tuple[str, HeartbeatRequest]] = []
        self.speed_limits: dict[str, int] = {}  # job id -> bytes/s heartbeats carry
        self.logs: dict[str, bytes] = {}  # task id -> whole log uploaded
        self.organization_key = ""
        self.handlers: dict[str, Handler] = {}
        self._queue: list[BucketWork] = []
        self.leased: dict[str, BucketWork] = {}  # bucket id -> bucket, while leased
        self._lost: set[str] = set()
        self._aborts: set[str] = set()
        self._faults: dict[str, Fault] = {}
        self._changed = asyncio.Event()
        self._ids = itertools.count(1)
        # ids differ between fake hubs, as a real hub's are unique: a lane kills a task's
        # whole tree by the task id marked in its environment, so two tests at once must
        # not share one
        self._id_prefix = secrets.token_hex(3)
        self._tokens: dict[str, str] = {}  # token -> client id
        self._runner: web.AppRunner | None = None
        for endpoint in AGENT_ENDPOINTS:
            self.handlers[endpoint.name] = getattr(self, f"_{endpoint.name}")

    # -- running
    async def __aenter__(self) -> FakeHub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        for endpoint in AGENT_ENDPOINTS:
            app.router.add_route(endpoint.method, API_PREFIX + endpoint.path,
                                 self._route(endpoint))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        self.url = f"http://{self.host}:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        """Stop answering (connections are refused from now on: a hub that is down)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- what a test scripts
    def lease(self, *argvs: list[str], kind: BucketKind = BucketKind.COMPUTE,
              timeout: float | None = None, attempt: int = 1,
              tasks: list[TaskWork] | None = None) -> BucketWork:
        """Queue a bucket for the next claim with a free lane: one task per argv (or
        ``tasks`` as given). Returns the bucket (its ``lane_id`` is set when leased)."""
        number = f"{self._id_prefix}-{next(self._ids)}"  # unique on the machine, as the hub's
        work = tasks if tasks is not None else [
            TaskWork(id=f"t{number}.{i}", uri=f"task/t{number}.{i}", item=str(i), argv=argv,
                     attempt=attempt) for i, argv in enumerate(argvs, 1)]
        bucket = BucketWork(id=f"b{number}", job_id=f"j{number}", lane_id="", tasks=work,
                            timeout=timeout, grace=1.0, kind=kind)
        self._queue.append(bucket)
        self._poke()
        return bucket

    def fail(self, endpoint: Endpoint[Any, Any], status: int = 503, *, times: int = 1,
             retry_after: float | None = None, code: str = "unavailable") -> None:
        """The next ``times`` calls of ``endpoint`` answer ``status`` (with Retry-After)."""
        self._faults[endpoint.name] = Fault(status, times, retry_after, code)

    def revoke(self, client_id: str) -> None:
        """Forget the client's tokens: its next request is answered 401 (it enrolls again)."""
        self._tokens = {t: c for t, c in self._tokens.items() if c != client_id}

    def lose(self, bucket_id: str) -> None:
        """The next heartbeat tells the agent this bucket is no longer its own."""
        self._lost.add(bucket_id)

    def abort(self, task_id: str) -> None:
        """The next heartbeat tells the agent to kill this task."""
        self._aborts.add(task_id)

    def calls(self, endpoint: Endpoint[Any, Any]) -> int:
        return sum(1 for name, _ in self.requests if name == endpoint.name)

    def task_events(self, bucket: BucketWork | str) -> dict[str, list[str]]:
        """Task id -> its events in the order the reports were applied."""
        bucket_id = bucket if isinstance(bucket, str) else bucket.id
        events: dict[str, list[str]] = {}
        for report in self.reports.values():
            if isinstance(report, TaskReport) and report.bucket_id == bucket_id:
                events.setdefault(report.task_id, []).append(report.event)
        return events

    def task_report(self, task_id: str, event: str) -> TaskReport:
        for report in self.reports.values():
            if isinstance(report, TaskReport) and (report.task_id, report.event) == (task_id,
                                                                                     event):
                return report
        raise KeyError(f"no {event!r} report for task {task_id}")

    def bucket_reports(self, bucket: BucketWork | str) -> list[BucketReport]:
        bucket_id = bucket if isinstance(bucket, str) else bucket.id
        return [rep for rep in self.reports.values()
                if isinstance(rep, BucketReport) and rep.bucket_id == bucket_id]

    async def wait_for(self, condition: Callable[[], bool], within: float = 20.0) -> None:
        """Until ``condition()`` holds after a request; TimeoutError saying what was seen."""
        deadline = time.monotonic() + within
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [name for name, _ in self.requests[-20:]]
                raise TimeoutError(f"fake hub: condition not met in {within} s; the last "
                                   f"requests: {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    # -- serving
    def _poke(self) -> None:
        self._changed.set()

    def _route(self, endpoint: Endpoint[Any, Any]) -> Callable[[web.Request],
                                                              Any]:
        async def serve(request: web.Request) -> web.Response:
            caller = self._caller(request)
            self.requests.append((endpoint.name, caller))
            try:
                fault = self._faults.get(endpoint.name)
                if fault is not None and fault.times > 0:
                    fault.times -= 1
                    headers = ({"Retry-After": str(fault.retry_after)}
                               if fault.retry_after is not None else None)
                    return _error(fault.status, fault.code, f"{endpoint.name} failed on purpose",
                                  headers)
                if endpoint.auth is not None and caller.client_id is None:
                    return _error(401, "unauthorized", "missing or expired token")
                body: Any = await request.read()
                if endpoint.request is not bytes:
                    try:
                        body = (msgspec.json.decode(body, type=endpoint.request) if body
                                else endpoint.request())
                    except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
                        return _error(400, "invalid_body", str(exc))
                if endpoint is r.UPLOAD_LOG:
                    body = (request.match_info["task"], body)
                answer = await self._answer(self.handlers[endpoint.name], body, caller)
                if isinstance(answer, web.Response):
                    return answer
                return web.Response(body=msgspec.json.encode(answer),
                                    content_type="application/json")
            finally:
                self._poke()

        return serve

    @staticmethod
    async def _answer(handler: Handler, body: Any, caller: Caller) -> Any:
        answer = handler(body, caller)
        return await answer if asyncio.iscoroutine(answer) else answer

    def _caller(self, request: web.Request) -> Caller:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        return Caller(self._tokens.get(token) if token else None, token)

    # -- the default answers: what a hub would say
    def _version(self, _body: Any, _caller: Caller) -> r.Version:
        return r.Version(version=FERRY_VERSION, protocol=PROTOCOL_VERSION)

    def _token(self, _body: Any, _caller: Caller) -> web.Response:
        return _error(401, "unauthorized", "the fake hub has no users")

    def _enroll(self, body: EnrollRequest, _caller: Caller) -> EnrollResponse | web.Response:
        if body.api_key not in self.api_keys:
            return _error(401, "unauthorized", "unknown API key")
        known = next((a for a in self.enrolled.values()
                      if a.request.machine_id == body.machine_id), None)
        client_id = known.client_id if known else f"c{self._id_prefix}-{next(self._ids)}"
        lanes = known.lanes if known else [f"{client_id}-lane{i}" for i in range(body.lanes)]
        token = f"token-{client_id}-{next(self._ids)}"
        self._tokens[token] = client_id
        self.enrolled[client_id] = Enrolled(client_id, body, lanes, token)
        return EnrollResponse(client_id=client_id, token=token, expires=_iso(3600),
                              checkin_interval=self.checkin_interval,
                              status=ClientStatus.ONLINE, lanes=lanes,
                              organization_key=self.organization_key)

    def _checkin(self, body: CheckinRequest, caller: Caller) -> CheckinResponse:
        assert caller.client_id is not None
        self.checkins.append((caller.client_id, body))
        return CheckinResponse(client_id=caller.client_id, status=ClientStatus.ONLINE,
                               checkin_interval=self.checkin_interval, server_time=_iso(0))

    def _goodbye(self, _body: Any, caller: Caller) -> r.Gone:
        assert caller.client_id is not None
        return r.Gone(client_id=caller.client_id, status="offline")

    def _organization_key(self, body: OrganizationKeyRequest, _caller: Caller) -> Any:
        if self.organization_key and self.organization_key != body.public_key:
            return _error(409, "conflict", "the organization has another key")
        self.organization_key = body.public_key
        return r.KeyPublished(success=True, organization="o1")

    async def _claim(self, body: ClaimRequest, caller: Caller) -> ClaimResponse:
        deadline = time.monotonic() + body.wait
        while True:
            given = self._take(body)
            if given or time.monotonic() >= deadline:
                return ClaimResponse(buckets=given, heartbeat_interval=self.heartbeat_interval)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())

    def _take(self, body: ClaimRequest) -> list[BucketWork]:
        lanes, slots, docker = list(body.lanes), body.slots, body.docker
        given = []
        for bucket in list(self._queue):
            if bucket.kind == BucketKind.COMPUTE and lanes:
                lane = lanes.pop(0)
            elif bucket.kind == BucketKind.TRANSFER and slots > 0:
                slots, lane = slots - 1, ""
            elif bucket.kind == BucketKind.DOCKER and docker > 0:
                docker, lane = docker - 1, ""
            else:
                continue
            self._queue.remove(bucket)
            leased = msgspec.structs.replace(bucket, lane_id=lane, leased_until=_iso(60))
            self.leased[leased.id] = leased
            given.append(leased)
        return given

    def _heartbeat(self, body: HeartbeatRequest, caller: Caller) -> HeartbeatResponse:
        assert caller.client_id is not None
        self.heartbeats.append((caller.client_id, body))
        lost = sorted(b for b in body.buckets if b in self._lost or b not in self.leased)
        self._lost -= set(lost)
        held = {t.id for b in body.buckets if b in self.leased for t in self.leased[b].tasks}
        abort = sorted(self._aborts & held)
        self._aborts -= set(abort)
        jobs = {self.leased[b].job_id for b in body.buckets if b in self.leased}
        return HeartbeatResponse(lost=lost, abort=abort, paused=[],
                                 heartbeat_interval=self.heartbeat_interval,
                                 speed_limits={j: v for j, v in self.speed_limits.items()
                                               if j in jobs})

    def _report(self, body: ReportRequest, _caller: Caller) -> ReportResponse:
        results = []
        for item in body.items:
            if item.key in self.reports:
                results.append(ReportResult(key=item.key, outcome="duplicate"))
                continue
            self.reports[item.key] = item
            if isinstance(item, BucketReport):
                self.leased.pop(item.bucket_id, None)
            results.append(ReportResult(key=item.key, outcome="applied"))
        return ReportResponse(results=results)

    def _reset(self, body: ResetRequest, caller: Caller) -> ResetResponse:
        assert caller.client_id is not None
        self.resets.append((caller.client_id, body))
        released = [b for b in self.leased if b not in body.keep]
        for bucket_id in released:
            self.leased.pop(bucket_id)
        return ResetResponse(released=len(released))

    def _upload_log(self, body: tuple[str, bytes], _caller: Caller) -> r.LogStored:
        task_id, data = body
        self.logs[task_id] = data
        return r.LogStored(task_id=task_id, bytes=len(data), kept=len(data))


def _error(status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers, content_type="application/json",
                        body=msgspec.json.encode({"error": {"code": code, "message": message}}))


def _iso(seconds_from_now: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).isoformat()
