"""Talking to one peer's transfer endpoint within limits, from threads with blocking
sockets: the requests, their bounded answers, and what a peer that breaks them gets.

The bytes of a transfer do not go through the event loop. Each request runs on a thread
of its own over a kept-alive connection (``http.client`` on a blocking TLS socket, the
peer's certificate pinned by its fingerprint before a ticket is sent); a chunk's answer
is read straight into a buffer the caller owns (``into``), hashed and written on that
same thread. asyncio only waits for the threads (``Peer.threads``, ``Peer.request``).

Every answer is read up to the size expected and within a deadline
(``transports.limits``); a peer past either, or whose answer says what no honest peer
says (``transports.answers``), is counted as a refusal (``core.refusals``,
``transfer_peer``) and the transfer fails at once with what it did wrong (``PeerLied``),
never retried. Dropped connections are retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from email.message import Message
from typing import Any, Self

import msgspec
import structlog

from core.refusals import refused
from protocol.transfer import PREFIX
from transports import answers
from transports.chunks import PeerLied, SourceChanged, TransferError
from transports.limits import ANSWER_BYTES, Limits, Overrun
from transports.throttle import Throttle

log = structlog.get_logger("transports.client")

TRIES = 5  # per chunk request, for dropped connections and damaged chunks
CONNECT_TIMEOUT = 10.0  # seconds to connect and shake hands
READ_TIMEOUT = 60.0  # seconds a read of a repeatable request may wait for a byte
# seconds a kept-alive connection is reused after it was last used: well inside the
# endpoint's own idle limit (60 s, 1 s when it is crowded), so that a request seldom
# meets a connection the peer has just closed (a repeatable one is then made again)
KEEP_IDLE = 20.0
BLOCK = 1 << 20  # bytes read at a time: the request's deadline is checked between blocks

Body = bytearray | int  # an answer's bytes, or how many went into the caller's buffer


class Stopped(Exception):
    """The transfer was stopped (cancelled) while a thread of it ran: it ends quietly."""


class Stop(threading.Event):
    """The stop of a group of streams (``Peer.threads``), and the connections they use
    now: when one fails or the transfer is cancelled, ``cut`` ends what the others wait
    for, and nothing else of the peer's."""

    def __init__(self) -> None:
        super().__init__()
        self.using: set[Connection] = set()
        self._lock = threading.Lock()

    def use(self, conn: Connection, using: bool) -> None:
        with self._lock:
            if using:
                self.using.add(conn)
            else:
                self.using.discard(conn)

    def cut(self) -> None:
        self.set()
        with self._lock:
            using = list(self.using)
        for conn in using:
            conn.abort()


@functools.cache
def client_context() -> ssl.SSLContext:
    """TLS for peers: no certificate authority, the peer's certificate is pinned by its
    fingerprint instead (``Connection.open``). Made once: a context costs milliseconds."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Connection:
    """One kept-alive connection to the peer, used by one thread at a time; ``abort``
    (from any thread) ends a request blocked on it."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.http: http.client.HTTPConnection | None = None
        self.used = 0.0  # monotonic time it was last used

    def open(self) -> http.client.HTTPConnection:
        if self.http is not None:
            return self.http
        peer = self.peer
        if peer.tls:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                peer.host, peer.port, timeout=CONNECT_TIMEOUT, context=client_context())
        else:
            conn = http.client.HTTPConnection(peer.host, peer.port, timeout=CONNECT_TIMEOUT)
        conn.connect()
        if peer.fingerprint is not None:  # before anything, the ticket above all, is sent
            sock = conn.sock
            der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) \
                else None
            if der is None or hashlib.sha256(der).digest() != peer.fingerprint:
                conn.close()
                raise TransferError("the serving agent's certificate is not the one the hub "
                                    "knows (fingerprint mismatch)")
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.http = conn
        return conn

    def timeout(self, seconds: float) -> None:
        if self.http is not None and self.http.sock is not None:
            self.http.sock.settimeout(max(0.001, seconds))

    def close(self) -> None:
        conn, self.http = self.http, None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        """From another thread: whatever this connection waits for ends now."""
        conn = self.http
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)


