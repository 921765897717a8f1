"""Serving a download link: one file of a share as plain HTTPS, for curl, wget, aria2c and
browsers (``protocol.links`` has the URL and its ticket; ``TransferEndpoint.link`` checks
them before anything here runs).

The answer is what standard clients need to download, resume and split a file:
``Content-Length``, ``Accept-Ranges: bytes``, a strong ``ETag`` made from the file's
identity (size, mtime, inode, ctime: a file rewritten in place with the same size and
mtime still gets a new one), ``Last-Modified`` and ``Content-Disposition``. One range
(``bytes=a-b``, ``a-``, ``-n``) is answered ``206`` with ``Content-Range``; a range past
the end ``416``; several ranges, or one that cannot be read, get the whole file (a server
may ignore ``Range``, RFC 9110 §14.2). ``If-Range`` (an ETag or the exact
``Last-Modified``), ``If-Match``, ``If-None-Match``, ``If-Modified-Since`` and
``If-Unmodified-Since`` are honoured as RFC 9110 §13.2.2 orders them.

The file is the one the endpoint opened from the share's root with no symlink followed
(``SourceFile``, as for chunks: never ``web.FileResponse`` on a path, which follows them).
It is sent in blocks of ``BLOCK`` bytes, each counted against the endpoint's memory
``Budget`` while it is held, within the endpoint's deadline for its size
(``Limits.deadline``): a reader slower than ``transfer_min_rate`` is cut off. A file that
changes while it is sent is cut off too, so the client sees a short download (and a new
ETag when it resumes) rather than a mix of two versions.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.helpers import ETag

from core.refusals import refused
from protocol.paths import PathRefused, join
from protocol.transfer import Refused, Share
from transports.chunks import SourceChanged, SourceFile, TransferError
from transports.limits import Budget, Limits

log = structlog.get_logger("transports.links")

BLOCK = 256 << 10  # bytes read and written at a time, per download
_SUFFIX_ZERO = re.compile(r"^bytes=-0+$", re.IGNORECASE)


@dataclass(frozen=True)
class Plan:
    """What to answer: a status, and for 200 and 206 the bytes to send."""

    status: int
    start: int = 0
    length: int = 0


def open_file(share: Share, place: Path, parts: tuple[str, ...]) -> SourceFile:
    """The link's file, opened from the share's root (on a worker thread). The reasons
    name the path inside the share only: whoever holds a link learns nothing of the disk."""
    shown = join(parts)
    try:
        return SourceFile(place, root=share.root)
    except PathRefused as exc:
        raise Refused(400, "bad_path", f"{shown!r} refused: {exc.why}") from None
    except TransferError:
        if os.path.isdir(place):
            raise Refused(409, "not_a_file", f"{shown!r} is a folder: a link serves one "
                          "file") from None
        if not os.path.lexists(place):
            raise Refused(404, "not_found", f"{shown!r} is not in share {share.name!r} (any "
                          "more)") from None
        raise Refused(409, "not_a_file", f"{shown!r} cannot be read: it is not a plain "
                      "file, or this agent may not read it") from None


def etag(identity: str) -> str:
    """A strong ETag from a file's identity (``SourceFile.stat.identity``)."""
    return '"' + hashlib.sha256(identity.encode()).hexdigest()[:32] + '"'


def _matches(tag: str, tags: tuple[ETag, ...], *, weak: bool) -> bool:
    value = tag.strip('"')
    return any(t.value in (value, "*") and (weak or not t.is_weak) for t in tags)


def _if_range_holds(request: web.BaseRequest, tag: str, mtime: int) -> bool:
    """Does the client's copy (``If-Range``) still match: the same ETag (compared strongly),
    or exactly the Last-Modified date we send? No ``If-Range``: yes."""
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == tag  # a weak tag never matches (RFC 9110 §13.1.5)
    date = request.if_range
    return date is not None and int(date.timestamp()) == mtime


