"""Reading the transfer endpoint's requests and sending its answers, within limits, on the
request's own thread: query numbers, small JSON bodies and chunk bodies read only up to
their size and within their deadline, batches of small files (a JSON header line, then the
file's bytes), and answers a slow reader cannot hold on to for ever."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import msgspec
import structlog

from core.refusals import refused
from protocol.transfer import BATCH_BYTES, SMALL_FILE, FileHeader, Refused
from transports.connection import Body, Request
from transports.errors import Disconnected, TooSlow
from transports.limits import HEADER_BYTES, Limits, Overrun

log = structlog.get_logger("transports.requests")

MAX_JSON = 1 << 20  # bytes of a JSON request body
# bytes a batch of small files holds in memory, at most (a batch stops taking files once
# over BATCH_BYTES: the last may add one whole small file, and headers come on top)
HEADERS_BYTES = 4 << 20  # the header lines of one batch, at most
BATCH_HOLD = BATCH_BYTES + SMALL_FILE + HEADERS_BYTES


def int_param(request: Request, name: str) -> int:
    try:
        return int(request.query[name])
    except (KeyError, ValueError):
        raise Refused(400, "bad_request", f"query parameter {name!r} must be an integer") \
            from None


def read_json(request: Request, kind: type[Any], limits: Limits) -> Any:
    """A small JSON body: read only up to ``MAX_JSON`` bytes, within its deadline."""
    deadline = limits.deadline(MAX_JSON)
    try:
        raw = _read(request.body, MAX_JSON, time.monotonic() + deadline)
    except Overrun:
        raise Refused(413, "too_large", f"a request body is at most {MAX_JSON} bytes") \
            from None
    except TooSlow:
        raise _too_slow("a request body", MAX_JSON, deadline) from None
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Refused(400, "bad_request", f"bad body: {exc}") from None


def read_chunk_body(request: Request, buffer: memoryview, limits: Limits) -> None:
    """A pushed chunk, straight into ``buffer`` (exactly its length): more is refused (413)
    as it arrives, too slow (408) past ``limits.deadline``. A shorter body is a damaged
    chunk (422): the sender sends it again."""
    length = len(buffer)
    deadline = limits.deadline(length)
    until = time.monotonic() + deadline
    body = request.body
    try:
        if body.length is not None and body.length > length:
            raise Overrun(body.length, length)
        got = body.readfull(buffer, until)
        if got == length and body.readinto(memoryview(bytearray(1)), until):
            raise Overrun(length + 1, length)
    except Overrun:
        raise Refused(413, "too_large", f"a chunk is at most {length} bytes") from None
    except TooSlow:
        raise _too_slow("a chunk", length, deadline) from None
    if got != length:
        raise Refused(422, "chunk_corrupt", f"the chunk has {got} bytes, not {length}")


def _read(body: Body, limit: int, until: float) -> bytearray:
    """A whole body, refused (``Overrun``) as soon as it is longer than ``limit`` bytes:
    by its Content-Length before anything is read, else after ``limit + 1`` bytes."""
    if body.length is not None:
        if body.length > limit:
            raise Overrun(body.length, limit)
        data = bytearray(body.length)
        got = body.readfull(memoryview(data), until)
        if got != body.length:  # the peer closed: nothing more can be read
            raise Disconnected(f"the body ended after {got} bytes")
        return data
    data, block = bytearray(), memoryview(bytearray(64 << 10))
    while got := body.readinto(block[:limit + 1 - len(data)], until):
        data += block[:got]
        if len(data) > limit:
            raise Overrun(len(data), limit)
    return data


def _too_slow(what: str, limit: int, deadline: float) -> Refused:
    return Refused(408, "too_slow", f"{what} of at most {limit} bytes did not arrive within "
                   f"{deadline:.0f} s (transfer_min_rate)")


def send(request: Request, body: bytes | bytearray | memoryview, limits: Limits,
         content_type: str, headers: dict[str, str] | None = None, status: int = 200) -> None:
    """An answer, written out before this returns, so that the caller's hold on its bytes
    (``Budget``) lasts until they are sent, and no longer than ``limits.deadline``: a
    peer that reads slower than that is cut off (and counted as a refusal)."""
    deadline = limits.deadline(len(body))
    try:
        request.respond(status, {"Content-Type": content_type, **(headers or {})}, body,
                        deadline=time.monotonic() + deadline)
    except TooSlow:
        refused("transfer_peer", request.remote or "?", f"read {len(body)} bytes slower than "
                f"{deadline:.0f} s allow (transfer_min_rate): cut off",
                path=request.query.get("path", ""))
        request.abort()
    except Disconnected:
        request.abort()


def send_json(request: Request, value: Any, limits: Limits, status: int = 200) -> None:
    send(request, msgspec.json.encode(value), limits, "application/json", status=status)


def batch_files(request: Request, max_files: int, until: float
                ) -> Iterator[tuple[FileHeader, bytes | bytearray]]:
    """The files of a batch request, each checked for shape and size before its bytes are
    read; at most ``max_files`` files and ``BATCH_BYTES`` bytes in all, by ``until``
    (else ``TooSlow``)."""
    reader = _Lines(request.body, until)
    count = received = lines = 0
    too_large = Refused(413, "too_large", f"at most {max_files} files, {BATCH_BYTES} bytes "
                        f"and {HEADERS_BYTES} bytes of headers per request")
    while True:
        try:
            line = reader.readline(HEADER_BYTES)
        except Overrun:
            raise too_large from None
        if not line:
            return
        lines += len(line)
        if count >= max_files or received > BATCH_BYTES or len(line) > HEADER_BYTES or \
                lines > HEADERS_BYTES:
            raise too_large
        try:
            header = msgspec.json.decode(line, type=FileHeader)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Refused(400, "bad_request", f"bad file header: {exc}") from None
        if not 0 <= header.size <= SMALL_FILE:
            raise Refused(400, "bad_request", f"{header.path}: batched files are at most "
                          f"{SMALL_FILE} bytes")
        data = reader.readexactly(header.size)
        if data is None:
            raise Refused(400, "bad_request", f"{header.path}: the stream ended inside "
                          "the file")
        count += 1
        received += len(data)
        yield header, data


class _Lines:
    """A body read a line, or a number of bytes, at a time."""

    def __init__(self, body: Body, until: float) -> None:
        self._body, self._until = body, until
        self._pending = bytearray()
        self._block = memoryview(bytearray(64 << 10))

    def _more(self) -> bool:
        got = self._body.readinto(self._block, self._until)
        self._pending += self._block[:got]
        return got > 0

    def readline(self, limit: int) -> bytes:
        """A line with its LF (or what is left at the body's end); ``Overrun`` past
        ``limit`` bytes."""
        looked = 0
        while True:
            at = self._pending.find(b"\n", looked)
            if at >= 0:
                line = bytes(self._pending[:at + 1])
                del self._pending[:at + 1]
                return line
            if len(self._pending) > limit:
                raise Overrun(len(self._pending), limit)
            looked = len(self._pending)
            if not self._more():
                line = bytes(self._pending)
                self._pending.clear()
                return line

    def readexactly(self, size: int) -> bytes | bytearray | None:
        """``size`` bytes, or None when the body ends first."""
        if len(self._pending) >= size:
            data = bytes(self._pending[:size])
            del self._pending[:size]
            return data
        out = bytearray(size)
        have = len(self._pending)
        out[:have] = self._pending
        self._pending.clear()
        if self._body.readfull(memoryview(out)[have:], self._until) != size - have:
            return None
        return out
