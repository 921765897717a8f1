"""The agent's side of transfers that others start: its endpoint serves its shares.

The endpoint listens before the agent enrolls (so that enrollment can tell the
hub where it is and which certificate to pin), and refuses every ticket until
enrollment has brought the agent's client id and the hub's ticket key. The
shares come with every check-in; a share whose folder is missing is logged
and served as soon as it exists.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from agent.config import AgentConfig
from ferry.errors import ConfigError
from protocol import Progress, ShareInfo, TransferInfo, TransferWork, tickets
from protocol.paths import PathRefused, join, share_parts
from transports import tls
from transports.chunks import TransferError
from transports.client import TransferClient, batches
from transports.endpoint import TransferEndpoint
from transports.shares import files_below, resolve
from transports.wire import SMALL_FILE, Share

log = structlog.get_logger("agent.transfer")

SMALL_BATCH = 4 << 20  # bytes of small files per request: several requests overlap


class TransferService:
    def __init__(self, config: AgentConfig, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.endpoint = TransferEndpoint(server_id="", ticket_key=None)
        self.endpoint.refresh = self._refresh
        self.checkin: Callable[[], Awaitable[None]] | None = None  # one check-in, now
        self._refreshing: asyncio.Future[None] | None = None
        self._moving: dict[str, list[int]] = {}  # running transfer tasks: [bytes done, bytes]
        self._refreshed = 0.0
        self.url = ""
        self.fingerprint = ""

    async def start(self) -> None:
        key, cert = await asyncio.to_thread(tls.ensure_identity, self.data_dir, "agent")
        self.fingerprint = await asyncio.to_thread(tls.fingerprint, cert)
        try:
            port = await self.endpoint.start(self.config.transfer_ip, self.config.transfer_port,
                                             tls.server_context(key, cert))
        except OSError as exc:
            raise ConfigError(f"cannot serve transfers on {self.config.transfer_ip}:"
                              f"{self.config.transfer_port}: {exc.strerror or exc}",
                              key="transfer_port") from None
        host = self.config.transfer_host or (
            self.config.transfer_ip if self.config.transfer_ip not in ("0.0.0.0", "::")
            else socket.gethostname())
        public = self.config.transfer_public_port or port
        self.url = f"https://{f'[{host}]' if ':' in host else host}:{public}"
        log.info("serving transfers", url=self.url, fingerprint=self.fingerprint[:16])

    def info(self) -> TransferInfo | None:
        return TransferInfo(url=self.url, fingerprint=self.fingerprint) if self.url else None

    def enrolled(self, client_id: str, ticket_key: str) -> None:
        self.endpoint.server_id = client_id
        if ticket_key:
            self.endpoint.ticket_key = tickets.public_key(ticket_key)

    def set_shares(self, shares: list[ShareInfo]) -> None:
        now = {s.id: Share(s.id, s.name, Path(s.path)) for s in shares}
        if now == self.endpoint.shares:
            return
        for share in now.values():
            if share.id not in self.endpoint.shares or self.endpoint.shares[share.id] != share:
                if not share.root.is_dir():
                    log.warning("share folder missing; serving it once it exists",
                                share=share.name, path=str(share.root))
                else:
                    log.info("serving share", share=share.name, path=str(share.root))
        for gone in set(self.endpoint.shares) - set(now):
            log.info("no longer serving share", share=self.endpoint.shares[gone].name)
        self.endpoint.shares = now

    async def _refresh(self) -> None:
        """Check in now, for a share asked for that we do not know yet: at most every
        2 s, and callers at the same moment share one check-in."""
        if self.checkin is None:
            return
        if self._refreshing is None:
            if time.monotonic() - self._refreshed < 2.0:
                return
            self._refreshed = time.monotonic()
            self._refreshing = asyncio.ensure_future(self.checkin())
        waiting = self._refreshing
        try:
            await asyncio.wait_for(asyncio.shield(waiting), timeout=5.0)
        except Exception as exc:  # the hub is away: answer with what we know
            log.warning("could not ask the hub for this agent's shares", error=str(exc))
        finally:
            if waiting.done():
                self._refreshing = None

    def status(self) -> dict[str, object]:
        return {"url": self.url, "fingerprint": self.fingerprint,
                "shares": sorted(s.name for s in self.endpoint.shares.values()),
                "refused": self.endpoint.refused,
                "served_chunks": self.endpoint.served_chunks,
                "received_chunks": self.endpoint.received_chunks}

    async def stop(self) -> None:
        await self.endpoint.stop()

    async def run_task(self, task_id: str, work: TransferWork) -> tuple[str, int]:
        """``run``, with the task's bytes kept for ``progress`` while it runs."""
        moving = self._moving[task_id] = [0, 0]

        def sized(total: int) -> None:
            moving[1] = total

        def moved(count: int) -> None:
            moving[0] += count

        try:
            return await self.run(work, sized, moved)
        finally:
            self._moving.pop(task_id, None)

    def progress(self) -> dict[str, Progress]:
        """Bytes of the running transfers, for the heartbeat."""
        return {task_id: Progress(done=min(done, size), size=size)
                for task_id, (done, size) in self._moving.items() if size}

    async def run(self, work: TransferWork, sized: Callable[[int], None] | None = None,
                  moved: Callable[[int], None] | None = None) -> tuple[str, int]:
        """Pull a transfer task's file or folder into this agent's destination share;
        returns a summary and the bytes moved. Raises TransferError with the reason.
        ``sized`` hears the bytes in all once known, ``moved`` each verified piece."""
        if work.direction == "push":
            return await self._push(work, sized, moved)
        share = self.endpoint.shares.get(work.dest_share)
        if share is None and work.dest_root:  # made a moment ago: the hub's word is enough
            share = Share(work.dest_share, "", Path(work.dest_root))
        if share is None:
            raise TransferError("this agent does not serve the destination share (any more)")
        if not work.url or not work.ticket:
            raise TransferError("the source share's agent runs no transfer endpoint now")
        try:
            source_parts, dest_parts = share_parts(work.path), share_parts(work.dest_path)
        except PathRefused as exc:
            raise TransferError(str(exc)) from None

        folders: dict[tuple[str, ...], Path] = {}

        def place(parts: tuple[str, ...]) -> Path:
            try:
                return resolve(share.root, parts, folders)
            except PathRefused as exc:
                raise TransferError(str(exc)) from None

        async with TransferClient(work.url, work.fingerprint or None, work.ticket, work.share,
                                  streams=work.streams) as client:
            info = await client.stat(work.path)
            name = source_parts[-1:] if work.into_folder else ()
            base = dest_parts + name
            if sized is not None:
                sized(info.size if info.type == "file" else sum(f.size for f in info.files))
            if info.type == "file":
                digest = await client.pull(work.path, place(base), info, moved)
                return _summary(f"{info.size} bytes, blake3 {digest}", client), info.size
            skip = len(source_parts)
            small = [(f.path, f.size) for f in info.files if f.size <= SMALL_FILE]
            lanes = asyncio.Semaphore(work.streams)  # batches in flight, like chunk streams

            async def batch_of(paths: list[str]) -> None:
                async with lanes:
                    await client.pull_small(
                        paths, lambda path: place(base + share_parts(path)[skip:]), moved)

            await asyncio.gather(*(batch_of(b) for b in batches(small, SMALL_BATCH)))
            for f in info.files:
                if f.size > SMALL_FILE:
                    await client.pull(f.path, place(base + share_parts(f.path)[skip:]),
                                      progress=moved)
            total = sum(f.size for f in info.files)
            return _summary(f"{len(info.files)} files, {total} bytes", client), total

    async def _push(self, work: TransferWork, sized: Callable[[int], None] | None,
                    moved: Callable[[int], None] | None) -> tuple[str, int]:
        """Send a file or folder of the source share (served here) to the destination's
        agent: for a source behind NAT, which no peer can call."""
        if not work.source_root:
            raise TransferError("the source share has no folder")
        if not work.url or not work.ticket:
            raise TransferError("the destination share's agent runs no transfer endpoint now")
        try:
            source_parts, dest_parts = share_parts(work.path), share_parts(work.dest_path)
            local = resolve(Path(work.source_root), source_parts)
        except PathRefused as exc:
            raise TransferError(str(exc)) from None
        base = dest_parts + (source_parts[-1:] if work.into_folder else ())
        files = await asyncio.to_thread(_local_files, Path(work.source_root), local)
        if files is None:
            raise TransferError(f"{work.path!r} does not exist in the source share")
        total = sum(size for _, _, size in files)
        if sized is not None:
            sized(total)
        async with TransferClient(work.url, work.fingerprint or None, work.ticket, work.share,
                                  streams=work.streams) as client:
            if len(files) == 1 and files[0][1] == ():  # the source is one file
                digest = await client.push(files[0][0], join(base), moved)
                return _summary(f"{total} bytes, blake3 {digest}", client), total
            lanes = asyncio.Semaphore(work.streams)
            small = [(path, size) for path, _, size in files if size <= SMALL_FILE]
            by_path = {path: join(base + rel) for path, rel, _ in files}

            async def batch_of(paths: list[Path]) -> None:
                async with lanes:
                    await client.push_small([(p, by_path[p]) for p in paths], moved)

            await asyncio.gather(*(batch_of(b) for b in batches(small, SMALL_BATCH)))
            for path, rel, size in files:
                if size > SMALL_FILE:
                    await client.push(path, join(base + rel), moved)
            return _summary(f"{len(files)} files, {total} bytes", client), total


def _summary(text: str, client: TransferClient) -> str:
    """A task's log line: what arrived, and how many requests had to be made again."""
    return f"{text}; {client.retried} requests made again" if client.retried else text


def _local_files(root: Path, place: Path) -> list[tuple[Path, tuple[str, ...], int]] | None:
    """The files to send: (local path, path below ``place``, size); None if nothing is
    there. Part files and symlinks that lead out of the share are left out."""
    if place.is_file():
        return [(place, (), place.stat().st_size)]
    if not place.is_dir():
        return None
    return [(path, rel, info.st_size) for path, rel, info in files_below(root, place)]
