"""One HTTP/1.1 connection of the transfer endpoint, read and written by its own thread
with a blocking socket (TLS or plain): requests' heads, their bodies, and the answers.

Every read and write has a deadline across all its socket calls (each call waits at most
what is left of it), so a peer that trickles bytes, or reads an answer a byte at a time,
cannot hold a thread for ever: it gets ``TooSlow``. A body is read into the caller's
buffer (``Body.readinto``: what the connection had buffered, then ``recv_into`` straight
into it) and an answer's bytes go to the socket as they are (``Request.write``): the data
path copies nothing it does not have to.

What is read: a request line ``METHOD /target HTTP/1.1`` (or 1.0) of at most
``MAX_LINE`` bytes, at most ``MAX_HEADERS`` header lines and ``MAX_HEAD`` bytes in all,
then a body of ``Content-Length`` bytes or ``Transfer-Encoding: chunked``. Anything else
is ``Malformed``: the server answers 400 and closes the connection (``transports.server``).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from transports.errors import Disconnected, Malformed, TooSlow

MAX_LINE: Final = 32 << 10  # a request line or a header line (a download link's is long)
MAX_HEAD: Final = 64 << 10  # a request's line and headers together
MAX_HEADERS: Final = 100
MAX_QUERY: Final = 100  # query parameters
BUFFER: Final = 64 << 10  # what a connection reads ahead (a head, the start of a body)
SMALL_ANSWER: Final = 64 << 10  # an answer this small goes out with its head, in one write
WRITE_SLICE: Final = 4 << 20  # bytes written at a time, each within what is left of a deadline
DRAIN: Final = 64 << 10  # an unread body this small is read and dropped to keep the connection
LINGER: Final = (1.0, 16 << 20)  # seconds, and bytes at full speed, a closing connection drops
SLICE: Final = 0.5  # seconds an idle connection waits at a time before it looks again
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_NO_BODY = frozenset({204, 304})


class Connection:
    """A client's connection: ``sock`` (blocking, TLS already negotiated) and what has been
    read ahead of the request being parsed."""

    def __init__(self, sock: socket.socket, remote: str) -> None:
        self.sock = sock
        self.remote = remote
        self._buf = bytearray(BUFFER)
        self._view = memoryview(self._buf)
        self._start = self._end = 0

    # -- reading
    def _recv(self, view: memoryview, deadline: float) -> int:
        """One ``recv_into`` (0: the peer closed), waiting at most until ``deadline``."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TooSlow("the peer sent nothing in time")
        try:
            self.sock.settimeout(left)
            return self.sock.recv_into(view)
        except TimeoutError:
            raise TooSlow("the peer sent nothing in time") from None
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; a closed socket
            raise Disconnected(str(exc) or type(exc).__name__) from None

    def _fill(self, deadline: float) -> int:
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._buf):  # what is left moves to the front
            left = self._end - self._start
            self._buf[:left] = self._view[self._start:self._end]
            self._start, self._end = 0, left
        got = self._recv(self._view[self._end:], deadline)
        self._end += got
        return got

    def wait(self, idle: float, give_up: Callable[[float], bool]) -> bool:
        """Wait for the next request's first bytes, at most ``idle`` seconds, looking every
        ``SLICE`` whether to give up (``give_up(seconds idle)``). False: no request comes
        (idle too long, given up, or the peer closed)."""
        if self._end > self._start:
            return True
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            if waited >= idle or give_up(waited):
                return False
            try:
                return self._fill(time.monotonic() + min(SLICE, idle - waited)) > 0
            except TooSlow:
                continue
            except Disconnected:
                return False

    def readline(self, limit: int, deadline: float) -> bytes | None:
        """A line, its CRLF (or LF) taken off: at most ``limit`` bytes (else ``Malformed``);
        None when the peer closed before its first byte."""
        while True:
            at = self._buf.find(b"\n", self._start, min(self._end, self._start + limit + 2))
            if at >= 0:
                line = bytes(self._view[self._start:at])
                self._start = at + 1
                return line[:-1] if line.endswith(b"\r") else line
            if self._end - self._start > limit + 1:
                raise Malformed(f"a line longer than {limit} bytes")
            if not self._fill(deadline):
                if self._start == self._end:
                    return None
                raise Disconnected("the connection closed inside a line")

    def readinto(self, view: memoryview, deadline: float) -> int:
        """Up to ``len(view)`` bytes into ``view``: what was read ahead, else straight from
        the socket. 0: the peer closed."""
        have = self._end - self._start
        if have:
            count = min(have, len(view))
            view[:count] = self._view[self._start:self._start + count]
            self._start += count
            return count
        return self._recv(view, deadline)

    # -- writing
    def write(self, data: bytes | bytearray | memoryview, deadline: float) -> None:
        """All of ``data``, written by ``deadline`` (else ``TooSlow``)."""
        view = memoryview(data).cast("B")
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TooSlow("the peer did not read the answer in time")
            part = view[:WRITE_SLICE]
            try:
                self.sock.settimeout(left)
                self.sock.sendall(part)
            except TimeoutError:
                raise TooSlow("the peer did not read the answer in time") from None
            except (OSError, ValueError) as exc:
                raise Disconnected(str(exc) or type(exc).__name__) from None
            view = view[len(part):]

    def reject(self, status: int, content_type: str, body: bytes, deadline: float) -> None:
        """An answer to what is not a request (``Malformed``), after which the connection
        closes."""
        head = (f"HTTP/1.1 {status} {_reason(status)}\r\nDate: {_date()}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode("latin-1")
        self.write(head + body, deadline)

    # -- ending
    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def linger_close(self) -> None:
        """Close a connection whose peer may still be sending (a body that was not read):
        the answer's end is sent (FIN), and what still arrives is dropped, unread and
        undecrypted, for a moment or until the peer closes, so that closing does not reset
        the connection before the peer has read the answer. Past ``LINGER``'s bytes, what
        arrives is dropped slowly: a peer that sends without end stalls on its writes and
        reads the answer meanwhile."""
        seconds, most = LINGER
        deadline, dropped = time.monotonic() + seconds, 0
        sink = bytearray(64 << 10)
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_WR)  # the plain socket's: no TLS
            while (left := deadline - time.monotonic()) > 0:
                if dropped >= most:
                    time.sleep(min(left, 0.05))
                self.sock.settimeout(max(left, 0.001))
                got = socket.socket.recv_into(self.sock, sink)
                if not got:
                    break
                dropped += got
        except (OSError, ValueError):
            pass
        self.close()

    def shut(self) -> None:
        """End the connection now, from any thread: a read or write that waits on it
        returns (``stop``, a cut-off answer)."""
        with contextlib.suppress(OSError, ValueError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class Headers(Mapping[str, str]):
    """A request's headers, by name in any case. A header sent on several lines is one,
    its values joined by commas (RFC 9110 §5.3)."""

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = {}
        for name, value in (items or {}).items():
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        self._items[key] = f"{self._items[key]}, {value}" if key in self._items else value

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class Request:
    """One request of a connection: its method, path (still percent-encoded), query,
    headers and ``body``; ``respond`` and ``write`` answer it. ``route`` holds what the
    endpoint's router took from the path."""

    def __init__(self, conn: Connection, method: str, target: str, version: str,
                 headers: Headers) -> None:
        self.conn = conn
        self.method = method
        self.path, _, query = target.partition("?")
        self.path = self.path.partition("#")[0]
        try:
            pairs = urllib.parse.parse_qsl(query.partition("#")[0], keep_blank_values=True,
                                           max_num_fields=MAX_QUERY)
        except ValueError:
            raise Malformed(f"more than {MAX_QUERY} query parameters") from None
        self.query: dict[str, str] = {}
        for name, value in pairs:
            self.query.setdefault(name, value)  # the first of a name counts
        self.headers = headers
        self.route: dict[str, str] = {}
        tokens = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
        self.close = "close" in tokens if version == "HTTP/1.1" else "keep-alive" not in tokens
        self.body = Body(self, _body_length(headers))
        self.answered = False
        self.status = 0

    @property
    def remote(self) -> str:
        return self.conn.remote

    def respond(self, status: int, headers: Mapping[str, str] | None = None,
                body: bytes | bytearray | memoryview = b"", *, length: int | None = None,
                deadline: float) -> None:
        """The answer's head and ``body`` (none to a HEAD request), written by ``deadline``.
        With ``length``, the head announces that many bytes, which ``write`` then sends."""
        if self.answered:
            raise RuntimeError("this request has been answered")
        self.answered, self.status = True, status
        if not self.body.ended and not self.body.droppable:
            self.close = True  # its unread body will not be read: say the connection ends
        size = len(body) if length is None else length
        lines = [f"HTTP/1.1 {status} {_reason(status)}", f"Date: {_date()}"]
        for name, value in (headers or {}).items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} holds a line break")
            lines.append(f"{name}: {value}")
        if status >= 200 and status not in _NO_BODY:
            lines.append(f"Content-Length: {size}")
        if self.close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.method == "HEAD" or length is not None or not body:
            self.conn.write(head, deadline)
        elif len(body) <= SMALL_ANSWER:
            self.conn.write(head + bytes(body), deadline)
        else:
            self.conn.write(head, deadline)
            self.conn.write(body, deadline)

    def write(self, data: bytes | bytearray | memoryview, deadline: float) -> None:
        """More of the body announced by ``respond(length=...)`` (nothing, to a HEAD)."""
        if self.method != "HEAD":
            self.conn.write(data, deadline)

    def abort(self) -> None:
        """Cut the connection off now: the peer sees fewer bytes than announced."""
        self.close = True
        self.conn.shut()

    def finish(self) -> bool:
        """After the answer: may the connection take another request? An unread body is
        read and dropped when it is small, else the connection closes."""
        if self.close or not self.answered:
            return False
        body = self.body
        if body.ended:
            return True
        if not body.droppable:
            return False
        try:
            return body.drop(time.monotonic() + 1.0)
        except (Disconnected, TooSlow, Malformed):
            return False


