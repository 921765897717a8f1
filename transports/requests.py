"""Reading the transfer endpoint's requests: query numbers, small JSON bodies read only up
to their limit, and batches of small files (a JSON header line, then the file's bytes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import StreamReader, web

from transports.wire import BATCH_BYTES, SMALL_FILE, FileHeader, Refused

MAX_JSON = 1 << 20  # bytes of a JSON request body


def int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.query[name])
    except (KeyError, ValueError):
        raise Refused(400, "bad_request", f"query parameter {name!r} must be an integer") \
            from None


async def read_json(request: web.Request, kind: type[Any]) -> Any:
    """A small JSON body: read only up to ``MAX_JSON`` bytes."""
    if request.content_length is not None and request.content_length > MAX_JSON:
        raise Refused(413, "too_large", f"a request body is at most {MAX_JSON} bytes")
    raw = await request.content.read(MAX_JSON + 1)
    while len(raw) <= MAX_JSON and not request.content.at_eof():
        more = await request.content.read(MAX_JSON + 1 - len(raw))
        if not more:
            break
        raw += more
    if len(raw) > MAX_JSON:
        raise Refused(413, "too_large", f"a request body is at most {MAX_JSON} bytes")
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Refused(400, "bad_request", f"bad body: {exc}") from None


def json_response(value: Any) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), content_type="application/json")



async def batch_files(reader: StreamReader, max_files: int
                      ) -> AsyncIterator[tuple[FileHeader, bytes]]:
    """The files of a batch request, each checked for shape and size before its bytes are
    read; at most ``max_files`` files and ``BATCH_BYTES`` bytes in all."""
    count = received = 0
    while True:
        line = await reader.readline()
        if not line:
            return
        if count >= max_files or received > BATCH_BYTES:
            raise Refused(413, "too_large", f"at most {max_files} files and "
                          f"{BATCH_BYTES} bytes per request")
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
