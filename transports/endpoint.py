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

Requests are served off the event loop, each connection on a thread of its own with a
blocking socket (``transports.server``, which bounds the connections, their TLS
handshakes and their idle time); a handler runs on its connection's thread from the
ticket to the last byte of its answer. A chunk is read into a buffer lent by the budget,
hashed and written from it; a pushed chunk is received into one, checked and written.

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
    POST /transfer/v1/receive/have?share=S           {"files": [{"path","size","mtime_ns"}]}
                                                     which of them have landed already
    POST /transfer/v1/receive/discard?share=S&path=P the sender gave up: the part file goes

File operations (the hub, for a user with the right on the share: ``protocol.files``; the
ticket is for this one operation and body, taken once; ``transports.fileops``):

    POST /transfer/v1/fileop?share=S&op=OP      {"op","path","nonce","to",…}  -> the answer

Download links (anyone holding the link; its ticket, ``op: read`` for one file, is in the
query: ``protocol.links``, served by ``transports.links``):

    GET|HEAD /transfer/v1/link/<share>/<path>?ticket=T   the file, with ranges, ETag, …

docs/TRANSFERS.md has the whole protocol.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

import msgspec
import structlog

from core.refusals import refused
from core.tasks import Supervisor
from protocol import tickets
from protocol.files import FILEOP_PATH, FileOpRequest
from protocol.links import LINK, LINK_PATH
from protocol.paths import PathRefused, join
from protocol.transfer import (
    MAX_CHUNK,
    PREFIX,
    CommitRequest,
    FilesRequest,
    HaveRequest,
    OpenRequest,
    Refused,
    Share,
)
from transports import fileops, links, reading
from transports.chunks import MAX_CHUNKS, ChunkCorrupt, DiskFull, Stat, TransferError, chunk_count, span
from transports.connection import Connection, Request
from transports.errors import Disconnected, Malformed, TooSlow
from transports.grants import Grants
from transports.limits import SERVE_MEMORY, Budget, Limits
from transports.partial import PartialFile
from transports.receiving import Receiving
from transports.requests import (
    BATCH_HOLD,
    batch_files,
    int_param,
    read_chunk_body,
    read_json,
    send,
    send_json,
)
from transports.server import MAX_CONNECTIONS, ThreadedServer, Timeouts
from transports.small import SmallFile, land_small

log = structlog.get_logger("transports.endpoint")

PUSH_IDLE = 600.0  # seconds a pushed file may sit untouched before its part file is closed
BUFFER_IDLE = 10.0  # seconds an unused buffer of the budget's pool is kept
SWEEP = 10.0  # seconds between looks for both
MAX_BATCH_FILES = 10_000  # small files per batch request
REFUSED = (400, 403, 408, 413)  # answers that turn a peer away (counted, logged)
# what each refusal is counted as (core.refusals); any other is the peer's own doing
_KIND = {"bad_path": "share_path", "no_ticket": "ticket", "ticket_refused": "ticket",
         "not_ready": "ticket"}

