"""Reading the transfer endpoint's requests and sending its answers, within limits: query
numbers, small JSON bodies and chunk bodies read only up to their size and within their
deadline, batches of small files (a JSON header line, then the file's bytes), and answers
a slow reader cannot hold on to for ever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import structlog
from aiohttp import StreamReader, web

from core.refusals import refused
from protocol.transfer import BATCH_BYTES, SMALL_FILE, FileHeader, Refused
from transports.limits import HEADER_BYTES, Limits, Overrun, read_bounded

log = structlog.get_logger("transports.requests")

MAX_JSON = 1 << 20  # bytes of a JSON request body
# bytes a batch of small files holds in memory, at most (a batch stops taking files once
# over BATCH_BYTES: the last may add one whole small file, and headers come on top)
HEADERS_BYTES = 4 << 20  # the header lines of one batch, at most
BATCH_HOLD = BATCH_BYTES + SMALL_FILE + HEADERS_BYTES


def int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.query[name])
    except (KeyError, ValueError):
        raise Refused(400, "bad_request", f"query parameter {name!r} must be an integer") \
            from None


async def read_json(request: web.Request, kind: type[Any], limits: Limits) -> Any:
    """A small JSON body: read only up to ``MAX_JSON`` bytes, within its deadline."""
    raw = await _read(request, MAX_JSON, limits, "a request body")
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Refused(400, "bad_request", f"bad body: {exc}") from None


async def read_chunk_body(request: web.Request, length: int, limits: Limits) -> bytearray:
    """A pushed chunk of ``length`` bytes: more is refused (413) as it arrives, too slow
    (408) past ``limits.deadline(length)``. A shorter body is a damaged chunk (422): the
    sender sends it again."""
    data = await _read(request, length, limits, "a chunk")
    if len(data) != length:
        raise Refused(422, "chunk_corrupt", f"the chunk has {len(data)} bytes, not {length}")
    return data


async def _read(request: web.Request, limit: int, limits: Limits, what: str) -> bytearray:
    deadline = limits.deadline(limit)
    try:
        async with asyncio.timeout(deadline):
            return await read_bounded(request.content, limit, request.content_length)
    except Overrun:
        raise Refused(413, "too_large", f"{what} is at most {limit} bytes") from None
    except TimeoutError:
        raise Refused(408, "too_slow", f"{what} of at most {limit} bytes did not arrive "
                      f"within {deadline:.0f} s (transfer_min_rate)") from None


async def send(request: web.Request, body: bytes, limits: Limits, content_type: str,
               headers: dict[str, str] | None = None) -> web.StreamResponse:
    """An answer, written out before this returns, so that the caller's hold on its bytes
    (``Budget``) lasts until they are sent, and no longer than ``limits.deadline``: a
    peer that reads slower than that is cut off (and counted as a refusal)."""
    response = web.Response(body=body, content_type=content_type, headers=headers)
    deadline = limits.deadline(len(body))
    try:
        async with asyncio.timeout(deadline):
            await response.prepare(request)
            await response.write_eof()
    except TimeoutError:
        refused("transfer_peer", request.remote or "?", f"read {len(body)} bytes slower than "
                f"{deadline:.0f} s allow (transfer_min_rate): cut off",
                path=request.query.get("path", ""))
        if request.transport is not None:
            request.transport.abort()
    return response


def json_response(value: Any) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), content_type="application/json")


async def batch_files(reader: StreamReader, max_files: int
                      ) -> AsyncIterator[tuple[FileHeader, bytes]]:
    """The files of a batch request, each checked for shape and size before its bytes are
    read; at most ``max_files`` files and ``BATCH_BYTES`` bytes in all."""
    count = received = lines = 0
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # aiohttp's own limit on a line
            raise Refused(413, "too_large", "a file header line is too long") from None
        if not line:
            return
        lines += len(line)
        if count >= max_files or received > BATCH_BYTES or len(line) > HEADER_BYTES or \
                lines > HEADERS_BYTES:
            raise Refused(413, "too_large", f"at most {max_files} files, {BATCH_BYTES} bytes "
                          f"and {HEADERS_BYTES} bytes of headers per request")
        try:
            header = msgspec.json.decode(line, type=FileHeader)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Refused(400, "bad_request", f"bad file header: {exc}") from None
        if not 0 <= header.size <= SMALL_FILE:
            raise Refused(400, "bad_request", f"{header.path}: batched files are at most "
                          f"{SMALL_FILE} bytes")
        try:
            data = await reader.readexactly(header.size) if header.size else b""
        except asyncio.IncompleteReadError:
            raise Refused(400, "bad_request", f"{header.path}: the stream ended inside "
                          "the file") from None
        count += 1
        received += len(data)
        yield header, data