class Body:
    """A request's body, as it arrives: ``Content-Length`` bytes, or chunked (``length``
    None). ``received`` counts the bytes read so far."""

    def __init__(self, request: Request, length: int | None) -> None:
        self._request = request
        self._conn = request.conn
        self.length = length
        self.received = 0
        self.ended = length == 0
        self._left = length or 0  # bytes left of the body, or of its current chunk
        self._chunk_ended = False  # a chunk's data is in: its CRLF is next
        self.expecting = "100-continue" in request.headers.get("Expect", "").lower()

    @property
    def droppable(self) -> bool:
        """Is what is left of the body small enough to read and forget, keeping the
        connection? (Not for a peer that waits for 100 Continue: it sends no body.)"""
        return not self.expecting and self.length is not None and \
            self.length - self.received <= DRAIN

    def readinto(self, view: memoryview, deadline: float) -> int:
        """Up to ``len(view)`` bytes of the body into ``view``; 0 at its end."""
        if self.ended or not view:
            return 0
        if self.expecting:  # the peer waits for our word before it sends the body
            self.expecting = False
            if not self._request.answered:
                self._conn.write(b"HTTP/1.1 100 Continue\r\n\r\n", deadline)
        if self.length is None and not self._left and not self._next_chunk(deadline):
            return 0
        got = self._conn.readinto(view[:self._left], deadline)
        if not got:
            raise Disconnected(f"the body ended after {self.received} bytes")
        self._left -= got
        self.received += got
        if self.length is not None and not self._left:
            self.ended = True
        return got

    def readfull(self, view: memoryview, deadline: float) -> int:
        """Fill ``view`` from the body; fewer bytes only if the body ends first."""
        done = 0
        while done < len(view):
            got = self.readinto(view[done:], deadline)
            if not got:
                break
            done += got
        return done

    def drop(self, deadline: float) -> bool:
        """Read what is left of the body and forget it: True once it has ended."""
        sink = memoryview(bytearray(16 << 10))
        while self.readinto(sink, deadline):
            pass
        return self.ended

    def _next_chunk(self, deadline: float) -> bool:
        """Read the next chunk's size line: False at the last chunk (the body's end)."""
        if self._chunk_ended and self._conn.readline(2, deadline) != b"":
            raise Malformed("a chunk of the body is not followed by CRLF")
        line = self._conn.readline(1024, deadline)
        if line is None:
            raise Disconnected(f"the body ended after {self.received} bytes")
        text = line.split(b";", 1)[0].strip()
        if not text or len(text) > 15 or not set(text) <= _HEX:
            raise Malformed("a chunk of the body without its size")
        self._left, self._chunk_ended = int(text, 16), True
        if not self._left:  # the last chunk: trailers (ignored) up to an empty line
            for _ in range(MAX_HEADERS):
                trailer = self._conn.readline(MAX_LINE, deadline)
                if trailer is None:
                    raise Disconnected("the body ended inside its trailers")
                if not trailer:
                    self.ended = True
                    return False
            raise Malformed(f"more than {MAX_HEADERS} trailers")
        return True