Handler = Callable[[Request], None]


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
    fileops: fileops.FileOps = field(default_factory=fileops.FileOps)  # the hub's, on files
    budget: Budget = field(default_factory=lambda: Budget(SERVE_MEMORY))  # bytes held at once
    max_connections: int = MAX_CONNECTIONS  # served at once; more wait their turn
    timeouts: Timeouts = field(default_factory=Timeouts)
    port: int = 0
    _tasks: Supervisor = field(default_factory=lambda: Supervisor("transfer endpoint"))
    _server: ThreadedServer | None = None
    _counting: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                      compare=False)

    # -- running
    async def start(self, host: str, port: int, context: ssl.SSLContext | None) -> int:
        """Listen on ``host``:``port`` (0: a free one) with TLS from ``context`` (None:
        plain HTTP, for tests), serving from threads; returns the port."""
        self.loop = asyncio.get_running_loop()  # where ``refresh`` runs, asked from threads
        server = ThreadedServer(self._dispatch, self._malformed, name="transfer",
                                max_connections=self.max_connections, timeouts=self.timeouts)
        self.port = await asyncio.to_thread(server.start, host, port, context)
        self._server = server
        if self._tasks.closed:  # started again after a stop
            self._tasks = Supervisor("transfer endpoint")
        self._tasks.spawn(self._sweep_idle(), name="push-idle-sweeper")
        return self.port

    async def _sweep_idle(self) -> None:
        while True:
            await asyncio.sleep(SWEEP)
            now = time.monotonic()
            self.budget.trim(now - BUFFER_IDLE)
            closed = self.close_idle(now - PUSH_IDLE)
            if closed:
                log.info("closed pushed files nobody sent to for a while", files=closed,
                         idle_seconds=PUSH_IDLE)

    def close_idle(self, before: float) -> int:
        """Close the part files of pushes untouched since ``before`` (monotonic): a sender
        that went away must not hold them open (a sender that comes back resumes)."""
        return self.receiving.close_idle(before)

    async def stop(self) -> None:
        """Stop listening, end the connections (waiting for their threads within
        ``timeouts.stop``) and close the files being received. Safe to call twice."""
        await self._tasks.close(deadline=5)
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.stop)
        self.receiving.close_all()

    def _count(self, name: str, amount: int = 1) -> None:
        """Add to a counter: requests on several threads count at once."""
        with self._counting:
            setattr(self, name, getattr(self, name) + amount)

    # -- routing, on the connection's thread
    def _route(self, request: Request) -> Handler:
        path = request.path
        if path.startswith(LINK_PATH + "/"):
            share, _, rest = path[len(LINK_PATH) + 1:].partition("/")
            if share and rest:
                try:
                    request.route = {"share": urllib.parse.unquote(share, errors="strict"),
                                     "path": "/".join(urllib.parse.unquote(name, errors="strict")
                                                      for name in rest.split("/"))}
                except UnicodeDecodeError:
                    raise Refused(400, "bad_path", "the link's path is not UTF-8") from None
                return self._method(request, {"GET": self.link})
        handlers = self._routes.get(path)
        if handlers is None:
            raise Refused(404, "not_found", f"no {path!r} here")
        return self._method(request, handlers)

    @staticmethod
    def _method(request: Request, handlers: dict[str, Handler]) -> Handler:
        handler = handlers.get("GET" if request.method == "HEAD" else request.method)
        if handler is None or (request.method == "HEAD" and "GET" not in handlers):
            raise Refused(405, "method_not_allowed", f"{request.method} is not answered here "
                          f"(only {', '.join(handlers)})")
        return handler

    @functools.cached_property
    def _routes(self) -> dict[str, dict[str, Handler]]:
        return {
            f"{PREFIX}/stat": {"GET": self.stat},
            f"{PREFIX}/chunk": {"GET": self.chunk},
            f"{PREFIX}/files": {"POST": self.files},
            f"{PREFIX}/receive/open": {"POST": self.receive_open},
            f"{PREFIX}/receive/chunk": {"PUT": self.receive_chunk},
            f"{PREFIX}/receive/commit": {"POST": self.receive_commit},
            f"{PREFIX}/receive/files": {"POST": self.receive_files},
            f"{PREFIX}/receive/discard": {"POST": self.receive_discard},
            f"{PREFIX}/receive/have": {"POST": self.receive_have},
            FILEOP_PATH: {"POST": self.fileop},
        }

    def _dispatch(self, request: Request) -> None:
        """Answer one request: its handler's answer, or the refusal it raised."""
        try:
            self._route(request)(request)
        except Refused as exc:
            self._answer_refusal(request, exc)
        except Malformed as exc:  # a chunked body's framing: nothing after it can be read
            request.close = True
            self._answer_refusal(request, Refused(400, "bad_request", str(exc)))
        except (Disconnected, TooSlow):
            request.close = True  # nothing more can be said on this connection
        except Exception:
            log.exception("a transfer request failed", method=request.method,
                          path=request.path, peer=request.remote)
            request.close = True
            if not request.answered:
                send_json(request, {"error": {"code": "internal_error", "message":
                                              "the endpoint failed; see the agent's log"}},
                          self.limits, status=500)

    def _answer_refusal(self, request: Request, exc: Refused) -> None:
        if exc.status in REFUSED:
            self._refuse(request, exc, request.query.get("path")
                         or request.route.get("path", ""))
        if request.answered:  # refused after its answer began: it can only be cut short
            request.abort()
            return
        if exc.status in (408, 413):  # the rest of its body is neither read nor waited for
            request.close = True
        send_json(request, {"error": {"code": exc.code, "message": exc.message}},
                  self.limits, status=exc.status)

    def _refuse(self, request: Request, exc: Refused, path: str) -> None:
        self._count("refused")
        refused(_KIND.get(exc.code, "transfer_peer"), request.remote or "?", exc.message,
                code=exc.code, path=path, share=request.query.get("share")
                or request.route.get("share", ""))

    def _malformed(self, conn: Connection, exc: Malformed) -> None:
        """Bytes that are no request: answered 400, counted (then the connection closes)."""
        self._count("refused")
        refused("transfer_peer", conn.remote or "?", f"not an HTTP/1.1 request: {exc}",
                code="bad_request")
        conn.reject(400, "application/json", msgspec.json.encode({"error": {
            "code": "bad_request", "message": f"not an HTTP/1.1 request: {exc}"}}),
                    time.monotonic() + self.limits.grace)

    # -- reading
    def stat(self, request: Request) -> None:
        share, parts, scope = self._allow(request, "read")
        place = self._place(share, parts, scope)
        answer = reading.stat(share, place, parts, scope.tree, self._bound(share, scope),
                              self.limits.max_files)
        send_json(request, answer, self.limits)

    def chunk(self, request: Request) -> None:
        share, parts, scope = self._allow(request, "read")
        place = self._place(share, parts, scope)
        index, chunk = int_param(request, "index"), int_param(request, "chunk")
        if not 0 < chunk <= MAX_CHUNK:
            raise Refused(400, "bad_chunk", f"chunk size must be 1 to {MAX_CHUNK} bytes")
        identity = request.query.get("identity", "")
        with self.budget.buffer(chunk) as buffer:  # a puller may ask for many chunks at once
            data, digest = reading.read_chunk(share, place, index, chunk, identity, buffer)
            self._count("served_chunks")
            self._count("served_bytes", len(data))
            send(request, data, self.limits, "application/octet-stream",
                 {"X-Ferry-Hash": digest.hex()})

    def files(self, request: Request) -> None:
        share, scope = self._grant(request, "read")  # before the body is read
        body = read_json(request, FilesRequest, self.limits)
        if not 0 < len(body.paths) <= MAX_BATCH_FILES:
            raise Refused(400, "bad_request", f"1 to {MAX_BATCH_FILES} paths per request")
        names = [join(self._path(scope, text, "read")) for text in body.paths]
        with self.budget.hold(BATCH_HOLD):
            payload = reading.read_batch(share, names, self._bound(share, scope), scope.tree)
            self._count("served_bytes", len(payload))
            send(request, payload, self.limits, "application/x-ferry-files")

    # -- download links
    def link(self, request: Request) -> None:
        """A download link's file, to whoever holds the link: its ticket (in the query) must
        be a link's, for this share and exactly this path."""
        ticket = request.query.get("ticket", "")
        if not ticket:
            raise Refused(403, "no_ticket", "a download link carries its ticket (…?ticket=…): "
                          "use the whole link")
        share, scope = self._admit(ticket, request.route["share"], "read", "link refused: ")
        if scope.job != LINK or scope.tree:
            raise Refused(403, "ticket_refused", "link refused: a transfer's ticket, not a "
                          "download link's")
        parts = self._path(scope, request.route["path"], "read")
        if not parts:
            raise Refused(400, "bad_path", "a link serves a file, not a share's root")
        place = self._place(share, parts, scope)
        source = links.open_file(share, place, parts)
        try:
            sent = links.answer(request, source, parts, self.limits, self.budget)
        finally:
            source.close()
        self._count("served_links")
        self._count("served_bytes", sent)

    # -- file operations
    def fileop(self, request: Request) -> None:
        """One operation on the share's files, asked by the hub with a ticket for exactly
        it (``transports.fileops``); the ticket is checked before the body is read."""
        op = fileops.op_of(request.query.get("op", ""))
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Ticket "):
            raise Refused(403, "no_ticket", "a file operation needs a ticket "
                          "(Authorization: Ticket …)")
        share, scope = self._admit(auth[len("Ticket "):], request.query.get("share", ""), op,
                                   "file operation refused: ")
        body = read_json(request, FileOpRequest, self.limits)
        send_json(request, self.fileops.run(share, scope, body), self.limits)

    # -- writing
    def receive_open(self, request: Request) -> None:
        share, parts, scope = self._allow(request, "write")
        place = self._place(share, parts, scope, write=True)
        body = read_json(request, OpenRequest, self.limits)
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
            have = part.open()
        except PathRefused as exc:
            raise Refused(400, "bad_path", str(exc)) from None
        except DiskFull as exc:
            raise Refused(507, "disk_full", str(exc)) from None
        except (TransferError, OSError) as exc:
            raise Refused(409, "cannot_write", str(exc)) from None
        self.receiving.replace(key, part)
        send_json(request, {"missing": part.missing(), "have": have}, self.limits)

    def _partial(self, share: Share, parts: tuple[str, ...]
                 ) -> tuple[tuple[str, str], PartialFile]:
        """The file being received at this path, in use until ``receiving.release``."""
        key = (share.id, join(parts))
        part = self.receiving.take(key)
        if part is None:
            raise Refused(409, "not_open", "open the file first (receive/open)")
        return key, part

    def receive_chunk(self, request: Request) -> None:
        share, parts, _ = self._allow(request, "write")
        key, part = self._partial(share, parts)
        try:
            self._write_chunk(request, part)
        finally:
            self.receiving.release(key)

    def _write_chunk(self, request: Request, part: PartialFile) -> None:
        index = int_param(request, "index")
        if not 0 <= index < part.count:
            raise Refused(400, "bad_chunk", f"chunk {index} is outside the file")
        _, length = span(part.size, part.chunk, index)
        try:
            digest = bytes.fromhex(request.headers.get("X-Ferry-Hash", ""))
        except ValueError:
            raise Refused(400, "bad_hash", "X-Ferry-Hash must be the chunk's BLAKE3, hex") \
                from None
        announced = request.body.length
        if announced is not None and announced != length:
            raise Refused(400, "bad_chunk", f"chunk {index} has {length} bytes, not "
                          f"{announced}")
        with self.budget.buffer(length) as buffer:
            read_chunk_body(request, buffer, self.limits)
            try:
                part.write(index, buffer, digest)
            except ChunkCorrupt as exc:
                raise Refused(422, "chunk_corrupt", str(exc)) from None
            except DiskFull as exc:
                raise Refused(507, "disk_full", str(exc)) from None
            except TransferError as exc:
                raise Refused(409, "cannot_write", str(exc)) from None
        self._count("received_chunks")
        self._count("received_bytes", length)
        request.respond(204, deadline=time.monotonic() + self.limits.grace)

    def receive_commit(self, request: Request) -> None:
        share, parts, _ = self._allow(request, "write")
        key, part = self._partial(share, parts)
        try:
            body = read_json(request, CommitRequest, self.limits)
            try:
                whole = part.commit(body.hash)
            except ChunkCorrupt as exc:
                self.receiving.forget(key)
                raise Refused(422, "file_corrupt", str(exc)) from None
            except TransferError as exc:
                raise Refused(409, "cannot_write", str(exc)) from None
            self.receiving.forget(key)
        finally:
            self.receiving.release(key)
        send_json(request, {"hash": whole}, self.limits)

    def receive_discard(self, request: Request) -> None:
        """The sender gave up on this file for good (its last attempt failed, or it was
        aborted): its part file and journal go, unless a request of it still runs."""
        share, parts, scope = self._allow(request, "write")
        place = self._place(share, parts, scope, write=True)
        key = (share.id, join(parts))
        if self.receiving.busy(key):
            raise Refused(409, "busy", f"{join(parts)!r} is being received right now")
        self.receiving.drop(key)
        try:
            gone = PartialFile.remove(place, share.root)
        except PathRefused as exc:
            raise Refused(400, "bad_path", str(exc)) from None
        send_json(request, {"discarded": gone}, self.limits)

    def receive_have(self, request: Request) -> None:
        """Which of the files a sender is about to send have landed already, with the size
        and mtime they have at the sender (a pushed folder resumes by file, as a pulled one
        does). Each path is checked as its write would be; a refused one is not "there"
        (its send is refused by name)."""
        share, scope = self._grant(request, "write")  # before the body is read
        body = read_json(request, HaveRequest, self.limits)
        if not 0 < len(body.files) <= MAX_BATCH_FILES:
            raise Refused(400, "bad_request", f"1 to {MAX_BATCH_FILES} files per request")
        bound = self._bound(share, scope)
        have = []
        for landing in body.files:
            try:
                place = self._place(share, self._path(scope, landing.path, "write"), scope,
                                    write=True, bound=bound)
                st = place.stat(follow_symlinks=False)
            except Refused as exc:
                if exc.status in REFUSED:
                    self._refuse(request, exc, landing.path)
                continue
            except OSError:
                continue
            if S_ISREG(st.st_mode) and st.st_size == landing.size and \
                    st.st_mtime_ns == landing.mtime_ns:
                have.append(landing.path)
        send_json(request, {"have": have}, self.limits)

    def receive_files(self, request: Request) -> None:
        """Small files, each a header line and its bytes; each is checked against its own
        ticket scope and hash, written aside, flushed to disk with the rest of the batch,
        and renamed into place on its own."""
        share, scope = self._grant(request, "write")  # before the body is read
        with self.budget.hold(BATCH_HOLD):
            deadline = self.limits.deadline(BATCH_HOLD)
            try:
                results, landing = self._batch(request, share, scope,
                                               time.monotonic() + deadline)
            except TooSlow:
                raise Refused(408, "too_slow", f"the batch did not arrive within {deadline:.0f}"
                              " s (transfer_min_rate)") from None
            landed = land_small([f for _, f in landing], share.root)
        for (index, _), result in zip(landing, landed, strict=True):
            results[index]["error" if isinstance(result, TransferError) else "hash"] = \
                str(result)
        send_json(request, {"files": results}, self.limits)

    def _batch(self, request: Request, share: Share, scope: tickets.TicketScope, until: float
               ) -> tuple[list[dict[str, str]], list[tuple[int, SmallFile]]]:
        """The files of a batch as they arrive: each one's result so far, and those that
        may land (with the index of their result)."""
        results: list[dict[str, str]] = []
        landing: list[tuple[int, SmallFile]] = []
        bound: Path | None = None  # where the ticket's path really is, once looked up
        for header, data in batch_files(request, MAX_BATCH_FILES, until):
            self._count("received_bytes", len(data))
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
            landing.append((len(results) - 1, SmallFile(place, data, digest,
                                                        header.mtime_ns, header.mode)))
        return results, landing
