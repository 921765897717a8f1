"""What every request to the transfer endpoint is checked for before any body is read:
a ticket of the hub's for this server, share, path and direction, and a path that is
allowed as text and really is where the ticket says (no symlink to elsewhere).

``TransferEndpoint`` is a ``Grants``: it answers requests once these checks let them in.
The checks run on the request's own thread (``transports.server``); the one thing that
needs the event loop, asking the hub for a share made a moment ago (``refresh``), is sent
to it and waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from protocol import tickets
from protocol.links import LINK
from protocol.paths import PathRefused, join, share_parts
from protocol.tickets import FileOp, Op, TicketRefused
from protocol.transfer import Refused, Share
from transports import reading
from transports.connection import Request
from transports.shares import resolve

log = structlog.get_logger("transports.grants")

REFRESH_WAIT = 10.0  # seconds a request waits for the hub to tell this agent its shares


@dataclass
class Grants:
    """The shares of the server with client id ``server_id``, and who may use them."""

    server_id: str
    ticket_key: tickets.PublicKey | None  # None: not enrolled yet, every ticket is refused
    shares: dict[str, Share] = field(default_factory=dict)
    # asks the hub for this agent's shares now: a share made a moment ago is served at once
    refresh: Callable[[], Awaitable[None]] | None = None
    # the event loop ``refresh`` runs on (the endpoint's ``start`` takes the running one)
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False, compare=False)

    def _grant(self, request: Request, op: Op) -> tuple[Share, tickets.TicketScope]:
        """The share this request may use: its ticket must be the hub's, unexpired, and for
        this server, this share and this direction. A download link's ticket opens its
        link alone (``transports.links``), never a peer's request."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Ticket "):
            raise Refused(403, "no_ticket", "a transfer needs a ticket (Authorization: Ticket …)")
        share, scope = self._admit(auth[len("Ticket "):], request.query.get("share", ""), op)
        if scope.job == LINK:
            raise Refused(403, "ticket_refused", "a download link's ticket opens its link "
                          "only, not the transfer protocol")
        return share, scope

    def _admit(self, ticket: str, share_id: str, op: Op | FileOp, what: str = ""
               ) -> tuple[Share, tickets.TicketScope]:
        """``ticket`` checked for this server, ``share_id`` and ``op`` (its path is left to
        the caller), and the share it opens. ``what`` starts the reason of a refusal."""
        if self.ticket_key is None or not self.server_id:
            raise Refused(403, "not_ready", "this agent has not enrolled with its hub yet")
        try:
            scope = tickets.verify(self.ticket_key, ticket, server=self.server_id,
                                   share=share_id, path=None, op=op)
        except TicketRefused as exc:
            raise Refused(403, "ticket_refused", what + exc.why) from None
        share = self.shares.get(share_id)
        if share is None and self.refresh is not None:  # made a moment ago, at the hub
            self._refresh(self.refresh)
            share = self.shares.get(share_id)
        if share is None:
            raise Refused(404, "no_share", f"no share {share_id!r} here")
        return share, scope

    def _refresh(self, refresh: Callable[[], Awaitable[None]]) -> None:
        """Run ``refresh`` on the event loop and wait for it (at most ``REFRESH_WAIT``):
        a hub that does not answer leaves the shares as they are."""
        loop = self.loop
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:  # on the loop itself: it cannot wait
                return
        if loop is None or loop.is_closed():
            return
        async def asked() -> None:
            await refresh()

        coro = asked()
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop is gone (shutting down)
            coro.close()
            return
        try:
            future.result(timeout=REFRESH_WAIT)
        except Exception as exc:
            future.cancel()
            log.warning("could not ask the hub for this agent's shares", error=str(exc)
                        or type(exc).__name__)

    @staticmethod
    def _path(scope: tickets.TicketScope, text: str, op: Op) -> tuple[str, ...]:
        """A path of the request, allowed as text and covered by its ticket."""
        try:
            parts = share_parts(text, windows=sys.platform == "win32")
        except PathRefused as exc:
            raise Refused(400, "bad_path", str(exc)) from None
        if op == "write" and not parts:
            raise Refused(400, "bad_path", "a file is written at a path inside the share, "
                          "not at its root")
        if not tickets.covers(scope, join(parts)):
            raise Refused(403, "ticket_refused", "ticket for another path")
        return parts

    def _allow(self, request: Request, op: Op
               ) -> tuple[Share, tuple[str, ...], tickets.TicketScope]:
        share, scope = self._grant(request, op)
        return share, self._path(scope, request.query.get("path", ""), op), scope

    @staticmethod
    def _bound(share: Share, scope: tickets.TicketScope) -> Path:
        """Where the ticket's path really is: what it covers must really be there too, not
        reached through a symlink to elsewhere in the share."""
        try:
            return resolve(share.root, share_parts(scope.path))
        except PathRefused as exc:
            raise Refused(403, "ticket_refused", f"the ticket's path: {exc}") from None

    @classmethod
    def _place(cls, share: Share, parts: tuple[str, ...], scope: tickets.TicketScope,
               write: bool = False, bound: Path | None = None) -> Path:
        if write and os.path.islink(share.root.joinpath(*parts)):
            # writing through it would land somewhere the ticket does not name
            raise Refused(400, "bad_path", f"{join(parts)!r} is a symlink at the destination")
        try:
            place = resolve(share.root, parts)
        except PathRefused as exc:
            raise Refused(400, "bad_path", str(exc)) from None
        if not reading.inside(bound or cls._bound(share, scope), place, scope.tree):
            raise Refused(403, "ticket_refused", f"{join(parts)!r} leads outside the ticket's "
                          "path (through a symlink)")
        return place

