"""The agent's side of the transfer tasks it runs: a file, or a folder as one task
(``agent.folder``).

The agent runs a transfer task when it serves the destination (it pulls from
the source's endpoint) or, for ``direction: push``, the source (it sends to the
destination's endpoint). A task whose source is a folder moves all of it: the
hub hears of the task, not of each file.

A transfer that ends without its file leaves its part file for the next attempt
to resume, unless ``keep`` says there is none (its last attempt failed, or it was
aborted): then the part file and its journal go (``PartialFile.remove``; a push
asks the peer to drop its own, ``receive/discard``). The peer is held to this
agent's ``Limits`` (``transports.peer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import structlog

from agent.folder import Local, pull_folder, push_folder
from agent.sequence import pick_listed, pick_local
from core.refusals import refused
from protocol import Progress, TransferWork
from protocol.paths import PathRefused, join, share_parts
from protocol.sequences import frames_text
from protocol.transfer import Share
from protocol.work import MAX_MISSING
from transports.chunks import TransferError
from transports.client import Landed, TransferClient
from transports.limits import Limits
from transports.partial import PartialFile
from transports.shares import files_below, resolve
from transports.throttle import Rate, Throttle

log = structlog.get_logger("agent.moving")

# asked when a transfer ends without its file (True: it was stopped, not failed): is its
# part file kept for a next attempt to resume?
Keep = Callable[[bool], bool]
Missing = Callable[[list[int]], None]  # hears a sequence's missing frames


class Moved(NamedTuple):
    """A transfer task's end: its log line, its bytes, and a sequence's missing frames
    as ranges (None: not a sequence)."""

    summary: str
    size: int
    missing_frames: str | None = None


class Mover:
    """Runs transfer tasks into (or, pushing, out of) the shares this agent serves."""

    def __init__(self, shares: Callable[[], dict[str, Share]], limits: Limits | None = None,
                 speed_limit: int = 0) -> None:
        self.shares = shares  # the endpoint's shares by id, as of now
        self.limits = limits or Limits()  # what a peer may make this agent take
        self._moving: dict[str, list[int]] = {}  # running transfer tasks: [bytes done, bytes]
        # speed limits: the agent's own (transfer_speed_limit), for all its transfers
        # together, and each running job's, shared by its transfers here (with a count of
        # them: the job's rate goes when its last one ends)
        self.agent_rate = Rate(speed_limit)
        self._job_rates: dict[str, tuple[Rate, int]] = {}
        self.bytes_in = 0  # verified bytes this agent pulled, and pushed, so far
        self.bytes_out = 0

    def progress(self) -> dict[str, Progress]:
        """Bytes of the running transfers, for the heartbeat."""
        return {task_id: Progress(done=min(done, size), size=size)
                for task_id, (done, size) in self._moving.items() if size}

    def speed_limits(self) -> dict[str, int]:
        """The limit in force for each job running here (bytes/s, 0: none): the lowest of
        the job's and the agent's."""
        return {job: Throttle([rate, self.agent_rate]).limit
                for job, (rate, _) in self._job_rates.items()}

    def set_speed_limits(self, limits: dict[str, int]) -> None:
        """The hub's word on running jobs' limits: their streams follow at their next chunk."""
        for job, limit in limits.items():
            held = self._job_rates.get(job)
            if held is not None and held[0].rate != limit:
                log.info("speed limit changed", job=job, limit=limit)
                held[0].set(limit)

    @contextlib.contextmanager
    def _job_rate(self, job: str, limit: int) -> Iterator[Rate]:
        """The rate the job's transfers here share, for as long as one of them runs."""
        rate, count = self._job_rates.get(job) or (Rate(limit), 0)
        if count and rate.rate != limit:  # the newer lease has the hub's newer word
            rate.set(limit)
        self._job_rates[job] = (rate, count + 1)
        try:
            yield rate
        finally:
            rate, count = self._job_rates[job]
            if count == 1:
                del self._job_rates[job]
            else:
                self._job_rates[job] = (rate, count - 1)

    async def run_task(self, task_id: str, work: TransferWork, keep: Keep | None = None,
                       job: str = "") -> Moved:
        """``run``, with the task's bytes kept for ``progress`` while it runs, under the
        speed limits of its job (``job``) and of this agent."""
        moving = self._moving[task_id] = [0, 0]
        push = work.direction == "push"
        missing: list[list[int]] = []

        def sized(total: int) -> None:
            moving[1] = total

        def moved(count: int) -> None:
            moving[0] += count
            if push:
                self.bytes_out += count
            else:
                self.bytes_in += count

        try:
            with self._job_rate(job or task_id, work.speed_limit) as rate:
                summary, size = await self.run(work, sized, moved, keep, missing.append,
                                               Throttle([rate, self.agent_rate]))
        finally:
            self._moving.pop(task_id, None)
        return Moved(summary, size,
                     frames_text(missing[0], MAX_MISSING - 100) if missing else None)

    def _dest_share(self, work: TransferWork) -> Share:
        share = self.shares().get(work.dest_share)
        if share is None and work.dest_root:  # made a moment ago: the hub's word is enough
            share = Share(work.dest_share, "", Path(work.dest_root))
        if share is None:
            raise TransferError("this agent does not serve the destination share (any more)")
        return share

    def _client(self, work: TransferWork, throttle: Throttle | None) -> TransferClient:
        return TransferClient(work.url, work.fingerprint or None, work.ticket, work.share,
                              streams=work.streams, limits=self.limits,
                              throttle=throttle or Throttle([self.agent_rate]))

    async def run(self, work: TransferWork, sized: Callable[[int], None] | None = None,
                  moved: Callable[[int], None] | None = None, keep: Keep | None = None,
                  missing: Missing | None = None, throttle: Throttle | None = None
                  ) -> tuple[str, int]:
        """Move one transfer task's file, folder or frame sequence; returns a summary and
        the bytes moved. Raises TransferError with the reason. ``sized`` hears the bytes in
        all once known, ``moved`` each verified piece, ``missing`` a sequence's missing
        frames; ``keep`` is asked whether a part file left by a failed or stopped run stays
        (default: it does). ``throttle``: the speed limits (default: the agent's)."""
        if work.direction == "push":
            return await self._push(work, sized, moved, keep, missing, throttle)
        share = self._dest_share(work)
        if not work.url or not work.ticket:
            raise TransferError("the source share's agent runs no transfer endpoint now")
        async with _refusing(share.name or share.id):
            dest = resolve(share.root, share_parts(work.dest_path))
            async with self._client(work, throttle) as client:
                info = await client.stat(work.path)
                if work.sequence:  # its folder's frames
                    info, gaps = pick_listed(work, info)
                    if missing is not None:
                        missing(gaps)
                if info.type != "file":

                    async def one_file(source: str, lands: str, _size: int) -> Landed:
                        return await _pull_one(client, share, source, lands, keep, moved)

                    summary, size = await pull_folder(client, share, work.path,
                                                      work.dest_path, info, one_file, sized,
                                                      moved)
                    return _summary(summary, client), size
                if sized is not None:
                    sized(info.size)
                async with _leaving(keep, lambda: asyncio.to_thread(PartialFile.remove, dest,
                                                                    share.root)):
                    digest = await client.pull(work.path, dest, info, moved, root=share.root)
                return _summary(f"{info.size} bytes, blake3 {digest}", client), info.size

    async def _push(self, work: TransferWork, sized: Callable[[int], None] | None,
                    moved: Callable[[int], None] | None, keep: Keep | None,
                    missing: Missing | None, throttle: Throttle | None) -> tuple[str, int]:
        """Send a file of the source share (served here) to the destination's agent: for a
        source behind NAT, which no peer can call."""
        if not work.source_root:
            raise TransferError("the source share has no folder")
        if not work.url or not work.ticket:
            raise TransferError("the destination share's agent runs no transfer endpoint now")
        root = Path(work.source_root)
        async with _refusing(str(root)):
            source_parts = share_parts(work.path)
            local = resolve(root, source_parts)
            files = await asyncio.to_thread(_local_files, root, local)
            if files is None:
                raise TransferError(f"{work.path!r} does not exist in the source share")
            if work.sequence:  # its folder's frames
                if len(files) == 1 and files[0][1] == ():
                    raise TransferError(f"{work.path!r} is a file, not the folder of "
                                        f"sequence {work.sequence!r}")
                files, gaps = pick_local(work, files)
                if missing is not None:
                    missing(gaps)
            if work.sequence or not (len(files) == 1 and files[0][1] == ()):  # a folder
                landing = share_parts(work.dest_path)
                async with self._client(work, throttle) as client:

                    async def one_file(local: str, lands: str, size: int) -> Landed:
                        async with _leaving(keep, lambda: client.discard(lands)):
                            digest = await client.push(Path(local), lands, moved, root=root)
                        return Landed(digest, size)

                    summary, size = await push_folder(
                        client, root, [Local(path, join(landing + rel), st.st_size,
                                             st.st_mtime_ns) for path, rel, st in files],
                        one_file, sized, moved)
                    return _summary(summary, client), size
            path, _, st = files[0]
            size = st.st_size
            if sized is not None:
                sized(size)
            async with self._client(work, throttle) as client, _leaving(
                    keep, lambda: client.discard(work.dest_path)):
                digest = await client.push(path, work.dest_path, moved, root=root)
                return _summary(f"{size} bytes, blake3 {digest}", client), size


