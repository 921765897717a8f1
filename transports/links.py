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
(``SourceFile``, as for chunks: never opened again by a path, which could follow them).
It is sent from the request's thread in blocks of ``BLOCK`` bytes, each read into a buffer
lent by the endpoint's memory ``Budget`` and held against it until it is written, within
the endpoint's deadline for its size (``Limits.deadline``): a reader slower than
``transfer_min_rate`` is cut off. A file that
changes while it is sent is cut off too, so the client sees a short download (and a new
ETag when it resumes) rather than a mix of two versions.
"""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import mimetypes
import os
import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import structlog

from core.refusals import refused
from protocol.paths import PathRefused, join
from protocol.transfer import Refused, Share
from transports.chunks import SourceChanged, SourceFile, TransferError, pread_into
from transports.connection import Request
from transports.errors import Disconnected, TooSlow
from transports.limits import Budget, Limits

log = structlog.get_logger("transports.links")

BLOCK = 256 << 10  # bytes read and written at a time, per download
_SUFFIX_ZERO = re.compile(r"^bytes=-0+$", re.IGNORECASE)
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
_ETAGS = re.compile(r'((W/)?"([\x21\x23-\x7e\x80-\xff]+)")(?:\s*,\s*|$)|(.)')


@dataclass(frozen=True)
class Plan:
    """What to answer: a status, and for 200 and 206 the bytes to send."""

    status: int
    start: int = 0
    length: int = 0


class ETag(NamedTuple):
    is_weak: bool
    value: str


def open_file(share: Share, place: Path, parts: tuple[str, ...]) -> SourceFile:
    """The link's file, opened from the share's root. The reasons name the path inside
    the share only: whoever holds a link learns nothing of the disk."""
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


def _etags(value: str | None) -> tuple[ETag, ...] | None:
    """The entity tags of an ``If-Match`` or ``If-None-Match`` header (None: no header);
    what follows one that cannot be read is left out."""
    if value is None:
        return None
    if value.strip() == "*":
        return (ETag(False, "*"),)
    found = []
    for match in _ETAGS.finditer(value):
        weak, tag, garbage = match.group(2, 3, 4)
        if garbage:
            break
        found.append(ETag(bool(weak), tag))
    return tuple(found)


def _date(value: str | None) -> float | None:
    """An HTTP date, in seconds since the epoch (None: none, or not a date)."""
    if value is None:
        return None
    parsed = email.utils.parsedate(value)
    if parsed is None:
        return None
    try:
        return float(calendar.timegm(parsed))
    except (ValueError, OverflowError):
        return None


def http_date(seconds: int) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def _matches(tag: str, tags: tuple[ETag, ...], *, weak: bool) -> bool:
    value = tag.strip('"')
    return any(t.value in (value, "*") and (weak or not t.is_weak) for t in tags)


def _if_range_holds(headers: Mapping[str, str], tag: str, mtime: int) -> bool:
    """Does the client's copy (``If-Range``) still match: the same ETag (compared strongly),
    or exactly the Last-Modified date we send? No ``If-Range``: yes."""
    value = headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == tag  # a weak tag never matches (RFC 9110 §13.1.5)
    date = _date(value)
    return date is not None and int(date) == mtime


def _span(text: str) -> tuple[int | None, int | None]:
    """One range, ``bytes=a-b`` as (a, b + 1), ``a-`` as (a, None), ``-n`` as (-n, None);
    ``ValueError`` for several ranges or one that cannot be read."""
    match = _RANGE.match(text)
    if match is None:
        raise ValueError("range not in acceptable format")
    first, last = match.groups()
    start = int(first) if first else None
    stop = int(last) if last else None
    if start is None and stop is not None:  # the last n bytes
        return -stop, None
    if start is not None and stop is not None:
        stop += 1  # inclusive in the header
        if start >= stop:
            raise ValueError("start cannot be after end")
    if start is None and stop is None:
        raise ValueError("no start or end of range")
    return start, stop


def plan(headers: Mapping[str, str], size: int, tag: str, mtime: int) -> Plan:
    """The answer to a request with ``headers`` for a file of ``size`` bytes with ``tag``
    and ``mtime`` (whole seconds, as Last-Modified says it): preconditions first, then the
    range."""
    if (wanted := _etags(headers.get("If-Match"))) is not None:
        if not _matches(tag, wanted, weak=False):
            return Plan(412)
    elif (since := _date(headers.get("If-Unmodified-Since"))) is not None and mtime > since:
        return Plan(412)
    if (seen := _etags(headers.get("If-None-Match"))) is not None:
        if _matches(tag, seen, weak=True):
            return Plan(304)
    elif (since := _date(headers.get("If-Modified-Since"))) is not None and mtime <= since:
        return Plan(304)
    whole = Plan(200, 0, size)
    text = headers.get("Range")
    if text is None or not _if_range_holds(headers, tag, mtime):
        return whole
    if _SUFFIX_ZERO.match(text.strip()):  # the last 0 bytes: nothing to send
        return Plan(416)
    try:
        start, stop = _span(text)
    except ValueError:  # several ranges, or one that cannot be read: ignored (RFC 9110 §14.2)
        return whole
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


def answer(request: Request, source: SourceFile, parts: tuple[str, ...], limits: Limits,
           budget: Budget) -> int:
    """Answer a link's ``GET`` or ``HEAD`` with the open file ``source`` (at ``parts`` in
    its share); returns the file's bytes sent (however the answer ended)."""
    name = parts[-1]
    info = source.stat
    tag = etag(info.identity)
    mtime = info.mtime_ns // 1_000_000_000
    todo = plan(request.headers, info.size, tag, mtime)
    headers = {"ETag": tag, "Accept-Ranges": "bytes", "Cache-Control": "private",
               "X-Content-Type-Options": "nosniff"}
    if todo.status not in (412, 416):
        headers["Last-Modified"] = http_date(mtime)
    if todo.status == 416:
        headers["Content-Range"] = f"bytes */{info.size}"
    if todo.status in (200, 206):
        headers["Content-Disposition"] = disposition(name)
        headers["Content-Type"] = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if todo.status == 206:
        headers["Content-Range"] = \
            f"bytes {todo.start}-{todo.start + todo.length - 1}/{info.size}"
    sent = [0]  # bytes handed to the connection so far, however the answer ends
    deadline = limits.deadline(todo.length)
    until = time.monotonic() + deadline
    try:
        if todo.status not in (200, 206):
            request.respond(todo.status, headers, deadline=until)
            return 0
        request.respond(todo.status, headers, length=todo.length, deadline=until)
        if request.method != "HEAD":
            _copy(request, source, todo.start, todo.length, budget, until, sent)
    except TooSlow:
        refused("transfer_peer", request.remote or "?", f"read a download link slower than "
                f"{deadline:.0f} s allow for {todo.length} bytes (transfer_min_rate): cut off",
                path=join(parts))
        request.abort()
    except SourceChanged as exc:
        log.warning("download cut off: the file changed while it was sent", path=join(parts),
                    reason=str(exc), sent=sent[0])
        request.abort()
    except Disconnected:  # the client went away (stopped, or resumes later): ordinary
        log.debug("download ended by the client", path=join(parts), sent=sent[0])
        request.close = True
    return sent[0]


def _copy(request: Request, source: SourceFile, start: int, length: int, budget: Budget,
          until: float, sent: list[int]) -> None:
    """Write ``length`` bytes of the file from ``start``, a block at a time, each read into
    a buffer held against ``budget`` until it is written (counted in ``sent[0]``)."""
    offset, end = start, start + length
    while offset < end:
        size = min(BLOCK, end - offset)
        with budget.buffer(size) as block:
            if pread_into(source.fd, block, offset) != size:
                raise SourceChanged("the file became shorter while it was sent")
            source.check_unchanged()
            request.write(block, until)
        offset += size
        sent[0] += size
