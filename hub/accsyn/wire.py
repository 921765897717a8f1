"""Events in, answers out: the client's wire format.

A GET or DELETE carries its event as the URL's query string (the event's JSON,
percent-encoded whole); a PUT or POST as the body. A large ``data`` comes gzipped and
base64-encoded as ``gz_data``. Every answer is ``{"result": ...}``, or
``{"message": "<call>: why"}``, which the client raises as ``AccsynException``; the
HTTP status is the refusal's (the client reads only the body).
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
import zlib
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web

from hub.api.common import json_response
from hub.errors import Invalid

CALL: web.RequestKey[str] = web.RequestKey("accsyn_call", str)
# an event's fields the client always sends and the hub does not read (audience, eid,
# created, hostname, ident) are let through: the struct forbids nothing


class Event(msgspec.Struct, kw_only=True):
    uri: str
    data: Any = None
    gz_data: str | None = None
    query: str | None = None
    id: str | None = None
    session: str | None = None
    workspace: str | None = None


def answer(result: Any) -> web.Response:
    return json_response({"result": result})


def message(call: str, text: str, status: int) -> web.Response:
    return json_response({"message": f"{call}: {text}"}, status)


async def read_event(request: web.Request, max_size: int) -> Event:
    """The event of a request; ``Invalid`` saying what is wrong with it."""
    if request.method in ("GET", "DELETE"):
        raw = urllib.parse.unquote(request.rel_url.raw_query_string).encode()
    else:
        raw = await request.read()
    if not raw:
        raise Invalid("empty_event", "the request carries no event")
    try:
        event = msgspec.json.decode(raw, type=Event)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Invalid("invalid_event", f"the request is not an event: {exc}") from None
    if event.gz_data is not None:
        event.data = _inflate(event.gz_data, max_size)
        event.gz_data = None
    return event


def _inflate(text: str, max_size: int) -> Any:
    """``gz_data``: at most ``max_size`` bytes once inflated (a small body must not
    become a large one in the hub's memory)."""
    try:
        packed = base64.b64decode(text, validate=True)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        plain = inflater.decompress(packed, max_size)
        if inflater.unconsumed_tail:
            raise Invalid("too_large", f"gz_data: larger than {max_size} bytes once inflated "
                          "(the hub's max_body_size)", field="gz_data")
        return msgspec.json.decode(plain)
    except (binascii.Error, zlib.error, msgspec.DecodeError) as exc:
        raise Invalid("invalid_event", f"gz_data: not gzipped JSON in base64 ({exc})",
                      field="gz_data") from None


def accsyn_times(record: Any) -> Any:
    """A record's times as accsyn sends them (``2022-01-20T07:51:57.123``, UTC, no zone),
    which the client turns into ``datetime``: Ferry's ISO texts end with ``Z``."""
    if not isinstance(record, dict):
        return record
    return {k: _time(v) for k, v in record.items()}


def _time(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 24 and value.endswith("Z") and value[10] == "T":
        try:
            datetime.fromisoformat(value[:-1])
        except ValueError:
            return value
        return value[:-1]
    return value
