"""Talking to one peer's transfer endpoint within limits: the requests, their bounded
answers, and what a peer that breaks them gets.

Every answer is read up to the size expected and within a deadline
(``transports.limits``); a peer past either, or whose answer says what no honest peer
says (``transports.answers``), is counted as a refusal (``core.refusals``,
``transfer_peer``) and the transfer fails at once with what it did wrong (``PeerLied``),
never retried. Dropped connections are retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Self

import aiohttp
import msgspec
import structlog

from core.refusals import refused
from protocol.transfer import PREFIX
from transports import answers
from transports.chunks import PeerLied, SourceChanged, TransferError
from transports.limits import ANSWER_BYTES, Limits, Overrun, read_bounded
from transports.tls import pin

log = structlog.get_logger("transports.client")

TRIES = 5  # per chunk request, for dropped connections and damaged chunks


class Peer:
    """Talks to one serving agent's endpoint about one share, with one ticket, holding
    that agent to ``limits``."""

    def __init__(self, base_url: str, fingerprint: str | None, ticket: str, share: str, *,
                 streams: int = 4, session: aiohttp.ClientSession | None = None,
                 backoff: float = 0.5, limits: Limits | None = None) -> None:
        self.url = base_url.rstrip("/")
        self.base = self.url + PREFIX
        self.ssl: Any = pin(fingerprint) if fingerprint else None
        self.headers = {"Authorization": f"Ticket {ticket}"}
        self.share = share
        self.streams = streams
        self.backoff = backoff
        self.limits = limits or Limits()
        self._session = session
        self._own = session is None
        self.retried = 0  # chunk requests made again (damage, dropped connections)

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
                connector=aiohttp.TCPConnector(limit=0))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._own and self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use the client with 'async with'"
        return self._session

    def _lied(self, why: str, kind: type[TransferError] = PeerLied) -> TransferError:
        """The peer broke the protocol or this agent's quotas: counted against it, and the
        transfer's error says what it did."""
        refused("transfer_peer", self.url, why, share=self.share)
        return kind(f"the serving agent at {self.url} {why}")

    @contextlib.contextmanager
    def _checking(self) -> Iterator[None]:
        """Answers checked inside (``transports.answers``): a lie fails the transfer."""
        try:
            yield
        except answers.Lie as exc:
            raise self._lied(str(exc)) from None

    async def _call(self, method: str, endpoint: str, *, params: dict[str, Any],
                    limit: int = ANSWER_BYTES, what: str = "an answer", data: Any = None,
                    headers: dict[str, str] | None = None, idempotent: bool = True,
                    size: int = 0) -> tuple[int, bytearray, Any]:
        """One request, retried on dropped connections; (status, body, response headers).
        The answer is read up to ``limit`` bytes (an error's up to ``ANSWER_BYTES``), and
        the request ends within ``limits.deadline`` of those and the ``size`` bytes it
        sends or makes the peer write: past either, the peer fails the transfer (``what``
        names the answer). A request that must not run twice (it preallocates, syncs or
        renames) is made once."""
        tries = TRIES if idempotent else 1
        timeout = self.session.timeout if idempotent else aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=None)
        seconds = self.limits.deadline(limit + size)
        for attempt in range(tries):
            timer = asyncio.timeout(seconds)
            try:
                async with timer, self.session.request(
                        method, f"{self.base}/{endpoint}", params={"share": self.share, **params},
                        data=data, headers={**self.headers, **(headers or {})},
                        ssl=self.ssl, timeout=timeout) as resp:
                    most = limit if resp.status < 300 else max(limit, ANSWER_BYTES)
                    return resp.status, await read_bounded(resp.content, most,
                                                           resp.content_length), resp.headers
            except Overrun as exc:
                said = f" (it announced {exc.seen})" if exc.seen > exc.limit + 1 else ""
                raise self._lied(f"sent more than {exc.limit} bytes for {what}{said}") from None
            except aiohttp.ServerFingerprintMismatch:
                raise TransferError("the serving agent's certificate is not the one the hub "
                                    "knows (fingerprint mismatch)") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                if timer.expired():
                    raise self._lied(f"took more than {seconds:.0f} s over {what}: slower than "
                                     f"{self.limits.min_rate} bytes/s (transfer_min_rate)"
                                     ) from None
                if attempt == tries - 1:
                    raise TransferError(f"cannot reach the serving agent: {exc}") from None
                log.info("request failed; making it again", request=endpoint,
                         error=str(exc) or type(exc).__name__, attempt=attempt + 1)
                self.retried += 1
                await asyncio.sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _raise(status: int, body: bytes | bytearray) -> None:
        if status < 400:
            return
        try:
            error = msgspec.json.decode(body)["error"]
            code, message = str(error["code"])[:80], str(error["message"])[:1000]
        except Exception:
            code, message = "http_error", bytes(body[:200]).decode("utf-8", "replace")
        if code == "source_changed":
            raise SourceChanged(message)
        raise TransferError(f"the serving agent refused ({status} {code}): {message}")

    async def _workers(self, todo: asyncio.Queue[int], one: Callable[[int], Any],
                       streams: int) -> None:
        async def worker() -> None:
            while True:
                try:
                    index = todo.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await one(index)

        tasks = [asyncio.create_task(worker()) for _ in range(max(1, streams))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
