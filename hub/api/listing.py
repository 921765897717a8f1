"""List answers at the API edge: paging parameters in, pages out, and how many run at once.

``/find`` and ``/{entity}/{id}/{relation}`` answer ``{"result": [...], "next": cursor}``
(PROTOCOL.md §5). Parameters (a JSON body, or URL parameters of a GET):

* ``limit``: records in the page, 1 to the hub's ``find_page_max`` (default
  ``find_page``). Above the maximum is a 422 naming it: an answer is never cut silently.
* ``skip`` (``offset`` is its older name): records dropped first, counted from the cursor.
* ``cursor``: the ``next`` of the answer before; continues after its last record.
* ``attributes``: the fields each record holds (and ``id``), as accsyn's ``find`` takes
  them; the large fields list answers leave out otherwise (a task's ``log_tail``,
  ``input``, ``result``) only when named. A name that is no field is a 422 naming it.

Listings are the costly reads a user can make, so each user (or agent) runs at most
``find_concurrent_per_user`` at once: one more gets ``429 too_many_queries`` with
``Retry-After``. A listing holds its place from the moment its request is authenticated
(before its body is read) until its answer is built. In the whole process at most
``find_concurrent`` are built at once, each taking its turn once its request is read (a
slow client holds up nobody else); others wait, so many users listing together cost the
hub a bounded amount of memory. Agents' work calls (check-in, claim,
heartbeat, report) are other endpoints and never wait here.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import msgspec
from aiohttp import web

from core.errors import ApiError
from hub.api.common import json_response, principal, runtime
from hub.config import HubConfig
from hub.entities.base import Entity
from hub.entities.paging import Listing, Page, decode_cursor

T = TypeVar("T")
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
RETRY_AFTER = 1  # seconds: a page takes well under that to build


class PageRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)] | None = None
    skip: Count | None = None
    offset: Count | None = None  # the older name of skip
    cursor: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    attributes: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                          msgspec.Meta(max_length=64)] = []


class ListResponse(msgspec.Struct, kw_only=True):
    result: list[dict[str, Any]]
    next: str | None


def page_of(kind: Entity, asked: PageRequest, config: HubConfig) -> Page:
    """The page ``asked`` names, within the hub's limits; 422 naming the parameter."""
    if asked.skip is not None and asked.offset is not None:
        raise ApiError(422, "invalid_value", "give 'skip' or 'offset' (its older name), not "
                       "both", {"field": "offset"})
    limit = config.find_page if asked.limit is None else asked.limit
    if limit > config.find_page_max:
        raise ApiError(422, "too_large", f"'limit' {limit} is above the most records one "
                       f"answer holds ({config.find_page_max}, the hub's find_page_max): ask "
                       "for the next page with the answer's 'next' cursor instead",
                       {"field": "limit"})
    return Page(limit=limit, skip=asked.skip or asked.offset or 0,
                after=None if asked.cursor is None else decode_cursor(asked.cursor),
                attributes=kind.attributes(asked.attributes), max_bytes=config.find_page_bytes)


def from_url(request: web.Request, kind: type[T], **given: Any) -> T:
    """``kind`` from the URL's paging parameters and ``given``; 400 naming the parameter.
    ``attributes`` may be repeated or comma-separated."""
    params: dict[str, Any] = dict(given)
    for name in ("limit", "skip", "offset"):
        text = request.query.get(name)
        if text is not None:
            try:
                params[name] = int(text)
            except ValueError:
                raise ApiError(400, "invalid_parameter", f"parameter '{name}' must be an "
                               "integer", {"field": name}) from None
    if "cursor" in request.query:
        params["cursor"] = request.query["cursor"]
    names = [n.strip() for value in request.query.getall("attributes", [])
             for n in value.split(",") if n.strip()]
    if names:
        params["attributes"] = names
    try:
        return msgspec.convert(params, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_parameter", str(exc).replace("- at `$.", "(parameter `")
                       + ")") from None


def answer(listing: Listing) -> web.Response:
    return json_response({"result": listing.records, "next": listing.next})


class Listings:
    """The listings of one hub process: each principal runs at most ``per_user`` at once
    (429 past that), and at most ``at_once`` of all are being built (the rest queue)."""

    def __init__(self, per_user: int, at_once: int) -> None:
        self.per_user = per_user
        self._running: Counter[tuple[str, str]] = Counter()
        self._turns = asyncio.Semaphore(at_once)

    @asynccontextmanager
    async def slot(self, kind: str, ident: str) -> AsyncIterator[Listings]:
        """A place among the principal's running listings, for a whole request."""
        key = (kind, ident)
        if self._running[key] >= self.per_user:
            raise ApiError(429, "too_many_queries", f"{self._running[key]} of your queries (find"
                           " or related records) are running, the most one user runs at once "
                           f"(the hub's find_concurrent_per_user); retry in {RETRY_AFTER} s, "
                           "or wait for one to answer", {"retry_after": RETRY_AFTER})
        self._running[key] += 1
        try:
            yield self
        finally:
            self._running[key] -= 1
            if not self._running[key]:
                del self._running[key]

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """A turn to build a page: taken once the request is read, so that a slow client
        (its body, its reading of the answer) holds up nobody else's listings."""
        async with self._turns:
            yield


# one per application (an app is one hub process's API), made at its first listing: the
# app is frozen by then, and the limits come from its runtime's config
_LISTINGS: weakref.WeakKeyDictionary[web.Application, Listings] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def listing_slot(request: web.Request) -> AsyncIterator[Listings]:
    """A place for one listing of the caller, held until the answer is built (401 without
    valid credentials, 429 when the caller already runs as many as it may). Build the
    page within the ``turn()`` of what it yields."""
    who = principal(request)
    listings = _LISTINGS.get(request.app)
    if listings is None:
        config = runtime(request).config
        listings = _LISTINGS.setdefault(request.app, Listings(config.find_concurrent_per_user,
                                                              config.find_concurrent))
    async with listings.slot(who.kind, who.id):
        yield listings
