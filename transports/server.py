"""The transfer endpoint's server: HTTPS with one thread per connection and blocking
sockets, off the agent's event loop.

asyncio's TLS pushes every byte through memory BIOs on the loop's one thread; here each
connection has a thread of its own that reads, hashes and writes its bytes with the GIL
released (OpenSSL, BLAKE3 and the file system calls all release it), so several streams
use several cores. The event loop keeps the control: it starts and stops the server, and
a request that needs it (a check-in for a share made a moment ago) asks it from its thread.

What a connection may hold is bounded:

- at most ``max_connections`` at once: more wait in the listen backlog until one ends,
  and meanwhile connections that wait idle for their next request are closed at once
  (after ``Timeouts.crowded``), to make room;
- a TLS handshake must be done within ``Timeouts.handshake`` seconds (in all, however
  slowly its bytes come), or the connection is dropped;
- a kept-alive connection waits ``Timeouts.idle`` seconds for its next request, and that
  request's line and headers must be in within ``Timeouts.head`` of its first byte;
- malformed request lines and headers are answered 400 and the connection is closed.

Each request goes to ``app`` on the connection's thread (``transports.endpoint``), which
answers it within the deadlines of its own (``transports.connection``).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from transports.connection import Connection, Request, read_request
from transports.errors import Disconnected, Malformed, TooSlow, WireError

log = structlog.get_logger("transports.server")

MAX_CONNECTIONS = 64  # connections served at once, each on a thread of its own
BACKLOG = 128  # connections the system holds for us while all are taken


@dataclass(frozen=True)
class Timeouts:
    """Seconds a connection may take, by what it is doing."""

    handshake: float = 5.0  # a TLS handshake, in all
    idle: float = 60.0  # a kept-alive connection waiting for its next request
    crowded: float = 1.0  # the same, while new connections wait for one to end
    head: float = 30.0  # a request's line and headers, once its first byte is in
    stop: float = 5.0  # ``stop`` waits this long for the connections to end


App = Callable[[Request], None]  # answers one request, on its connection's thread
Reject = Callable[[Connection, Malformed], None]  # answers bytes that are no request


class ThreadedServer:
    """Serves ``app`` on a listening socket, each connection on a thread of its own.
    ``malformed`` answers what is not a request (then the connection closes)."""

    def __init__(self, app: App, malformed: Reject, *, name: str = "transfer",
                 max_connections: int = MAX_CONNECTIONS, timeouts: Timeouts | None = None
                 ) -> None:
        self.app = app
        self.malformed = malformed
        self.name = name
        self.max_connections = max_connections
        self.timeouts = timeouts or Timeouts()
        self.port = 0
        self._context: ssl.SSLContext | None = None
        self._listeners: list[socket.socket] = []
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        self._crowded = threading.Event()  # connections wait for a free slot
        self._waker: tuple[socket.socket, socket.socket] | None = None  # wakes the acceptor
        self._lock = threading.Lock()
        self._live: dict[threading.Thread, socket.socket] = {}  # the connections' sockets
        self._acceptor: threading.Thread | None = None
        self._count = 0

    @property
    def connections(self) -> int:
        """Connections being served now."""
        with self._lock:
            return len(self._live)

    # -- running
    def start(self, host: str, port: int, context: ssl.SSLContext | None) -> int:
        """Listen on ``host``:``port`` (every address ``host`` names; port 0: a free one)
        with TLS from ``context`` (None: plain HTTP, for tests); returns the port."""
        self._context = context
        self._listeners = _listen(host, port)
        self.port = self._listeners[0].getsockname()[1]
        self._waker = socket.socketpair()
        self._acceptor = threading.Thread(target=self._accept, name=f"{self.name}-acceptor",
                                          daemon=True)
        self._acceptor.start()
        return self.port

    def stop(self) -> None:
        """Stop listening and end every connection (a request under way is cut off: its
        peer tries again, or resumes), waiting up to ``Timeouts.stop`` for their threads.
        Blocks: call it from a worker thread. Safe to call twice."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._waker is not None:
            with contextlib.suppress(OSError):
                self._waker[1].send(b"x")
        if self._acceptor is not None:
            self._acceptor.join(self.timeouts.stop)
        for listener in self._listeners:
            listener.close()
        for end in self._waker or ():
            end.close()
        deadline = time.monotonic() + self.timeouts.stop
        with self._lock:
            live = dict(self._live)
        for sock in live.values():
            with contextlib.suppress(OSError, ValueError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        for thread in live:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = [t.name for t in live if t.is_alive()]
        if left:
            log.warning("connections did not end in time; left to the process's exit",
                        threads=left, seconds=self.timeouts.stop)

    # -- accepting
    def _accept(self) -> None:
        assert self._waker is not None
        waker = self._waker[0]
        selector = selectors.DefaultSelector()
        try:
            for listener in self._listeners:
                selector.register(listener, selectors.EVENT_READ)
            selector.register(waker, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is waker or not self._slot():
                        return
                    assert isinstance(key.fileobj, socket.socket)
                    try:
                        sock, address = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        self._slots.release()
                        continue
                    except OSError as exc:  # out of descriptors, say: not a reason to stop
                        self._slots.release()
                        log.warning("cannot accept a transfer connection", error=str(exc))
                        time.sleep(0.1)
                        continue
                    self._spawn(sock, address)
        except Exception:
            log.exception("the transfer endpoint stopped accepting connections")
        finally:
            selector.close()

    def _slot(self) -> bool:
        """Take a connection's slot, waiting while all are taken (False: stopping)."""
        if self._slots.acquire(blocking=False):
            return True
        self._crowded.set()  # idle connections make room
        try:
            while not self._stopping.is_set():
                if self._slots.acquire(timeout=0.1):
                    return True
            return False
        finally:
            self._crowded.clear()

    def _spawn(self, sock: socket.socket, address: object) -> None:
        remote = address[0] if isinstance(address, tuple) else str(address)
        self._count += 1
        thread = threading.Thread(target=self._serve, args=(sock, str(remote)),
                                  name=f"{self.name}-connection-{self._count}", daemon=True)
        with self._lock:
            self._live[thread] = sock
        try:
            thread.start()
        except RuntimeError as exc:  # no more threads: this one is dropped
            log.warning("cannot start a thread for a transfer connection", error=str(exc))
            with self._lock:
                self._live.pop(thread, None)
            sock.close()
            self._slots.release()

    # -- one connection
    def _serve(self, sock: socket.socket, remote: str) -> None:
        me = threading.current_thread()
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                sock = self._handshake(sock, remote)
            if not self._stopping.is_set() and sock.fileno() >= 0:
                self._requests(Connection(sock, remote))
        except Exception:
            log.exception("a transfer connection failed", peer=remote)
        finally:
            with self._lock:
                self._live.pop(me, None)
            with contextlib.suppress(OSError):
                sock.close()
            self._slots.release()

    def _handshake(self, raw: socket.socket, remote: str) -> socket.socket:
        """The TLS handshake, done within ``Timeouts.handshake`` in all (CPython's
        handshake keeps one deadline across its reads). A socket that is closed
        (``fileno() < 0``) when it failed."""
        assert self._context is not None
        raw.settimeout(self.timeouts.handshake)
        try:
            sock = self._context.wrap_socket(raw, server_side=True,
                                             do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:
            log.debug("dropped a connection before its TLS handshake", peer=remote,
                      error=str(exc))
            raw.close()
            return raw
        with self._lock:
            self._live[threading.current_thread()] = sock
        try:
            sock.do_handshake()
        except (OSError, ValueError) as exc:  # a timeout, a peer that speaks no TLS
            log.debug("dropped a connection that did not complete its TLS handshake",
                      peer=remote, error=str(exc) or type(exc).__name__)
            sock.close()
        return sock

    def _requests(self, conn: Connection) -> None:
        """Requests one after the other, while the connection is kept alive."""
        timeouts = self.timeouts
        while conn.wait(timeouts.idle, self._give_up):
            try:
                request = read_request(conn, time.monotonic() + timeouts.head)
            except Malformed as exc:
                with contextlib.suppress(WireError):
                    self.malformed(conn, exc)
                conn.linger_close()
                return
            except (Disconnected, TooSlow):
                return
            if request is None:
                return
            if self._stopping.is_set():
                request.close = True
            try:
                self.app(request)
            except (Disconnected, TooSlow):
                return
            if not request.finish():
                if request.body.ended:
                    conn.close()
                else:
                    conn.linger_close()
                return

    def _give_up(self, waited: float) -> bool:
        """Should a connection that has waited ``waited`` s for a request stop waiting?"""
        return self._stopping.is_set() or (self._crowded.is_set()
                                           and waited >= self.timeouts.crowded)


def _listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host`` (one port for all of them)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    seen: set[object] = set()
    try:
        for family, kind, proto, _, named in infos:
            if named in seen:
                continue
            seen.add(named)
            address = named if not listeners else \
                (named[0], listeners[0].getsockname()[1], *named[2:])  # port 0: the first's
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            if hasattr(socket, "SO_REUSEADDR") and not hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # POSIX only
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners
