"""Download links: one file of a share, for anyone with a standard HTTP client.

A user who may read a share path asks the hub for a link (``POST /api/v1/link``); the
hub signs a ticket for exactly that file on the agent that serves it, for a given time,
and answers with a URL on that agent's transfer endpoint::

    https://files.example.org:7443/transfer/v1/link/<share id>/thefilm/a.mov?ticket=<ticket>

Whoever holds the URL may ``GET`` (or ``HEAD``) the file until the ticket expires: curl,
wget, aria2c, a browser. The ticket is an ordinary transfer ticket (``protocol.tickets``)
with ``op: read``, ``tree: false``, the file's path, and ``job: "link"``: the endpoint
serves a link only with a link's ticket, and refuses a link's ticket everywhere else.

This module holds what the hub, ``Session`` and the agent's endpoint must agree on: the
URL's shape, the marker, the limits on the expiry, and the bodies of the hub's call.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Annotated

import msgspec

from protocol.transfer import PREFIX

LINK = "link"  # the ``job`` of a link's ticket (never a job id: those are 24 hex digits)
LINK_PATH = f"{PREFIX}/link"  # + /<share id>/<path>
DEFAULT_EXPIRES = 3600  # seconds a link works when the caller does not say
MAX_EXPIRES = 7 * 86400  # a week: a link cannot be taken back, only left to expire

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class LinkRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A link to one file: ``path`` is ``share=<share>/<path>``, ``expires`` seconds."""

    path: Annotated[str, msgspec.Meta(min_length=1, max_length=4200)]
    expires: Annotated[int, msgspec.Meta(ge=1, le=MAX_EXPIRES)] = DEFAULT_EXPIRES


class Link(msgspec.Struct, frozen=True, kw_only=True):
    """The hub's answer: the URL to give away, until when it works, and how to check the
    agent's certificate (``pinnedpubkey`` for curl; "" for an agent older than links)."""

    url: str
    name: str  # the file's name: what to save it as
    share: str  # the share's name
    path: str  # the file's path inside the share
    expires: str  # ISO 8601, UTC
    expires_in: int  # seconds
    pinnedpubkey: str  # sha256//<base64>: curl --pinnedpubkey
    fingerprint: str  # SHA-256 of the agent's certificate (hex)


def link_path(share_id: str, path: str) -> str:
    """The URL path of a link to ``path`` (``a/b.mov``) of the share ``share_id``: each name
    percent-encoded, so that the last one is the file's name as clients save it."""
    names = [urllib.parse.quote(name, safe="") for name in path.split("/")]
    return f"{LINK_PATH}/{urllib.parse.quote(share_id, safe='')}/{'/'.join(names)}"


def link_url(base: str, share_id: str, path: str, ticket: str) -> str:
    """The whole link: the agent's transfer URL, the path, and the ticket."""
    query = urllib.parse.urlencode({"ticket": ticket})
    return f"{base.rstrip('/')}{link_path(share_id, path)}?{query}"


def parse_expires(value: int | str) -> int:
    """Seconds from ``3600``, ``"3600"``, ``"90s"``, ``"30m"``, ``"1h"``, ``"7d"``, ``"1w"``:
    ``ValueError`` saying what is allowed otherwise (or when it is out of 1 s to a week)."""
    if isinstance(value, bool):
        raise ValueError(f"expires must be a number of seconds or a duration, not {value!r}")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"expires {value!r} is not a duration: write seconds (3600) or a "
                             "number with s, m, h, d or w (90m, 1h, 7d)")
        seconds = int(match.group(1)) * _UNIT[match.group(2).lower()]
    if not 1 <= seconds <= MAX_EXPIRES:
        raise ValueError(f"expires must be 1 s to {MAX_EXPIRES // 86400} days "
                         f"({MAX_EXPIRES} s), not {seconds} s")
    return seconds
