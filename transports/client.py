"""The other side of the transfer endpoint: pull files from it, or push files to it.

A large file moves as chunks over ``streams`` connections, each on a thread of
its own (``Peer.threads``): a chunk is read into that thread's buffer, checked
against its hash and written where it lands without passing the event loop; a
chunk that arrives damaged is fetched (or sent) again, a dropped connection is
retried with backoff.
Files up to ``SMALL_FILE`` move many to a request. A pull into a file that
was interrupted before resumes from its journal (``transports.partial``): only
the chunks that are not there yet travel.

The peer is checked, not trusted (``transports.peer``): every answer is read up to
the size expected and within a deadline, then checked for what it claims
(``transports.answers``), before anything acts on it.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec
import structlog

from protocol.paths import join, share_parts
from protocol.transfer import BATCH_BYTES, SMALL_FILE, FileHeader, HaveRequest, Landing, StatAnswer
from transports import answers
from transports.chunks import (
    HASH_BYTES,
    TOO_LARGE,
    ChunkCorrupt,
    SourceChanged,
    SourceFile,
    Stat,
    TooLarge,
    TransferError,
    chunk_hash,
    file_hash,
    span,
)
from transports.limits import ANSWER_BYTES, HEADER_BYTES, PULL_MEMORY
from transports.partial import PartialFile
from transports.peer import TRIES, Connection, Peer, Stop
from transports.small import SmallFile, land_small
from transports.throttle import waited

log = structlog.get_logger("transports.client")

Progress = Callable[[int], None]  # bytes verified, as they are


class TransferClient(Peer):
    """Pulls files from one serving agent's share, or pushes files to it."""

    # -- pull
    async def stat(self, path: str) -> StatAnswer:
        """The file or folder at ``path``, as the peer says, within this agent's quotas."""
        status, body, _ = await self.request("GET", "stat", params={"path": path},
                                             limit=self.limits.listing_bytes,
                                             what=f"the stat of {path!r}")
        self._raise(status, body)
        with self._checking():
            return answers.stat(body, path, self.limits)

    async def pull(self, path: str, dest: Path, info: StatAnswer | None = None,
                   progress: Progress | None = None, root: Path | None = None) -> str:
        """One file into ``dest`` (in the share rooted at ``root``, when it is in one);
        returns its hash. Resumes an interrupted pull."""
        info = info or await self.stat(path)
        if info.type != "file":
            raise TransferError(f"{path!r} is a folder: pull its files")
        part = PartialFile(dest, info.size, info.chunk,
                           Stat(info.size, info.mtime_ns, info.mode & 0o777, info.identity),
                           root=root)
        try:
            await asyncio.to_thread(part.open)
            if progress and part.count:
                progress(sum(info.chunk for d in part.hashes if d is not None))
            todo = collections.deque(part.missing())
            # big chunks, fewer streams: what one pull holds in memory stays bounded
            streams = max(1, min(self.streams, PULL_MEMORY // max(info.chunk, 1), len(todo)))
            if todo:
                tell = _teller(progress)
                await self.threads(streams, lambda stop: self._pull_chunks(
                    path, info, part, todo, tell, stop), name="pull")
            return await asyncio.to_thread(part.commit)
        except SourceChanged:
            part.discard()  # the kept chunks are of another version
            raise
        finally:
            part.close()

    def _pull_chunks(self, path: str, info: StatAnswer, part: PartialFile,
                     todo: collections.deque[int], progress: Callable[[int], None] | None,
                     stop: Stop) -> None:
        """One stream of a pull, on its thread: chunks taken from ``todo`` until none is
        left, each read into this stream's buffer, verified and written in place."""
        buffer = memoryview(bytearray(info.chunk))
        with self.connection(stop=stop) as conn:
            for index in _taken(todo, stop):
                if self.throttle is not None:
                    self.throttle.take(span(info.size, info.chunk, index)[1], stop)
                self._pull_chunk(conn, path, info, part, index, buffer, stop)
                if progress:
                    progress(span(info.size, info.chunk, index)[1])

    def _pull_chunk(self, conn: Connection, path: str, info: StatAnswer, part: PartialFile,
                    index: int, buffer: memoryview, stop: threading.Event) -> None:
        _, length = span(info.size, info.chunk, index)
        what = f"chunk {index} of {path!r}"
        view = buffer[:length]
        for _ in range(TRIES):
            status, body, headers = self.call(conn, "GET", "chunk", params={
                "path": path, "index": index, "chunk": info.chunk, "identity": info.identity},
                limit=length, what=what, into=view, stop=stop)
            self._raise(status, body)
            got = body if isinstance(body, int) else _copy(body, view)
            if got != length:  # a whole answer (HTTP says so) of another length
                raise self._lied(f"sent {got} bytes for {what}, not {length}")
            try:
                digest = bytes.fromhex(headers.get("X-Ferry-Hash", ""))
            except ValueError:
                digest = b""
            if len(digest) != HASH_BYTES:
                raise self._lied(f"sent {what} without its BLAKE3 (X-Ferry-Hash)")
            try:
                part.write(index, view, digest)
            except ChunkCorrupt as exc:
                log.warning("chunk damaged in flight; fetching it again", path=path, index=index,
                            error=str(exc))
                self.retried += 1
                continue
            return
        raise self._lied(f"sent {what} {TRIES} times with bytes that do not match the hash it "
                         "gave (its hashes are wrong, or its bytes are damaged on the way)",
                         ChunkCorrupt)

    async def pull_small(self, paths: list[str], place: Callable[[str], Path],
                         progress: Progress | None = None) -> dict[str, str]:
        """Small files in one request; each lands where ``place`` puts its path. Returns
        path -> hash, or raises on the first failure."""
        return _all_or_raise(await self.pull_batch(paths, place, progress))

    async def pull_batch(self, paths: list[str], place: Callable[[str], Path],
                         progress: Progress | None = None, root: Path | None = None
                         ) -> dict[str, Landed | TransferError]:
        """Small files in one request, each with its own result: landed (hash and size)
        where ``place`` puts its path (in the share rooted at ``root``), or why not. A
        failure of the request itself raises."""
        # the answer holds the files asked for, each small, and the batch stops past
        # BATCH_BYTES: no more than that is read
        limit = min(len(paths) * SMALL_FILE, BATCH_BYTES + SMALL_FILE) + \
            len(paths) * HEADER_BYTES
        status, body, _ = await self.request("POST", "files", params={},
                                             data=msgspec.json.encode({"paths": paths}),
                                             headers={"Content-Type": "application/json"},
                                             limit=limit, what=f"{len(paths)} small files")
        self._raise(status, body)
        await waited(self.throttle, len(body))
        out: dict[str, Landed | TransferError] = {}
        files: list[tuple[str, SmallFile]] = []
        with self._checking():
            for header, data in answers.batch(body, set(paths)):
                if header.error:
                    kind = TooLarge if header.error.endswith(TOO_LARGE) else TransferError
                    out[header.path] = kind(f"{header.path}: {header.error[:1000]}")
                    continue
                try:
                    where = place(header.path)
                    digest = bytes.fromhex(header.hash)
                except TransferError as exc:
                    out[header.path] = exc
                    continue
                except ValueError:
                    raise answers.Lie(f"sent {header.path!r} without its BLAKE3") from None
                files.append((header.path, SmallFile(where, data, digest, header.mtime_ns,
                                                     header.mode)))
        del body  # the files hold their bytes now
        landed = await asyncio.to_thread(land_small, [f for _, f in files], root)
        for (path, f), result in zip(files, landed, strict=True):
            if isinstance(result, TransferError):
                out[path] = TransferError(f"{path}: {result}")
                continue
            out[path] = Landed(result, len(f.data))
            if progress:
                progress(len(f.data))
        return out

    # -- push
    async def push(self, source_path: Path, path: str, progress: Progress | None = None,
                   root: Path | None = None) -> str:
        """One local file (in the share rooted at ``root``, when it is in one) to ``path``
        in the peer's share; returns its hash."""
        source = await asyncio.to_thread(SourceFile, source_path, None, root)
        try:
            size = source.stat.size
            opened = {"size": size, "chunk": source.chunk, "identity": source.stat.identity,
                      "mode": source.stat.mode, "mtime_ns": source.stat.mtime_ns}
            for attempt in range(TRIES):  # busy: our earlier requests for it still run there
                status, body, _ = await self.request(
                    "POST", "receive/open", params={"path": path},
                    data=msgspec.json.encode(opened), idempotent=False, limit=ANSWER_BYTES,
                    what=f"the open of {path!r}", size=size)
                if status != 409 or b'"busy"' not in body or attempt == TRIES - 1:
                    break
                self.retried += 1
                await asyncio.sleep(self.backoff * 2 ** attempt)
            self._raise(status, body)
            with self._checking():
                missing = answers.missing(body, source.count, path)
            if progress:
                progress(size - sum(min(source.chunk, size - i * source.chunk)
                                    for i in missing))
            hashes: dict[int, bytes] = {}
            todo = collections.deque(missing)
            streams = max(1, min(self.streams, PULL_MEMORY // max(source.chunk, 1), len(todo)))
            if todo:
                tell = _teller(progress)
                await self.threads(streams, lambda stop: self._push_chunks(
                    source, path, todo, hashes, tell, stop), name="push")
            await asyncio.to_thread(source.check_unchanged)
            whole = None
            if len(hashes) == source.count:  # we read every chunk: vouch for the whole
                whole = file_hash(size, source.chunk, [hashes[i] for i in range(source.count)])
            status, body, _ = await self.request(
                "POST", "receive/commit", params={"path": path},
                data=msgspec.json.encode({"hash": whole}), idempotent=False,
                limit=ANSWER_BYTES, what=f"the commit of {path!r}", size=size)
            self._raise(status, body)
            with self._checking():
                return answers.committed(body, whole, path)
        finally:
            source.close()

    def _push_chunks(self, source: SourceFile, path: str, todo: collections.deque[int],
                     hashes: dict[int, bytes], progress: Callable[[int], None] | None,
                     stop: Stop) -> None:
        """One stream of a push, on its thread: chunks taken from ``todo`` until none is
        left, each read, hashed and sent."""
        with self.connection(stop=stop) as conn:
            for index in _taken(todo, stop):
                data, digest = source.read(index)
                hashes[index] = digest
                if self.throttle is not None:
                    self.throttle.take(len(data), stop)
                self._push_chunk(conn, path, index, data, digest, stop)
                if progress:
                    progress(len(data))

    def _push_chunk(self, conn: Connection, path: str, index: int, data: bytes, digest: bytes,
                    stop: threading.Event) -> None:
        for _ in range(TRIES):
            status, body, _ = self.call(
                conn, "PUT", "receive/chunk", params={"path": path, "index": index}, data=data,
                headers={"X-Ferry-Hash": digest.hex(),
                         "Content-Type": "application/octet-stream"},
                limit=ANSWER_BYTES, what=f"chunk {index} of {path!r}", size=len(data),
                stop=stop)
            if status == 422:  # damaged on the way: send it again
                self.retried += 1
                continue
            self._raise(status, body)
            return
        raise ChunkCorrupt(f"{path}: chunk {index} arrived damaged {TRIES} times")

    async def discard(self, path: str) -> None:
        """Tell the peer this file will not be sent again: its part file goes. Best
        effort (the peer also closes what nobody sends to)."""
        try:
            status, body, _ = await self.request(
                "POST", "receive/discard", params={"path": path}, limit=ANSWER_BYTES,
                what=f"the discard of {path!r}", idempotent=False)
            self._raise(status, body)
        except TransferError as exc:
            log.info("could not discard a pushed file's part file", path=path, error=str(exc))

    async def have(self, files: list[Landing]) -> set[str]:
        """Of the files about to be pushed, those the peer has landed already with the
        size and mtime they have here (an earlier run sent them). A peer that cannot
        say (an older agent) has none of them."""
        if not files:
            return set()
        status, answer, _ = await self.request(
            "POST", "receive/have", params={}, data=msgspec.json.encode(HaveRequest(files)),
            limit=ANSWER_BYTES + len(files) * HEADER_BYTES, what="which files it has")
        if status in (404, 405):
            return set()
        self._raise(status, answer)
        with self._checking():
            return answers.there(answer, {f.path for f in files})

    async def push_small(self, files: list[tuple[Path, str]],
                         progress: Progress | None = None) -> dict[str, str]:
        """Small local files to their paths in the share, in one request. Returns path ->
        hash, or raises on the first failure."""
        return _all_or_raise(await self.push_batch(files, progress))

    async def push_batch(self, files: list[tuple[Path, str]], progress: Progress | None = None,
                         root: Path | None = None) -> dict[str, Landed | TransferError]:
        """Small local files (in the share rooted at ``root``, when they are in one) to
        their paths in the peer's share, in one request, each with its own result (keyed
        by the path in the share). A failure of the request raises."""
        body = bytearray()
        out: dict[str, Landed | TransferError] = {}
        sizes: dict[str, int] = {}
        for local, path in files:
            try:
                data, st = await asyncio.to_thread(_read_local_small, local, root)
            except TransferError as exc:
                out[join(share_parts(path))] = exc
                continue
            except OSError as exc:  # gone or unreadable since it was listed
                out[join(share_parts(path))] = TransferError(
                    f"{path}: cannot read it: {exc.strerror or exc}")
                continue
            header = FileHeader(path=join(share_parts(path)), size=len(data),
                                mtime_ns=st.mtime_ns, mode=st.mode,
                                hash=chunk_hash(data).hex())
            body += msgspec.json.encode(header) + b"\n" + data
            sizes[header.path] = len(data)
        if not sizes:
            return out
        await waited(self.throttle, len(body))
        status, answer, _ = await self.request(
            "POST", "receive/files", params={}, data=bytes(body), idempotent=False,
            limit=ANSWER_BYTES + len(sizes) * HEADER_BYTES, what="a batch of small files",
            size=len(body))
        self._raise(status, answer)
        with self._checking():
            results = answers.landed(answer, set(sizes))
        for result in results:
            if result.error:
                out[result.path] = TransferError(f"{result.path}: {result.error[:1000]}")
                continue
            out[result.path] = Landed(result.hash, sizes[result.path])
            if progress:
                progress(sizes[result.path])
        return out


def _taken(todo: collections.deque[int], stop: threading.Event) -> Iterator[int]:
    """Chunk indexes for one stream, shared with the others, until none is left or the
    transfer stops."""
    while not stop.is_set():
        try:
            yield todo.popleft()
        except IndexError:
            return


def _teller(progress: Progress | None) -> Callable[[int], None] | None:
    """``progress`` told on the event loop, from the threads that move the bytes."""
    if progress is None:
        return None
    loop = asyncio.get_running_loop()

    def tell(count: int) -> None:
        loop.call_soon_threadsafe(progress, count)

    return tell


def _copy(body: bytearray, view: memoryview) -> int:
    """An answer that came without a length (chunked), into the stream's buffer."""
    if len(body) <= len(view):
        view[:len(body)] = body
    return len(body)


def _read_local_small(local: Path, root: Path | None) -> tuple[bytes, Stat]:
    """A small file of ours, opened as every share file is (``SourceFile``): never through
    a symlink swapped in since it was listed."""
    source = SourceFile(local, None, root)
    try:
        if source.stat.size > SMALL_FILE:
            raise TooLarge(f"{local} is larger than {SMALL_FILE} bytes: {TOO_LARGE}")
        data = os.pread(source.fd, source.stat.size, 0) if source.stat.size else b""
        if len(data) != source.stat.size:
            raise SourceChanged(f"{local} became shorter while it was read")
        return data, source.stat
    finally:
        source.close()


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
