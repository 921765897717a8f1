"""The other side of the transfer endpoint: pull files from it, or push files to it.

A large file moves as chunks over ``streams`` concurrent requests, each
chunk checked against its hash where it lands; a chunk that arrives damaged
is fetched (or sent) again, a dropped connection is retried with backoff.
Files up to ``SMALL_FILE`` move many to a request. A pull into a file that
was interrupted before resumes from its journal (``transports.chunks``): only
the chunks that are not there yet travel.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import msgspec
import structlog

from protocol.paths import join, share_parts
from transports.chunks import (
    TOO_LARGE,
    ChunkCorrupt,
    PartialFile,
    SourceChanged,
    SourceFile,
    Stat,
    TooLarge,
    TransferError,
    chunk_hash,
    file_hash,
)
from transports.small import SmallFile, land_small
from transports.tls import pin
from transports.wire import (
    PREFIX,
    SMALL_FILE,
    FileHeader,
    StatAnswer,
)

log = structlog.get_logger("transports.client")

TRIES = 5  # per chunk request, for dropped connections and damaged chunks
Progress = Callable[[int], None]  # bytes verified, as they are


class TransferClient:
    """Talks to one serving agent's endpoint about one share, with one ticket."""

    def __init__(self, base_url: str, fingerprint: str | None, ticket: str, share: str, *,
                 streams: int = 4, session: aiohttp.ClientSession | None = None,
                 backoff: float = 0.5) -> None:
        self.base = base_url.rstrip("/") + PREFIX
        self.ssl: Any = pin(fingerprint) if fingerprint else None
        self.headers = {"Authorization": f"Ticket {ticket}"}
        self.share = share
        self.streams = streams
        self.backoff = backoff
        self._session = session
        self._own = session is None
        self.retried = 0  # chunk requests made again (damage, dropped connections)

    async def __aenter__(self) -> TransferClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
                connector=aiohttp.TCPConnector(limit=0))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._own and self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use the client with 'async with'"
        return self._session

    async def _call(self, method: str, endpoint: str, *, params: dict[str, Any],
                    data: Any = None, headers: dict[str, str] | None = None,
                    idempotent: bool = True) -> tuple[int, bytes, Any]:
        """One request, retried on dropped connections; (status, body, response headers).
        A request that must not run twice (it preallocates, syncs or renames, which can
        take long on slow storage) is made once, and waited for however long it takes."""
        tries = TRIES if idempotent else 1
        timeout = self.session.timeout if idempotent else aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=None)
        for attempt in range(tries):
            try:
                async with self.session.request(
                        method, f"{self.base}/{endpoint}", params={"share": self.share, **params},
                        data=data, headers={**self.headers, **(headers or {})},
                        ssl=self.ssl, timeout=timeout) as resp:
                    return resp.status, await resp.read(), resp.headers
            except aiohttp.ServerFingerprintMismatch:
                raise TransferError("the serving agent's certificate is not the one the hub "
                                    "knows (fingerprint mismatch)") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt == tries - 1:
                    raise TransferError(f"cannot reach the serving agent: {exc}") from None
                log.info("request failed; making it again", request=endpoint,
                         error=str(exc) or type(exc).__name__, attempt=attempt + 1)
                self.retried += 1
                await asyncio.sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _raise(status: int, body: bytes) -> None:
        if status < 400:
            return
        try:
            error = msgspec.json.decode(body)["error"]
            code, message = error["code"], error["message"]
        except Exception:
            code, message = "http_error", body[:200].decode("utf-8", "replace")
        if code == "source_changed":
            raise SourceChanged(message)
        raise TransferError(f"the serving agent refused ({status} {code}): {message}")

    # -- pull
    async def stat(self, path: str) -> StatAnswer:
        status, body, _ = await self._call("GET", "stat", params={"path": path})
        self._raise(status, body)
        return msgspec.json.decode(body, type=StatAnswer)

    async def pull(self, path: str, dest: Path, info: StatAnswer | None = None,
                   progress: Progress | None = None) -> str:
        """One file into ``dest``; returns its hash. Resumes an interrupted pull."""
        info = info or await self.stat(path)
        if info.type != "file":
            raise TransferError(f"{path!r} is a folder: pull its files")
        part = PartialFile(dest, info.size, info.chunk,
                           Stat(info.size, info.mtime_ns, info.mode & 0o777, info.identity))
        try:
            await asyncio.to_thread(part.open)
            if progress and part.count:
                progress(sum(info.chunk for d in part.hashes if d is not None))
            todo: asyncio.Queue[int] = asyncio.Queue()
            for index in part.missing():
                todo.put_nowait(index)
            await self._workers(todo, lambda i: self._pull_chunk(path, info, part, i, progress))
            return await asyncio.to_thread(part.commit)
        except SourceChanged:
            part.discard()  # the kept chunks are of another version
            raise
        finally:
            part.close()

    async def _pull_chunk(self, path: str, info: StatAnswer, part: PartialFile, index: int,
                          progress: Progress | None) -> None:
        for _ in range(TRIES):
            status, body, headers = await self._call("GET", "chunk", params={
                "path": path, "index": index, "chunk": info.chunk, "identity": info.identity})
            self._raise(status, body)
            try:
                digest = bytes.fromhex(headers.get("X-Ferry-Hash", ""))
                await asyncio.to_thread(part.write, index, body, digest)
            except (ChunkCorrupt, ValueError) as exc:
                log.warning("chunk damaged in flight; fetching it again", path=path, index=index,
                            error=str(exc))
                self.retried += 1
                continue
            if progress:
                progress(len(body))
            return
        raise ChunkCorrupt(f"{path}: chunk {index} arrived damaged {TRIES} times")

    async def pull_small(self, paths: list[str], place: Callable[[str], Path],
                         progress: Progress | None = None) -> dict[str, str]:
        """Small files in one request; each lands where ``place`` puts its path. Returns
        path -> hash, or raises on the first failure."""
        return _all_or_raise(await self.pull_batch(paths, place, progress))

    async def pull_batch(self, paths: list[str], place: Callable[[str], Path],
                         progress: Progress | None = None) -> dict[str, Landed | TransferError]:
        """Small files in one request, each with its own result: landed (hash and size)
        where ``place`` puts its path, or why not. A failure of the request itself raises."""
        status, body, _ = await self._call("POST", "files", params={},
                                           data=msgspec.json.encode({"paths": paths}),
                                           headers={"Content-Type": "application/json"})
        self._raise(status, body)
        view = memoryview(body)
        at = 0
        out: dict[str, Landed | TransferError] = {}
        files: list[tuple[str, SmallFile]] = []
        while at < len(view):
            end = body.index(b"\n", at)
            header = msgspec.json.decode(view[at:end], type=FileHeader)
            data = bytes(view[end + 1:end + 1 + header.size])
            at = end + 1 + header.size
            if header.error:
                kind = TooLarge if header.error.endswith(TOO_LARGE) else TransferError
                out[header.path] = kind(f"{header.path}: {header.error}")
                continue
            try:
                where = place(header.path)
            except TransferError as exc:
                out[header.path] = exc
                continue
            files.append((header.path, SmallFile(where, data, bytes.fromhex(header.hash),
                                                 header.mtime_ns, header.mode)))
        landed = await asyncio.to_thread(land_small, [f for _, f in files])
        for (path, f), result in zip(files, landed, strict=True):
            if isinstance(result, TransferError):
                out[path] = TransferError(f"{path}: {result}")
                continue
            out[path] = Landed(result, len(f.data))
            if progress:
                progress(len(f.data))
        return out

    # -- push
    async def push(self, source_path: Path, path: str, progress: Progress | None = None) -> str:
        """One local file to ``path`` in the share; returns its hash."""
        source = await asyncio.to_thread(SourceFile, source_path)
        try:
            opened = {"size": source.stat.size, "chunk": source.chunk,
                      "identity": source.stat.identity, "mode": source.stat.mode,
                      "mtime_ns": source.stat.mtime_ns}
            for attempt in range(TRIES):  # busy: our earlier requests for it still run there
                status, body, _ = await self._call("POST", "receive/open",
                                                   params={"path": path},
                                                   data=msgspec.json.encode(opened),
                                                   idempotent=False)
                if status != 409 or b'"busy"' not in body or attempt == TRIES - 1:
                    break
                self.retried += 1
                await asyncio.sleep(self.backoff * 2 ** attempt)
            self._raise(status, body)
            missing: list[int] = msgspec.json.decode(body)["missing"]
            if progress:
                progress(source.stat.size - sum(
                    min(source.chunk, source.stat.size - i * source.chunk) for i in missing))
            hashes: dict[int, bytes] = {}
            todo: asyncio.Queue[int] = asyncio.Queue()
            for index in missing:
                todo.put_nowait(index)
            await self._workers(todo, lambda i: self._push_chunk(source, path, i, hashes,
                                                                 progress))
            await asyncio.to_thread(source.check_unchanged)
            whole = None
            if len(hashes) == source.count:  # we read every chunk: vouch for the whole
                whole = file_hash(source.stat.size, source.chunk,
                                  [hashes[i] for i in range(source.count)])
            status, body, _ = await self._call("POST", "receive/commit", params={"path": path},
                                               data=msgspec.json.encode({"hash": whole}),
                                               idempotent=False)
            self._raise(status, body)
            return str(msgspec.json.decode(body)["hash"])
        finally:
            source.close()

    async def _push_chunk(self, source: SourceFile, path: str, index: int,
                          hashes: dict[int, bytes], progress: Progress | None) -> None:
        data, digest = await asyncio.to_thread(source.read, index)
        hashes[index] = digest
        for _ in range(TRIES):
            status, body, _ = await self._call(
                "PUT", "receive/chunk", params={"path": path, "index": index}, data=data,
                headers={"X-Ferry-Hash": digest.hex(),
                         "Content-Type": "application/octet-stream"})
            if status == 422:  # damaged on the way: send it again
                self.retried += 1
                continue
            self._raise(status, body)
            if progress:
                progress(len(data))
            return
        raise ChunkCorrupt(f"{path}: chunk {index} arrived damaged {TRIES} times")

    async def push_small(self, files: list[tuple[Path, str]],
                         progress: Progress | None = None) -> dict[str, str]:
        """Small local files to their paths in the share, in one request. Returns path ->
        hash, or raises on the first failure."""
        return _all_or_raise(await self.push_batch(files, progress))

    async def push_batch(self, files: list[tuple[Path, str]], progress: Progress | None = None
                         ) -> dict[str, Landed | TransferError]:
        """Small local files to their paths in the share, in one request, each with its
        own result (keyed by the path in the share). A failure of the request raises."""
        body = bytearray()
        out: dict[str, Landed | TransferError] = {}
        sizes: dict[str, int] = {}
        for local, path in files:
            try:
                data, st = await asyncio.to_thread(_read_local_small, local)
            except TransferError as exc:
                out[join(share_parts(path))] = exc
                continue
            except OSError as exc:  # gone or unreadable since it was listed
                out[join(share_parts(path))] = TransferError(
                    f"{path}: cannot read it: {exc.strerror or exc}")
                continue
            header = FileHeader(path=join(share_parts(path)), size=len(data),
                                mtime_ns=st.st_mtime_ns, mode=st.st_mode & 0o777,
                                hash=chunk_hash(data).hex())
            body += msgspec.json.encode(header) + b"\n" + data
            sizes[header.path] = len(data)
        if not sizes:
            return out
        status, answer, _ = await self._call("POST", "receive/files", params={},
                                             data=bytes(body), idempotent=False)
        self._raise(status, answer)
        for result in msgspec.json.decode(answer)["files"]:
            path = result["path"]
            if "error" in result:
                out[path] = TransferError(f"{path}: {result['error']}")
                continue
            out[path] = Landed(result["hash"], sizes.get(path, 0))
            if progress:
                progress(sizes.get(path, 0))
        return out

    async def _workers(self, todo: asyncio.Queue[int],
                       one: Callable[[int], Any]) -> None:
        async def worker() -> None:
            while True:
                try:
                    index = todo.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await one(index)

        tasks = [asyncio.create_task(worker()) for _ in range(max(1, self.streams))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _read_local_small(local: Path) -> tuple[bytes, os.stat_result]:
    with open(local, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_size > SMALL_FILE:
            raise TooLarge(f"{local} is larger than {SMALL_FILE} bytes: {TOO_LARGE}")
        return fh.read(), st


class Landed(NamedTuple):
    """A small file that arrived whole and verified."""

    hash: str
    size: int


def _all_or_raise(results: dict[str, Landed | TransferError]) -> dict[str, str]:
    for result in results.values():
        if isinstance(result, TransferError):
            raise result
    return {path: result.hash for path, result in results.items()
            if isinstance(result, Landed)}