async def _pull_one(client: TransferClient, share: Share, source: str, lands: str,
                    keep: Keep | None, moved: Callable[[int], None] | None) -> Landed:
    """One big file of a folder, in chunks, resumed from its part file."""
    try:
        dest = resolve(share.root, share_parts(lands))
    except PathRefused as exc:
        refused("share_path", f"a writer of share {share.name or share.id}", str(exc))
        raise TransferError(str(exc)) from None
    async with _leaving(keep, lambda: asyncio.to_thread(PartialFile.remove, dest, share.root)):
        info = await client.stat(source)
        if info.type != "file":
            raise TransferError(f"{source!r} is no longer a file")
        digest = await client.pull(source, dest, info, moved, root=share.root)
    return Landed(digest, info.size)


@contextlib.asynccontextmanager
async def _refusing(share: str) -> AsyncIterator[None]:
    """A path of a share refused inside (one that is not allowed, or a folder or file of
    the share swapped for a symlink under the transfer): counted against whoever writes
    that share, and the transfer fails with why."""
    try:
        yield
    except PathRefused as exc:
        refused("share_path", f"a writer of share {share}", str(exc))
        raise TransferError(str(exc)) from None


@contextlib.asynccontextmanager
async def _leaving(keep: Keep | None, drop: Callable[[], Awaitable[object]]
                   ) -> AsyncIterator[None]:
    """A transfer that ends inside without its file: what it left at the destination is
    dropped (``drop``) unless ``keep`` says a next attempt resumes it."""
    try:
        yield
    except BaseException as exc:
        if keep is not None and not keep(isinstance(exc, asyncio.CancelledError)):
            try:
                await drop()
            except Exception as error:  # the transfer's own error is the one to report
                log.warning("could not remove a transfer's part file", error=str(error))
        raise


def _summary(text: str, client: TransferClient) -> str:
    """A task's log line: what arrived, and how many requests had to be made again."""
    return f"{text}; {client.retried} requests made again" if client.retried else text


def _local_files(root: Path, place: Path
                 ) -> list[tuple[Path, tuple[str, ...], os.stat_result]] | None:
    """The files to send: (local path, path below ``place``, its stat); None if nothing
    is there. Part files and symlinks that lead out of the share are left out."""
    if place.is_file():
        return [(place, (), place.stat())]
    if not place.is_dir():
        return None
    return list(files_below(root, place))
