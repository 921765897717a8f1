"""The agent's connection to its hub: auth, retries, errors.

Retries follow one rule: 429, 5xx, undecodable answers and connection
errors are retried with jittered exponential backoff (honouring
``Retry-After``); 401 re-enrolls once with the node key; any other 4xx is
the agent's own mistake and is raised, not retried.

With several hubs (``agent/hubs.py``) the client talks to one at a time: a
hub it cannot reach ``FAILOVER_AFTER`` times in a row is unavailable, and
the next one takes over (the agent enrolls there). While it is not on the
first hub it asks the first, every ``failback_interval`` seconds, whether it
answers again, and goes back to it when it does.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgspec
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never
from tenacity.stop import stop_after_attempt, stop_base
from tenacity.wait import wait_base, wait_random_exponential

from agent.hubs import HubTarget
from core.errors import ApiError, EnrollmentError, HubError
from core.version import VERSION
from protocol import (
    API_PREFIX,
    CheckinRequest,
    CheckinResponse,
    EnrollRequest,
    EnrollResponse,
    routes,
)
from protocol.http import parse_retry_after
from protocol.routes import Endpoint, Nothing

log = structlog.get_logger("agent.hub")
T = TypeVar("T")
Req = TypeVar("Req")
Ans = TypeVar("Ans")
FAILOVER_AFTER = 2  # transport failures in a row that make a hub unavailable


class Retryable(HubError):
    """A failure worth trying again: the hub is down, busy or confused. A ``HubError`` like
    ``ApiError`` (the hub's answer was no): both are what talking to the hub can end in."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _raise_for(resp: aiohttp.ClientResponse, raw: bytes) -> None:
    """A 429 or 5xx is worth another try (after its Retry-After); another 4xx is not."""
    if resp.status == 429 or resp.status >= 500:
        raise Retryable(f"hub answered {resp.status}",
                        parse_retry_after(resp.headers.get("Retry-After")))
    if resp.status >= 400:
        raise _api_error(resp.status, raw)


def _api_error(status: int, raw: bytes) -> ApiError:
    code, message = "http_error", raw[:200].decode("utf-8", "replace")
    try:
        detail = msgspec.json.decode(raw)["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except Exception:
        pass
    return ApiError(status, code, message)


class RetryAfterWait(wait_base):
    """``Retry-After`` when the hub sent one, else full-jitter exponential backoff."""

    def __init__(self, max_delay: float) -> None:
        self._backoff = wait_random_exponential(multiplier=0.5, max=max_delay)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            return exc.retry_after + random.uniform(0, 0.1 * max(exc.retry_after, 1.0))
        return float(self._backoff(retry_state))


class HubClient:
    """Talks to a hub (one of ``hubs``, in order of preference). ``enroll_request``
    builds the enroll body when needed. The hooks, all called on the event loop:
    ``on_enrolled`` with each enrollment's answer, ``on_retry`` with the error before a
    retry, ``on_status`` when a hub answered or not, ``on_switch`` with the hub that
    takes over."""

    def __init__(self, hubs: str | list[HubTarget], enroll_request: Callable[[], EnrollRequest],
                 *, retry_max_delay: float = 30.0, request_timeout: float = 30.0,
                 failback_interval: float = 10.0,
                 on_enrolled: Callable[[EnrollResponse], None] | None = None,
                 on_retry: Callable[[str], None] | None = None,
                 on_status: Callable[[HubTarget, bool], None] | None = None,
                 on_switch: Callable[[HubTarget], None] | None = None) -> None:
        self.hubs = [HubTarget(hubs.rstrip("/"))] if isinstance(hubs, str) else list(hubs)
        if not self.hubs:
            raise ValueError("no hub to talk to")
        self.current = 0  # index in hubs
        self.failback_interval = failback_interval
        self._failures = 0  # transport failures in a row, at the current hub
        self._last_probe = time.monotonic()
        self.on_switch = on_switch
        self.on_status = on_status
        self._enroll_request = enroll_request
        self._retry_max_delay = retry_max_delay
        self.request_timeout = request_timeout
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()
        self.client_id: str | None = None
        self.on_enrolled = on_enrolled
        self.on_retry = on_retry
        self.in_flight = 0  # requests on the wire now (not waiting between retries)

    def _log_retry(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
        log.warning("hub request failed, retrying", error=str(exc),
                    attempt=retry_state.attempt_number, retry_in=round(delay, 2))
        if self.on_retry is not None:
            self.on_retry(str(exc))

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"User-Agent": f"ferry-agent/{VERSION}"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def base_url(self) -> str:
        return self.hubs[self.current].url

    @property
    def target(self) -> HubTarget:
        return self.hubs[self.current]

    def _url(self, path: str) -> str:
        return f"{self.base_url}{API_PREFIX}{path}"

    # -- failover
    def _reached(self, target: HubTarget) -> None:
        if target is self.target:
            self._failures = 0
        if self.on_status is not None:
            self.on_status(target, True)

    def _unreachable(self, exc: BaseException, failed: HubTarget) -> Retryable:
        """A transport failure at ``failed``; when it is the current hub, the next takes
        over once it is unavailable (a request still out to a hub already left counts
        for nothing). The Retryable to raise."""
        error = Retryable(f"cannot reach hub at {failed.url}: {exc or type(exc).__name__}")
        if failed is not self.target:
            return error
        self._failures += 1
        if self.on_status is not None:
            self.on_status(failed, False)
        if self._failures >= FAILOVER_AFTER and len(self.hubs) > 1:
            self._switch((self.current + 1) % len(self.hubs),
                         f"hub {failed.label} is unavailable")
        return error

    def _switch(self, index: int, why: str) -> None:
        previous, self.current = self.target, index
        self._failures = 0
        self._token = None  # the next request enrolls there
        self._last_probe = time.monotonic()
        log.warning(f"{why}; switching to {self.target.label}", previous=previous.url,
                    hub=self.target.url)
        if self.on_switch is not None:
            self.on_switch(self.target)

    async def _maybe_fail_back(self) -> None:
        """Not on the first hub: every ``failback_interval``, ask it whether it is back."""
        if self.current == 0 or time.monotonic() - self._last_probe < self.failback_interval:
            return
        self._last_probe = time.monotonic()
        first = self.hubs[0]
        try:
            async with self.session.get(f"{first.url}{API_PREFIX}{routes.VERSION.path}",
                                        timeout=aiohttp.ClientTimeout(total=3)) as resp:
                back = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            back = False
        if self.on_status is not None:
            self.on_status(first, back)
        if back:
            self._switch(0, f"hub {first.label} answers again")

    async def _once(self, method: str, path: str, body: Any, kind: type[T],
                    token: str | None) -> T:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = msgspec.json.encode(body) if body is not None else None
        target = self.target
        self.in_flight += 1
        try:
            async with self.session.request(method, self._url(path), data=data,
                                            headers=headers) as resp:
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(exc, target) from None
        finally:
            self.in_flight -= 1
        self._reached(target)
        _raise_for(resp, raw)
        try:
            return msgspec.json.decode(raw, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Retryable(f"hub sent an answer the agent cannot read: {exc}") from None

    async def request(self, method: str, path: str, body: Any, kind: type[T], *,
                      attempts: int | None = None) -> T:
        """Call the hub as this client, retrying as the module says.

        ``attempts`` bounds the tries (None: until it works or the task is cancelled).
        """
        stop: stop_base = stop_never if attempts is None else stop_after_attempt(attempts)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, Retryable)),
            wait=RetryAfterWait(self._retry_max_delay),
            stop=stop,
            before_sleep=self._log_retry,
            reraise=True,
        ):
            with attempt:
                return await self._authorized(method, path, body, kind)
        raise AssertionError("unreachable")  # pragma: no cover

    async def call(self, endpoint: Endpoint[Req, Ans], body: Req, *,
                   attempts: int | None = None) -> Ans:
        """Call one of the hub's endpoints (``protocol.routes``) as this client, retrying as
        the module says; the answer comes back as the endpoint's answer type."""
        return await self.request(endpoint.method, endpoint.path,
                                  None if isinstance(body, Nothing) else body, endpoint.answer,
                                  attempts=attempts)

    async def _authorized(self, method: str, path: str, body: Any, kind: type[T]) -> T:
        await self._maybe_fail_back()
        token = self._token or await self._enroll(None)
        try:
            return await self._once(method, path, body, kind, token)
        except ApiError as exc:
            if exc.status != 401:
                raise
            log.info("hub refused our token, enrolling again", reason=exc.message)
            return await self._once(method, path, body, kind, await self._enroll(token))

    async def _enroll(self, stale: str | None) -> str:
        async with self._auth_lock:
            if self._token is not None and self._token != stale:
                return self._token  # another task enrolled meanwhile
            try:
                answer = await self._once(routes.ENROLL.method, routes.ENROLL.path,
                                          self._enroll_request(),
                                          routes.ENROLL.answer, None)
            except ApiError as exc:
                if exc.status in (401, 403, 409, 422):
                    raise EnrollmentError(f"the hub refused to enroll this agent: "
                                          f"{exc.message}") from None
                raise
            self._token = answer.token
            self.client_id = answer.client_id
            log.info("enrolled", client_id=answer.client_id, hub=self.base_url)
            if self.on_enrolled is not None:
                self.on_enrolled(answer)
            return answer.token

    async def enroll(self) -> None:
        """Enroll now (retrying while the hub is unreachable)."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, Retryable)),
            wait=RetryAfterWait(self._retry_max_delay), stop=stop_never,
            before_sleep=self._log_retry, reraise=True,
        ):
            with attempt:
                await self._enroll(self._token)

    async def upload(self, endpoint: Endpoint[bytes, Any], file: Path, query: dict[str, str],
                     **params: str) -> None:
        """Stream a file as the body of ``endpoint`` (its path ``params`` filled in, ``query``
        added), with the same retries as ``call``."""
        path = endpoint.at(**params)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, Retryable)),
            wait=RetryAfterWait(self._retry_max_delay), stop=stop_never,
            before_sleep=self._log_retry, reraise=True,
        ):
            with attempt:
                await self._maybe_fail_back()
                token = self._token or await self._enroll(None)
                try:
                    await self._stream(path, file, query, token)
                except ApiError as exc:
                    if exc.status != 401:
                        raise
                    await self._stream(path, file, query, await self._enroll(token))

    async def _stream(self, path: str, file: Path, params: dict[str, str], token: str) -> None:
        headers = {"Authorization": f"Bearer {token}",
                   "Content-Type": "text/plain; charset=utf-8"}
        target = self.target
        self.in_flight += 1
        try:
            with open(file, "rb") as body:  # noqa: ASYNC230 - aiohttp reads it in a thread
                async with self.session.post(self._url(path), data=body, params=params,
                                             headers=headers) as resp:
                    raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(exc, target) from None
        finally:
            self.in_flight -= 1
        self._reached(target)
        _raise_for(resp, raw)

    async def checkin(self, body: CheckinRequest) -> CheckinResponse:
        return await self.call(routes.CHECKIN, body)

    async def goodbye(self) -> None:
        """Tell the hub we are stopping; one quick try, failure is fine."""
        if self._token is None:
            return
        try:
            await asyncio.wait_for(self._once(routes.GOODBYE.method, routes.GOODBYE.path, None,
                                              routes.GOODBYE.answer, self._token),
                                   timeout=3)
        except (Retryable, ApiError, TimeoutError) as exc:
            log.info("goodbye not delivered", error=str(exc))