def read_request(conn: Connection, deadline: float) -> Request | None:
    """The next request's line and headers, whole by ``deadline``; None when the peer
    closed the connection between requests."""
    line = conn.readline(MAX_LINE, deadline)
    if line == b"":  # RFC 9112 §2.2: one empty line before a request is tolerated
        line = conn.readline(MAX_LINE, deadline)
    if line is None:
        return None
    parts = line.split(b" ")
    if len(parts) != 3:
        raise Malformed("the request line is not METHOD TARGET HTTP/1.1")
    method, target, version = parts
    if not method or not set(method) <= _TOKEN:
        raise Malformed("the request's method is not a token")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise Malformed("this endpoint speaks HTTP/1.1 (and 1.0)")
    if not target.startswith(b"/") or not all(0x21 <= c <= 0x7E for c in target):
        raise Malformed("the request's target is not a path")
    headers = Headers()
    size = len(line)
    for _ in range(MAX_HEADERS + 1):
        field = conn.readline(MAX_LINE, deadline)
        if field is None:
            raise Disconnected("the connection closed inside a request's head")
        if not field:
            return Request(conn, method.decode("ascii"), target.decode("ascii"),
                           version.decode("ascii"), headers)
        size += len(field)
        if size > MAX_HEAD:
            raise Malformed(f"a request's head of more than {MAX_HEAD} bytes")
        name, colon, value = field.partition(b":")
        if not colon or not name or not set(name) <= _TOKEN:
            raise Malformed("a header line is not NAME: VALUE")
        value = value.strip(b" \t")
        if b"\r" in value or b"\0" in value:
            raise Malformed("a header's value holds a control character")
        headers.add(name.decode("ascii"), value.decode("latin-1"))
    raise Malformed(f"more than {MAX_HEADERS} headers")


def _body_length(headers: Headers) -> int | None:
    """The body's length from the headers; None: chunked."""
    coding, length = headers.get("Transfer-Encoding"), headers.get("Content-Length")
    if coding is not None:
        if coding.strip().lower() != "chunked" or length is not None:
            raise Malformed("a body is sent with Content-Length, or chunked alone")
        return None
    if length is None:
        return 0
    values = {v.strip() for v in length.split(",")}
    text = values.pop()
    if values or not text.isascii() or not text.isdigit() or len(text) > 18:
        raise Malformed("Content-Length is not one number")
    return int(text)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _date() -> str:
    return _date_of(int(time.time()))


@functools.lru_cache(maxsize=2)
def _date_of(second: int) -> str:
    return email.utils.formatdate(second, usegmt=True)
