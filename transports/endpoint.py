"""The transfer endpoint a serving agent runs for its shares (HTTPS, ticket per request).

Every request names a share (by id) and a path inside it, and carries a
ticket from the hub (``Authorization: Ticket <ticket>``) that covers exactly
that: this server, that share, that path, that direction. Anything else is
answered 403 (or 400 for a path that is not allowed) with the reason, and
logged with the peer's address.

Reading (the receiver pulls; ticket ``op: read``):

    GET  /transfer/v1/stat?share=S&path=P           the file, or a folder's files (tree ticket)
    GET  /transfer/v1/chunk?share=S&path=P&index=N&chunk=C&identity=I
                                                    chunk N's bytes; X-Ferry-Hash is its BLAKE3
    POST /transfer/v1/files?share=S  {"paths": [...]}   small files in one answer

Writing (the sender pushes; ticket ``op: write``):

    POST /transfer/v1/receive/open?share=S&path=P    {"size","chunk","identity","mode","mtime_ns"}
                                                    -> {"missing": [chunk indexes]}
    PUT  /transfer/v1/receive/chunk?share=S&path=P&index=N   bytes, X-Ferry-Hash
    POST /transfer/v1/receive/commit?share=S&path=P  {"hash": whole-file hash or null}
    POST /transfer/v1/receive/files?share=S          small files in one request

docs/TRANSFERS.md has the whole protocol.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import tickets
from protocol.paths import PathRefused, join, share_parts
from protocol.tickets import Op, TicketRefused
from transports import reading
from transports.chunks import (
    MAX_CHUNKS,
    ChunkCorrupt,
    DiskFull,
    PartialFile,
    Stat,
    TransferError,
    chunk_count,
    span,
)
from transports.receiving import Receiving
from transports.requests import batch_files, int_param, json_response, read_json
from transports.shares import resolve
from transports.small import SmallFile, land_small
from transports.wire import (
    MAX_CHUNK,
    PREFIX,
    CommitRequest,
    FilesRequest,
    OpenRequest,
    Refused,
    Share,
)

log = structlog.get_logger("transports.endpoint")

PUSH_IDLE = 600.0  # seconds a pushed file may sit untouched before its part file is closed
PUSH_SWEEP = 60.0  # seconds between looks for such files
MAX_BATCH_FILES = 10_000  # small files per batch request


@dataclass
class TransferEndpoint:
    """Serves ``shares`` for the server with client id ``server_id``."""

    server_id: str
    ticket_key: Ed25519PublicKey | None  # None: not enrolled yet, every ticket is refused
    shares: dict[str, Share] = field(default_factory=dict)
    refused: int = 0  # requests refused so far (for the status page)
    served_chunks: int = 0
    received_chunks: int = 0
    served_bytes: int = 0  # file bytes sent and received (chunks and small files)
    received_bytes: int = 0
    # asks the hub for this agent's shares now: a share made a moment ago is served at once
    refresh: Callable[[], Awaitable[None]] | None = None
    receiving: Receiving = field(default_factory=Receiving)  # pushed files being received
    _sweeper: asyncio.Task[None] | None = None
    _runner: web.AppRunner | None = None
    port: int = 0

    # -- running
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_CHUNK + (1 << 20),
                              middlewares=[self._errors])
        app.add_routes([
            web.get(f"{PREFIX}/stat", self.stat),
            web.get(f"{PREFIX}/chunk", self.chunk),
            web.post(f"{PREFIX}/files", self.files),
            web.post(f"{PREFIX}/receive/open", self.receive_open),
            web.put(f"{PREFIX}/receive/chunk", self.receive_chunk),
            web.post(f"{PREFIX}/receive/commit", self.receive_commit),
            web.post(f"{PREFIX}/receive/files", self.receive_files),
        ])
        return app

    async def start(self, host: str, port: int, context: ssl.SSLContext | None) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._sweeper = asyncio.create_task(self._sweep_idle(), name="push-idle-sweeper")
        return self.port

    async def _sweep_idle(self) -> None:
        while True:
            await asyncio.sleep(PUSH_SWEEP)
            closed = self.close_idle(time.monotonic() - PUSH_IDLE)
            if closed:
                log.info("closed pushed files nobody sent to for a while", files=closed,
                         idle_seconds=PUSH_IDLE)

    def close_idle(self, before: float) -> int:
        """Close the part files of pushes untouched since ``before`` (monotonic): a sender
        that went away must not hold them open (a sender that comes back resumes)."""
        return self.receiving.close_idle(before)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.receiving.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as exc:
            if exc.status in (400, 403):
                self.refused += 1
                log.warning("transfer request refused", peer=request.remote, reason=exc.message,
                            path=request.query.get("path", ""), share=request.query.get("share"))
            return web.json_response({"error": {"code": exc.code, "message": exc.message}},
                                     status=exc.status)

    # -- what every request checks, before any body is read
    async def _grant(self, request: web.Request, op: Op) -> tuple[Share, tickets.TicketScope]:
        """The share this request may use: its ticket must be the hub's, unexpired, and for
        this server, this share and this direction."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Ticket "):
            raise Refused(403, "no_ticket", "a transfer needs a ticket (Authorization: Ticket …)")
        if self.ticket_key is None or not self.server_id:
            raise Refused(403, "not_ready", "this agent has not enrolled with its hub yet")
        share_id = request.query.get("share", "")
        try:
            scope = tickets.verify(self.ticket_key, auth[len("Ticket "):],
                                   server=self.server_id, share=share_id, path=None, op=op)
        except TicketRefused as exc:
            raise Refused(403, "ticket_refused", exc.why) from None
        share = self.shares.get(share_id)
        if share is None and self.refresh is not None:  # made a moment ago, at the hub
            await self.refresh()
            share = self.shares.get(share_id)
        if share is None:
            raise Refused(404, "no_share", f"no share {share_id!r} here")
        return share, scope

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

    async def _allow(self, request: web.Request, op: Op
                     ) -> tuple[Share, tuple[str, ...], tickets.TicketScope]:
        share, scope = await self._grant(request, op)
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

    # -- reading
    async def stat(self, request: web.Request) -> web.Response:
        share, parts, scope = await self._allow(request, "read")
        place = self._place(share, parts, scope)
        answer = await asyncio.to_thread(reading.stat, share, place, parts, scope.tree,
                                         self._bound(share, scope))
        return json_response(answer)

    async def chunk(self, request: web.Request) -> web.StreamResponse:
        share, parts, scope = await self._allow(request, "read")
        place = self._place(share, parts, scope)
        index, chunk = int_param(request, "index"), int_param(request, "chunk")
        if not 0 < chunk <= MAX_CHUNK:
            raise Refused(400, "bad_chunk", f"chunk size must be 1 to {MAX_CHUNK} bytes")
        identity = request.query.get("identity", "")
        data, digest = await asyncio.to_thread(reading.read_chunk, place, index, chunk, identity)
        self.served_chunks += 1
        self.served_bytes += len(data)
        return web.Response(body=data, content_type="application/octet-stream",
                            headers={"X-Ferry-Hash": digest.hex()})

    async def files(self, request: web.Request) -> web.Response:
        share, scope = await self._grant(request, "read")  # before the body is read
        body = await read_json(request, FilesRequest)
        if not 0 < len(body.paths) <= MAX_BATCH_FILES:
            raise Refused(400, "bad_request", f"1 to {MAX_BATCH_FILES} paths per request")
        names = [join(self._path(scope, text, "read")) for text in body.paths]
        payload = await asyncio.to_thread(reading.read_batch, share, names,
                                          self._bound(share, scope), scope.tree)
        self.served_bytes += len(payload)
        return web.Response(body=payload, content_type="application/x-ferry-files")

    # -- writing
    async def receive_open(self, request: web.Request) -> web.Response:
        share, parts, scope = await self._allow(request, "write")
        place = self._place(share, parts, scope, write=True)
        body = await read_json(request, OpenRequest)
        if body.size < 0 or not 0 < body.chunk <= MAX_CHUNK:
            raise Refused(400, "bad_request", "size must be >= 0 and chunk 1 to "
                          f"{MAX_CHUNK} bytes")
        if chunk_count(body.size, body.chunk) > MAX_CHUNKS:
            raise Refused(400, "bad_request", f"more than {MAX_CHUNKS} chunks: use larger ones")
        key = (share.id, join(parts))
        if self.receiving.busy(key):
            raise Refused(409, "busy", f"{join(parts)!r} is being received right now")
        self.receiving.drop(key)
        part = PartialFile(place, body.size, body.chunk,
                           Stat(body.size, body.mtime_ns, body.mode & 0o777, body.identity))
        if place.is_dir():
            raise Refused(409, "is_folder", f"{join(parts)!r} is a folder at the destination")
        try:
            have = await asyncio.to_thread(part.open)
        except DiskFull as exc:
            raise Refused(507, "disk_full", str(exc)) from None
        except (TransferError, OSError) as exc:
            raise Refused(409, "cannot_write", str(exc)) from None
        self.receiving.replace(key, part)
        return json_response({"missing": part.missing(), "have": have})

    def _partial(self, share: Share, parts: tuple[str, ...]
                 ) -> tuple[tuple[str, str], PartialFile]:
        """The file being received at this path, in use until ``receiving.release``."""
        key = (share.id, join(parts))
        part = self.receiving.take(key)
        if part is None:
            raise Refused(409, "not_open", "open the file first (receive/open)")
        return key, part

    async def receive_chunk(self, request: web.Request) -> web.Response:
        share, parts, _ = await self._allow(request, "write")
        key, part = self._partial(share, parts)
        try:
            return await self._write_chunk(request, part)
        finally:
            self.receiving.release(key)

    async def _write_chunk(self, request: web.Request, part: PartialFile) -> web.Response:
        index = int_param(request, "index")
        if not 0 <= index < part.count:
            raise Refused(400, "bad_chunk", f"chunk {index} is outside the file")
        _, length = span(part.size, part.chunk, index)
        try:
            digest = bytes.fromhex(request.headers.get("X-Ferry-Hash", ""))
        except ValueError:
            raise Refused(400, "bad_hash", "X-Ferry-Hash must be the chunk's BLAKE3, hex") \
                from None
        if request.content_length is not None and request.content_length != length:
            raise Refused(400, "bad_chunk", f"chunk {index} has {length} bytes, not "
                          f"{request.content_length}")
        data = await request.content.read(length + 1)
        while len(data) < length + 1 and not request.content.at_eof():
            more = await request.content.read(length + 1 - len(data))
            if not more:
                break
            data += more
        try:
            await asyncio.to_thread(part.write, index, data, digest)
        except ChunkCorrupt as exc:
            raise Refused(422, "chunk_corrupt", str(exc)) from None
        except DiskFull as exc:
            raise Refused(507, "disk_full", str(exc)) from None
        except TransferError as exc:
            raise Refused(409, "cannot_write", str(exc)) from None
        self.received_chunks += 1
        self.received_bytes += len(data)
        return web.Response(status=204)

    async def receive_commit(self, request: web.Request) -> web.Response:
        share, parts, _ = await self._allow(request, "write")
        key, part = self._partial(share, parts)
        try:
            body = await read_json(request, CommitRequest)
            try:
                whole = await asyncio.to_thread(part.commit, body.hash)
            except ChunkCorrupt as exc:
                self.receiving.forget(key)
                raise Refused(422, "file_corrupt", str(exc)) from None
            except TransferError as exc:
                raise Refused(409, "cannot_write", str(exc)) from None
            self.receiving.forget(key)
            return json_response({"hash": whole})
        finally:
            self.receiving.release(key)

    async def receive_files(self, request: web.Request) -> web.Response:
        """Small files, each a header line and its bytes; each is checked against its own
        ticket scope and hash, written aside, flushed to disk with the rest of the batch,
        and renamed into place on its own."""
        share, scope = await self._grant(request, "write")  # before the body is read
        results: list[dict[str, str]] = []
        landing: list[tuple[int, SmallFile]] = []
        bound: Path | None = None  # where the ticket's path really is, once looked up
        async for header, data in batch_files(request.content, MAX_BATCH_FILES):
            self.received_bytes += len(data)
            results.append({"path": header.path})
            try:
                bound = bound or self._bound(share, scope)
                place = self._place(share, self._path(scope, header.path, "write"), scope,
                                    write=True, bound=bound)
                if place.is_dir():
                    raise Refused(409, "is_folder", f"{header.path!r} is a folder at the "
                                  "destination")
                digest = bytes.fromhex(header.hash)
            except Refused as exc:
                if exc.status in (400, 403):
                    self.refused += 1
                    log.warning("transfer request refused", peer=request.remote,
                                reason=exc.message, path=header.path)
                results[-1]["error"] = exc.message
                continue
            except ValueError:
                results[-1]["error"] = "hash must be BLAKE3, hex"
                continue
            landing.append((len(results) - 1, SmallFile(place, data, digest, header.mtime_ns,
                                                        header.mode)))
        landed = await asyncio.to_thread(land_small, [f for _, f in landing])
        for (index, _), result in zip(landing, landed, strict=True):
            results[index]["error" if isinstance(result, TransferError) else "hash"] = \
                str(result)
        return json_response({"files": results})