def plan(request: web.BaseRequest, size: int, tag: str, mtime: int) -> Plan:
    """The answer to ``request`` for a file of ``size`` bytes with ``tag`` and ``mtime``
    (whole seconds, as Last-Modified says it): preconditions first, then the range."""
    if (wanted := request.if_match) is not None:
        if not _matches(tag, wanted, weak=False):
            return Plan(412)
    elif (since := request.if_unmodified_since) is not None and mtime > since.timestamp():
        return Plan(412)
    if (seen := request.if_none_match) is not None:
        if _matches(tag, seen, weak=True):
            return Plan(304)
    elif (since := request.if_modified_since) is not None and mtime <= since.timestamp():
        return Plan(304)
    whole = Plan(200, 0, size)
    text = request.headers.get("Range")
    if text is None or not _if_range_holds(request, tag, mtime):
        return whole
    if _SUFFIX_ZERO.match(text.strip()):  # the last 0 bytes: nothing to send
        return Plan(416)
    try:
        span = request.http_range
    except ValueError:  # several ranges, or one that cannot be read: ignored (RFC 9110 §14.2)
        return whole
    start, stop = span.start, span.stop
    if start is None:
        return whole
    if start < 0:  # bytes=-n: the last n
        if size == 0:
            return Plan(416)
        start = max(0, size + start)
        stop = size
    elif start >= size:
        return Plan(416)
    else:
        stop = size if stop is None else min(stop, size)
    return Plan(206, start, stop - start)


def disposition(name: str) -> str:
    """``attachment`` with the name: plain ASCII for old clients, UTF-8 for the rest
    (RFC 6266)."""
    plain = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%' else "_" for c in name)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{urllib.parse.quote(name)}"


async def answer(request: web.Request, source: SourceFile, parts: tuple[str, ...],
                 limits: Limits, budget: Budget) -> tuple[web.StreamResponse, int]:
    """Answer a link's ``GET`` or ``HEAD`` with the open file ``source`` (at ``parts`` in
    its share): the response, and the file's bytes sent."""
    name = parts[-1]
    info = source.stat
    tag = etag(info.identity)
    mtime = info.mtime_ns // 1_000_000_000
    todo = plan(request, info.size, tag, mtime)
    headers = {"ETag": tag, "Accept-Ranges": "bytes", "Cache-Control": "private",
               "X-Content-Type-Options": "nosniff"}
    if todo.status in (412, 416):
        if todo.status == 416:
            headers["Content-Range"] = f"bytes */{info.size}"
        return web.Response(status=todo.status, headers=headers), 0
    response = web.StreamResponse(status=todo.status, headers=headers)
    response.last_modified = mtime
    if todo.status == 304:
        return response, 0
    response.headers["Content-Disposition"] = disposition(name)
    response.content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response.content_length = todo.length
    if todo.status == 206:
        response.headers["Content-Range"] = \
            f"bytes {todo.start}-{todo.start + todo.length - 1}/{info.size}"
    sent = [0]  # bytes handed to the connection so far, however the answer ends
    deadline = limits.deadline(todo.length)
    try:
        async with asyncio.timeout(deadline):
            await response.prepare(request)
            if request.method != "HEAD":
                await _copy(response, source, todo.start, todo.length, budget, sent)
            await response.write_eof()
    except TimeoutError:
        refused("transfer_peer", request.remote or "?", f"read a download link slower than "
                f"{deadline:.0f} s allow for {todo.length} bytes (transfer_min_rate): cut off",
                path=join(parts))
        _abort(request)
    except SourceChanged as exc:
        log.warning("download cut off: the file changed while it was sent", path=join(parts),
                    reason=str(exc), sent=sent[0])
        _abort(request)
    except ConnectionError:  # the client went away (stopped, or resumes later): ordinary
        log.debug("download ended by the client", path=join(parts), sent=sent[0])
    return response, sent[0]


async def _copy(response: web.StreamResponse, source: SourceFile, start: int, length: int,
                budget: Budget, sent: list[int]) -> None:
    """Write ``length`` bytes of the file from ``start``, a block at a time, each held
    against ``budget`` until it is handed to the connection (counted in ``sent[0]``)."""
    offset, end = start, start + length
    while offset < end:
        size = min(BLOCK, end - offset)
        async with budget.hold(size):
            block = await asyncio.to_thread(_read, source, offset, size)
            await response.write(block)
        offset += size
        sent[0] += size


def _read(source: SourceFile, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset``, from the file as it was when it was opened."""
    block = os.pread(source.fd, size, offset)
    if len(block) != size:
        raise SourceChanged("the file became shorter while it was sent")
    source.check_unchanged()
    return block


def _abort(request: web.Request) -> None:
    """Close the connection at once: the client sees fewer bytes than announced."""
    if request.transport is not None:
        request.transport.abort()
