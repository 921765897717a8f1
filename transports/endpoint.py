"""The transfer endpoint a serving agent runs for its shares (HTTPS, ticket per request).

Every request names a share (by id) and a path inside it, and carries a
ticket from the hub (``Authorization: Ticket <ticket>``) that covers exactly
that: this server, that share, that path, that direction (``transports.grants``).
Anything else is answered 403 (or 400 for a path that is not allowed) with the
reason, and counted as a refusal with the peer's address (``core.refusals``).

A peer is not trusted with this agent's memory either: request bodies are read
against their size and within a deadline (408 ``too_slow``, 413 ``too_large``),
and the chunk and batch bytes held at once, for all requests together, are
bounded (``transports.limits.Budget``): more requests wait their turn.

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
    POST /transfer/v1/receive/discard?share=S&path=P the sender gave up: the part file goes

Download links (anyone holding the link; its ticket, ``op: read`` for one file, is in the
query: ``protocol.links``, served by ``transports.links``):

    GET|HEAD /transfer/v1/link/<share>/<path>?ticket=T   the file, with ranges, ETag, …

docs/TRANSFERS.md has the whole protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from aiohttp import web

from core.refusals import refused
from core.tasks import Supervisor
from protocol import tickets
from protocol.links import LINK, LINK_PATH
from protocol.paths import PathRefused, join
from protocol.transfer import MAX_CHUNK, PREFIX, CommitRequest, FilesRequest, OpenRequest, Refused, Share
from transports import links, reading
from transports.chunks import MAX_CHUNKS, ChunkCorrupt, DiskFull, Stat, TransferError, chunk_count, span
from transports.grants import Grants
from transports.limits import SERVE_MEMORY, Budget, Limits
from transports.partial import PartialFile
from transports.receiving import Receiving
from transports.requests import (
    BATCH_HOLD,
    batch_files,
    int_param,
    json_response,
    read_chunk_body,
    read_json,
    send,
)
from transports.small import SmallFile, land_small

log = structlog.get_logger("transports.endpoint")

PUSH_IDLE = 600.0  # seconds a pushed file may sit untouched before its part file is closed
PUSH_SWEEP = 60.0  # seconds between looks for such files
MAX_BATCH_FILES = 10_000  # small files per batch request
REFUSED = (400, 403, 408, 413)  # answers that turn a peer away (counted, logged)
# what each refusal is counted as (core.refusals); any other is the peer's own doing
_KIND = {"bad_path": "share_path", "no_ticket": "ticket", "ticket_refused": "ticket",
         "not_ready": "ticket"}


@dataclass
class TransferEndpoint(Grants):
    """Serves ``shares`` for the server with client id ``server_id``, within ``limits``."""

    limits: Limits = field(default_factory=Limits)
    refused: int = 0  # requests refused so far (for the status page)
    served_chunks: int = 0
    served_links: int = 0  # answers to download links (transports.links), refusals aside
    received_chunks: int = 0
    served_bytes: int = 0  # file bytes sent and received (chunks and small files)
    received_bytes: int = 0
    receiving: Receiving = field(default_factory=Receiving)  # pushed files being received
    budget: Budget = field(default_factory=lambda: Budget(SERVE_MEMORY))  # bytes held at once
    _tasks: Supervisor = field(default_factory=lambda: Supervisor("transfer endpoint"))
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
            web.post(f"{PREFIX}/receive/discard", self.receive_discard),
            web.get(LINK_PATH + "/{share}/{path:.+}", self.link),  # and HEAD
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
        if self._tasks.closed:  # started again after a stop
            self._tasks = Supervisor("transfer endpoint")
        self._tasks.spawn(self._sweep_idle(), name="push-idle-sweeper")
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
        await self._tasks.close(deadline=5)
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
            if exc.status in REFUSED:
                self._refuse(request, exc, request.query.get("path")
                             or request.match_info.get("path", ""))
            response = web.json_response({"error": {"code": exc.code,
                                                    "message": exc.message}}, status=exc.status)
            if exc.status in (408, 413):  # the rest of its body is neither read nor waited for
                response.force_close()
                with contextlib.suppress(ConnectionError):
                    await response.prepare(request)
                    await response.write_eof()
                request.protocol.force_close()  # once the answer is out (no lingering)
            return response

    def _refuse(self, request: web.Request, exc: Refused, path: str) -> None:
        self.refused += 1
        refused(_KIND.get(exc.code, "transfer_peer"), request.remote or "?", exc.message,
                code=exc.code, path=path, share=request.query.get("share")
                or request.match_info.get("share", ""))

    # -- reading
    async def stat(self, request: web.Request) -> web.Response:
        share, parts, scope = await self._allow(request, "read")
        place = self._place(share, parts, scope)
        answer = await asyncio.to_thread(reading.stat, share, place, parts, scope.tree,
                                         self._bound(share, scope), self.limits.max_files)
        return json_response(answer)

    async def chunk(self, request: web.Request) -> web.StreamResponse:
        share, parts, scope = await self._allow(request, "read")
        place = self._place(share, parts, scope)
        index, chunk = int_param(request, "index"), int_param(request, "chunk")
        if not 0 < chunk <= MAX_CHUNK:
            raise Refused(400, "bad_chunk", f"chunk size must be 1 to {MAX_CHUNK} bytes")
        identity = request.query.get("identity", "")
        async with self.budget.hold(chunk):  # a puller may ask for many large chunks at once
            data, digest = await asyncio.to_thread(reading.read_chunk, share, place, index,
                                                   chunk, identity)
            self.served_chunks += 1
            self.served_bytes += len(data)
            return await send(request, data, self.limits, "application/octet-stream",
                              {"X-Ferry-Hash": digest.hex()})

    async def files(self, request: web.Request) -> web.StreamResponse:
        share, scope = await self._grant(request, "read")  # before the body is read
        body = await read_json(request, FilesRequest, self.limits)
        if not 0 < len(body.paths) <= MAX_BATCH_FILES:
            raise Refused(400, "bad_request", f"1 to {MAX_BATCH_FILES} paths per request")
        names = [join(self._path(scope, text, "read")) for text in body.paths]
        async with self.budget.hold(BATCH_HOLD):
            payload = await asyncio.to_thread(reading.read_batch, share, names,
                                              self._bound(share, scope), scope.tree)
            self.served_bytes += len(payload)
            return await send(request, payload, self.limits, "application/x-ferry-files")

    # -- download links
    async def link(self, request: web.Request) -> web.StreamResponse:
        """A download link's file, to whoever holds the link: its ticket (in the query) must
        be a link's, for this share and exactly this path."""
        ticket = request.query.get("ticket", "")
        if not ticket:
            raise Refused(403, "no_ticket", "a download link carries its ticket (…?ticket=…): "
                          "use the whole link")
        share, scope = await self._admit(ticket, request.match_info["share"], "read",
                                         "link refused: ")
        if scope.job != LINK or scope.tree:
            raise Refused(403, "ticket_refused", "link refused: a transfer's ticket, not a "
                          "download link's")
        parts = self._path(scope, request.match_info["path"], "read")
        if not parts:
            raise Refused(400, "bad_path", "a link serves a file, not a share's root")
        place = self._place(share, parts, scope)
        source = await asyncio.to_thread(links.open_file, share, place, parts)
        try:
            response, sent = await links.answer(request, source, parts, self.limits,
                                                self.budget)
        finally:
            source.close()
        self.served_links += 1
        self.served_bytes += sent
        return response

    # -- writing
    async def receive_open(self, request: web.Request) -> web.Response:
        share, parts, scope = await self._allow(request, "write")
        place = self._place(share, parts, scope, write=True)
        body = await read_json(request, OpenRequest, self.limits)
        if body.size < 0 or not 0 < body.chunk <= MAX_CHUNK:
            raise Refused(400, "bad_request", "size must be >= 0 and chunk 1 to "
                          f"{MAX_CHUNK} bytes")
        if chunk_count(body.size, body.chunk) > MAX_CHUNKS:
            raise Refused(400, "bad_request", f"more than {MAX_CHUNKS} chunks: use larger ones")
        if body.size > self.limits.max_file_size:
            raise Refused(413, "too_large", f"{body.size} bytes: this agent takes files of at "
                          f"most {self.limits.max_file_size} bytes (transfer_max_file_size)")
        key = (share.id, join(parts))
        if self.receiving.busy(key):
            raise Refused(409, "busy", f"{join(parts)!r} is being received right now")
        self.receiving.drop(key)
        part = PartialFile(place, body.size, body.chunk,
                           Stat(body.size, body.mtime_ns, body.mode & 0o777, body.identity),
                           root=share.root)
        if place.is_dir():
            raise Refused(409, "is_folder", f"{join(parts)!r} is a folder at the destination")
        try:
            have = await asyncio.to_thread(part.open)
        except PathRefused as exc:
            raise Refused(400, "bad_path", str(exc)) from None
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
        async with self.budget.hold(length):
            data = await read_chunk_body(request, length, self.limits)
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
            body = await read_json(request, CommitRequest, self.limits)
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

    async def receive_discard(self, request: web.Request) -> web.Response:
        """The sender gave up on this file for good (its last attempt failed, or it was
        aborted): its part file and journal go, unless a request of it still runs."""
        share, parts, scope = await self._allow(request, "write")
        place = self._place(share, parts, scope, write=True)
        key = (share.id, join(parts))
        if self.receiving.busy(key):
            raise Refused(409, "busy", f"{join(parts)!r} is being received right now")
        self.receiving.drop(key)
        try:
            gone = await asyncio.to_thread(PartialFile.remove, place, share.root)
        except PathRefused as exc:
            raise Refused(400, "bad_path", str(exc)) from None
        return json_response({"discarded": gone})

    async def receive_files(self, request: web.Request) -> web.Response:
        """Small files, each a header line and its bytes; each is checked against its own
        ticket scope and hash, written aside, flushed to disk with the rest of the batch,
        and renamed into place on its own."""
        share, scope = await self._grant(request, "write")  # before the body is read
        async with self.budget.hold(BATCH_HOLD):
            deadline = self.limits.deadline(BATCH_HOLD)
            try:
                async with asyncio.timeout(deadline):
                    results, landing = await self._batch(request, share, scope)
            except TimeoutError:
                raise Refused(408, "too_slow", f"the batch did not arrive within {deadline:.0f}"
                              " s (transfer_min_rate)") from None
            landed = await asyncio.to_thread(land_small, [f for _, f in landing], share.root)
        for (index, _), result in zip(landing, landed, strict=True):
            results[index]["error" if isinstance(result, TransferError) else "hash"] = \
                str(result)
        return json_response({"files": results})

    async def _batch(self, request: web.Request, share: Share, scope: tickets.TicketScope
                     ) -> tuple[list[dict[str, str]], list[tuple[int, SmallFile]]]:
        """The files of a batch as they arrive: each one's result so far, and those that
        may land (with the index of their result)."""
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
                if exc.status in REFUSED:
                    self._refuse(request, exc, header.path)
                results[-1]["error"] = exc.message
                continue
            except ValueError:
                results[-1]["error"] = "hash must be BLAKE3, hex"
                continue
            landing.append((len(results) - 1, SmallFile(place, data, digest, header.mtime_ns,
                                                        header.mode)))
        return results, landing