class Peer:
    """Talks to one serving agent's endpoint about one share, with one ticket, holding
    that agent to ``limits``."""

    def __init__(self, base_url: str, fingerprint: str | None, ticket: str, share: str, *,
                 streams: int = 4, backoff: float = 0.5, limits: Limits | None = None,
                 throttle: Throttle | None = None) -> None:
        self.url = base_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransferError(f"the serving agent's address {self.url!r} is not an "
                                "http(s) URL")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = (parts.path.rstrip("/") or "") + PREFIX
        try:
            self.fingerprint = bytes.fromhex(fingerprint) if fingerprint else None
        except ValueError:
            raise ValueError(f"not a SHA-256 fingerprint: {fingerprint!r}") from None
        self.headers = {"Authorization": f"Ticket {ticket}"}
        self.share = share
        self.streams = streams
        self.backoff = backoff
        self.limits = limits or Limits()
        # the speed limits its streams take from (transports.throttle); None: no limit
        self.throttle = throttle
        self.retried = 0  # requests made again (damage, dropped connections)
        self._idle: list[Connection] = []  # kept alive between requests
        self._lock = threading.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- connections
    @contextlib.contextmanager
    def connection(self, fresh: bool = False, stop: Stop | None = None
                   ) -> Iterator[Connection]:
        """A connection of this peer's, for one thread, kept alive for the next. ``fresh``:
        not one that sat idle (for a request made only once: the peer may have closed an
        idle connection just as it is sent, and it would not be made again). ``stop``:
        the group of streams it serves, which may cut it."""
        with self._lock:
            conn = self._idle.pop() if self._idle else Connection(self)
        if fresh or time.monotonic() - conn.used > KEEP_IDLE:
            conn.close()
        if stop is not None:
            stop.use(conn, True)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        finally:
            if stop is not None:
                stop.use(conn, False)
            conn.used = time.monotonic()
            if conn.http is not None:
                with self._lock:
                    self._idle.append(conn)

    # -- refusals
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

    # -- requests
    def call(self, conn: Connection, method: str, endpoint: str, *, params: dict[str, Any],
             limit: int = ANSWER_BYTES, what: str = "an answer", data: Any = None,
             headers: dict[str, str] | None = None, idempotent: bool = True, size: int = 0,
             into: memoryview | None = None, stop: threading.Event | None = None
             ) -> tuple[int, Body, Message]:
        """One request on ``conn`` (on this thread), retried on dropped connections;
        (status, body, response headers). The answer is read up to ``limit`` bytes (an
        error's up to ``ANSWER_BYTES``), a successful one into ``into`` when given (the
        body is then how many bytes went there), and the request ends within
        ``limits.deadline`` of those and the ``size`` bytes it sends or makes the peer
        write: past either, the peer fails the transfer (``what`` names the answer). A
        request that must not run twice (it preallocates, syncs or renames) is made once."""
        tries = TRIES if idempotent else 1
        seconds = self.limits.deadline(limit + size)
        target = f"{self.prefix}/{endpoint}?{urllib.parse.urlencode({'share': self.share, **params})}"
        sent = {**self.headers, **(headers or {})}
        for attempt in range(tries):
            if stop is not None and stop.is_set():
                raise Stopped
            deadline = time.monotonic() + seconds
            # a peer that trickles bytes never lets one read time out: past the deadline
            # the connection is cut, whatever it is waiting for
            watchdog = threading.Timer(seconds, conn.abort)
            watchdog.daemon = True
            watchdog.start()
            try:
                http_conn = conn.open()
                conn.timeout(min(READ_TIMEOUT, seconds) if idempotent else seconds)
                http_conn.request(method, target, body=data, headers=sent)
                resp = http_conn.getresponse()
                ok = resp.status < 300
                body = _read(conn, resp, limit if ok else max(limit, ANSWER_BYTES), deadline,
                             into if ok else None, idempotent)
                if resp.will_close:
                    conn.close()
                return resp.status, body, resp.headers
            except Overrun as exc:
                conn.close()
                said = f" (it announced {exc.seen})" if exc.seen > exc.limit + 1 else ""
                raise self._lied(f"sent more than {exc.limit} bytes for {what}{said}") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if stop is not None and stop.is_set():
                    raise Stopped from None
                if time.monotonic() >= deadline:
                    raise self._lied(f"took more than {seconds:.0f} s over {what}: slower than "
                                     f"{self.limits.min_rate} bytes/s (transfer_min_rate)"
                                     ) from None
                if attempt == tries - 1:
                    raise TransferError("cannot reach the serving agent: "
                                        f"{exc or type(exc).__name__}") from None
                log.info("request failed; making it again", request=endpoint,
                         error=str(exc) or type(exc).__name__, attempt=attempt + 1)
            finally:
                watchdog.cancel()
            self.retried += 1  # made again, after a pause
            pause = self.backoff * 2 ** attempt
            if stop is not None:
                stop.wait(pause)
            else:
                time.sleep(pause)
        raise AssertionError("unreachable")

    async def request(self, method: str, endpoint: str, **kwargs: Any
                      ) -> tuple[int, bytearray, Message]:
        """``call`` on a thread, with a kept-alive connection: for the small requests that
        steer a transfer (a stat, an open, a commit) and batches of small files."""

        def run() -> tuple[int, Body, Message]:
            with self.connection(fresh=not kwargs.get("idempotent", True)) as conn:
                return self.call(conn, method, endpoint, **kwargs)

        status, body, headers = await asyncio.to_thread(run)
        assert isinstance(body, bytearray)
        return status, body, headers

    async def threads(self, count: int, work: Callable[[Stop], None], name: str) -> None:
        """``work`` on ``count`` threads of its own, until all return; the first error
        stops the others and is raised. Cancelled, the threads are stopped (their requests
        cut) and waited for: nothing of this transfer runs on once this returns."""
        loop = asyncio.get_running_loop()
        stop = Stop()
        ended = loop.create_future()
        left = count
        errors: list[BaseException] = []

        def one_ended() -> None:
            nonlocal left
            left -= 1
            if left == 0 and not ended.done():
                ended.set_result(None)

        def run() -> None:
            try:
                work(stop)
            except Stopped:
                pass
            except BaseException as exc:
                errors.append(exc)
                stop.cut()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(one_ended)

        threads = [threading.Thread(target=run, name=f"{name}-{n}", daemon=True)
                   for n in range(count)]
        for thread in threads:
            thread.start()
        try:
            await asyncio.shield(ended)
        except asyncio.CancelledError:
            stop.cut()
            while not ended.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(ended)
            raise
        finally:
            for thread in threads:  # each has told its end: it is leaving, a moment at most
                thread.join()
        if errors:
            raise errors[0]

    @staticmethod
    def _raise(status: int, body: Body) -> None:
        if status < 400:
            return
        assert isinstance(body, bytearray)
        try:
            error = msgspec.json.decode(body)["error"]
            code, message = str(error["code"])[:80], str(error["message"])[:1000]
        except Exception:
            code, message = "http_error", bytes(body[:200]).decode("utf-8", "replace")
        if code == "source_changed":
            raise SourceChanged(message)
        raise TransferError(f"the serving agent refused ({status} {code}): {message}")


def _read(conn: Connection, resp: http.client.HTTPResponse, limit: int, deadline: float,
          into: memoryview | None, idempotent: bool) -> Body:
    """An answer's body: refused (``Overrun``) as soon as it is longer than ``limit``
    (by its Content-Length before anything is read), past ``deadline`` a timeout."""
    length = resp.length
    if length is not None and length > limit:
        raise Overrun(length, limit)

    def wait() -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer's deadline passed")
        conn.timeout(min(READ_TIMEOUT, left) if idempotent else left)

    if into is not None and length is not None:
        if length > len(into):
            raise Overrun(length, len(into))
        got = 0
        while got < length:
            wait()
            n = resp.readinto(into[got:min(length, got + BLOCK)])
            if not n:
                raise http.client.IncompleteRead(b"", length - got)
            got += n
        return got
    body = bytearray()
    while True:
        wait()
        block = resp.read(min(BLOCK, limit + 1 - len(body)))
        if not block:
            return body
        body += block
        if len(body) > limit:
            raise Overrun(len(body), limit)
