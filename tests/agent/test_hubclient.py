"""The agent's retry rules, against a small scripted hub in this process.

Which answers are retried is protocol behaviour the real hub cannot be made
to show on demand (a 503, a 429 with Retry-After), so a fake coordinator
stands in here, as in buildkite-agent's tests.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tenacity import RetryCallState

from agent.hubclient import HubClient, Retryable, RetryAfterWait
from core.errors import ApiError, EnrollmentError
from protocol import CheckinRequest, EnrollRequest, Metrics
from protocol.http import parse_retry_after

METRICS = Metrics(c=2, l=1.0, m=2.0, mpf=1, mpt=2, mvf=0, mvt=0)
ENROLLED = {"client_id": "c1", "token": "t1", "expires": "2030-01-01T00:00:00Z",
            "checkin_interval": 1.0, "status": "online"}
CHECKED_IN = {"client_id": "c1", "status": "online", "checkin_interval": 1.0,
              "server_time": "2030-01-01T00:00:00Z"}


class Script:
    """Answers, in order, per path; records what arrived."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Callable[[], web.Response]]] = {}
        self.seen: list[tuple[str, str | None]] = []

    def on(self, path: str, *answers: Callable[[], web.Response]) -> None:
        self.answers.setdefault(path, []).extend(answers)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, request.headers.get("Authorization")))
        queue = self.answers.get(request.path)
        if not queue:
            return web.json_response({"error": {"code": "x", "message": "unscripted"}},
                                     status=500)
        return queue.pop(0)()


def ok(body: dict[str, Any]) -> Callable[[], web.Response]:
    return lambda: web.json_response(body)


def fail(status: int, headers: dict[str, str] | None = None,
         code: str = "err") -> Callable[[], web.Response]:
    return lambda: web.json_response({"error": {"code": code, "message": f"status {status}"}},
                                     status=status, headers=headers)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[Script, HubClient]]:
    script = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = HubClient(str(server.make_url("")), lambda: EnrollRequest(
        api_key="fk_test_key", machine_id="machine-1", code="host"), retry_max_delay=0.05)
    yield script, client
    await client.close()
    await server.close()


def paths(script: Script) -> list[str]:
    return [p.removeprefix("/api/v1") for p, _ in script.seen]


async def test_5xx_and_429_are_retried_until_success(fake: tuple[Script, HubClient]) -> None:
    script, client = fake
    script.on("/api/v1/agent/enroll", ok(ENROLLED))
    script.on("/api/v1/agent/checkin", fail(503), fail(429, {"Retry-After": "0"}), fail(500),
              ok(CHECKED_IN))
    answer = await client.checkin(CheckinRequest(metrics=METRICS))
    assert answer.client_id == "c1"
    assert paths(script) == ["/agent/enroll"] + ["/agent/checkin"] * 4
    assert all(auth == "Bearer t1" for p, auth in script.seen[1:])


async def test_other_4xx_is_not_retried(fake: tuple[Script, HubClient]) -> None:
    script, client = fake
    script.on("/api/v1/agent/enroll", ok(ENROLLED))
    script.on("/api/v1/agent/checkin", fail(422, code="invalid_body"), ok(CHECKED_IN))
    with pytest.raises(ApiError) as info:
        await client.checkin(CheckinRequest(metrics=METRICS))
    assert (info.value.status, info.value.code) == (422, "invalid_body")
    assert paths(script) == ["/agent/enroll", "/agent/checkin"]


async def test_401_enrolls_again_once(fake: tuple[Script, HubClient]) -> None:
    script, client = fake
    script.on("/api/v1/agent/enroll", ok(ENROLLED), ok({**ENROLLED, "token": "t2"}))
    script.on("/api/v1/agent/checkin", fail(401, code="token_expired"), ok(CHECKED_IN))
    await client.checkin(CheckinRequest(metrics=METRICS))
    assert paths(script) == ["/agent/enroll", "/agent/checkin", "/agent/enroll", "/agent/checkin"]
    assert script.seen[-1][1] == "Bearer t2"


async def test_refused_enrollment_is_fatal(fake: tuple[Script, HubClient]) -> None:
    script, client = fake
    script.on("/api/v1/agent/enroll", fail(401, code="enroll_refused"))
    with pytest.raises(EnrollmentError, match="refused to enroll"):
        await client.checkin(CheckinRequest(metrics=METRICS))
    assert paths(script) == ["/agent/enroll"]


async def test_undecodable_answer_is_retried(fake: tuple[Script, HubClient]) -> None:
    script, client = fake
    script.on("/api/v1/agent/enroll", ok(ENROLLED))
    script.on("/api/v1/agent/checkin", lambda: web.Response(text="<html>proxy</html>"),
              ok(CHECKED_IN))
    await client.checkin(CheckinRequest(metrics=METRICS))
    assert paths(script).count("/agent/checkin") == 2


async def test_connection_errors_are_retried_then_given_up_when_bounded() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    errors: list[str] = []
    client = HubClient(f"http://127.0.0.1:{port}", lambda: EnrollRequest(
        api_key="fk_test_key", machine_id="machine-1", code="host"), retry_max_delay=0.01,
        on_retry=errors.append)
    try:
        with pytest.raises(Retryable, match="cannot reach hub"):
            await client.request("POST", "/agent/checkin", CheckinRequest(metrics=METRICS), dict,
                                 attempts=3)
    finally:
        await client.close()
    assert len(errors) == 2 and "cannot reach hub" in errors[0]


def _state(exc: BaseException, attempt: int = 1) -> RetryCallState:
    from tenacity import Future

    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    future: Future = Future(attempt)
    future.set_exception(exc)
    state.outcome = future
    return state


def test_wait_honours_retry_after_and_backs_off_otherwise() -> None:
    wait = RetryAfterWait(max_delay=8)
    assert 30 <= wait(_state(Retryable("busy", retry_after=30))) <= 33
    delays = [wait(_state(Retryable("down"), attempt=n)) for n in range(1, 12)]
    assert all(0 <= d <= 8 for d in delays)


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("100000") == 600  # capped
    when = datetime.now(UTC) + timedelta(seconds=120)
    parsed = parse_retry_after(format_datetime(when, usegmt=True))
    assert parsed is not None and 100 <= parsed <= 121
