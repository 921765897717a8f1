"""A folder moved as one transfer task: the hub leases one task, and the agent that runs
it lists the folder once, moves its small files many to a request and its big ones in
chunks, and reports the whole (jobs.rst: "a task is a file/directory"). The hub is not
in the per-file path: a folder of 100,000 files is one row and one report.

Resume is by file. A file lands under its name only once it was verified, written aside,
flushed and renamed, and its mtime is then the source's: a landing that already has the
source's size and mtime is a file an earlier run landed, and is not sent again. A run
cut short (a killed agent, a dropped connection) so sends again at most the requests
that were in flight, and a big file resumes from its part file.

A file that fails does not stop the others; the task fails at the end naming each
(the first ones in its message, all of them in its log), and its next attempt sends
only what is still missing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import structlog

from protocol.paths import PathRefused, join, share_parts
from protocol.transfer import SMALL_FILE, Landing, Share, StatAnswer
from transports.chunks import TooLarge, TransferError
from transports.client import Landed, TransferClient
from transports.shares import resolve

log = structlog.get_logger("agent.folder")

SMALL_BATCH = 8 << 20  # bytes of small files per request: several requests overlap
BATCH_FILES = 4_000  # files per request, at most (the endpoint takes up to 10,000)
# requests of small files at once: one landing here while the next is read there (more
# only contend for the same folders and the GIL: measured with bench/transfer.py)
BATCHES = 2
NAMED = 20  # failed files named in the task's message (all of them are in its log)

Moved = Callable[[int], None]
T = TypeVar("T")
# one big file of the folder, in chunks: (source path, landing path, size) -> how it landed
OneFile = Callable[[str, str, int], Awaitable[Landed]]


@dataclass
class Entry:
    """A file of the folder: its path in the source share, where it lands (in the
    destination share), and its size and mtime at the source."""

    source: str
    dest: str
    size: int
    mtime_ns: int


@dataclass
class Tally:
    """What a folder's run did, file by file."""

    files: int = 0
    size: int = 0
    there: int = 0  # files an earlier run had landed already
    moved: int = 0  # bytes sent by this run
    failed: dict[str, str] = field(default_factory=dict)  # source path -> why

    def count(self, key: str, result: Landed | TransferError, moved: Moved | None,
              told: bool = False) -> None:
        """One file's end, under ``key`` (its path) when it failed. ``told``: ``moved``
        heard its bytes as they came (a big file's chunks)."""
        if isinstance(result, Landed):
            self.moved += result.size
            if moved is not None and not told:
                moved(result.size)
        else:
            self.failed[key] = str(result)

    def summary(self) -> str:
        text = f"a folder of {self.files} files, {self.size} bytes"
        if self.there:
            text += f"; {self.there} files were there already"
        return text

    def raise_failed(self, folder: str) -> None:
        if not self.failed:
            return
        named = "; ".join(f"{path}: {why}" for path, why in list(self.failed.items())[:NAMED])
        more = f" (and {len(self.failed) - NAMED} more)" if len(self.failed) > NAMED else ""
        raise FolderFailed(f"{len(self.failed)} of {self.files} files of {folder!r} did not "
                           f"arrive: {named}{more}", self.failed)


class FolderFailed(TransferError):
    """Some files of a folder did not arrive: each by name, with why."""

    def __init__(self, message: str, failed: dict[str, str]) -> None:
        super().__init__(message)
        self.failed = failed

    def log(self) -> str:
        return "".join(f"failed: {path}: {why}\n" for path, why in self.failed.items())


def entries(info: StatAnswer, folder: str, landing: str) -> list[Entry]:
    """The files of a folder's listing, each with where it lands: its path below the
    folder, kept below the landing."""
    base, lands = share_parts(folder), share_parts(landing)
    out = []
    for f in info.files:
        parts = share_parts(f.path)  # the listing's paths were checked (answers.stat)
        out.append(Entry(f.path, join(lands + parts[len(base):]), f.size, f.mtime_ns))
    return out


Place = tuple[Path, str]  # a landing: its folder's real path (shared by its files), its name


def landed_already(root: Path, files: list[Entry]) -> tuple[list[Entry], dict[str, Place]]:
    """The files still to pull into the share rooted at ``root``, and where each lands:
    a file whose landing has its size and mtime is skipped. Each landing folder is
    resolved and read once (a new folder: not at all). On a thread."""
    todo: list[Entry] = []
    places: dict[str, Place] = {}
    # a listing comes folder by folder: one folder's entries are held at a time
    parent_now: str | None = None
    folder: tuple[Path, dict[str, os.DirEntry[str]]] | None = None
    for entry in files:
        parent, _, name = entry.dest.rpartition("/")
        if parent != parent_now:
            parent_now, folder = parent, _landing_folder(root, parent)
        if folder is None:
            todo.append(entry)  # refused again when it is pulled, by name
            continue
        place, there = folder
        places[entry.dest] = (place, name)
        found = there.get(name)
        try:
            st = found.stat(follow_symlinks=False) if found is not None else None
        except OSError:
            st = None
        if st is None or st.st_size != entry.size or st.st_mtime_ns != entry.mtime_ns:
            todo.append(entry)
    return todo, places


def _landing_folder(root: Path, parent: str
                    ) -> tuple[Path, dict[str, os.DirEntry[str]]] | None:
    """A landing folder's real place and what is in it now (nothing yet: empty); None
    when its path is refused."""
    try:
        place = resolve(root, share_parts(parent))
    except PathRefused:
        return None
    try:
        with os.scandir(place) as found:
            return place, {e.name: e for e in found}
    except OSError:  # not there yet (or not a folder: each file's landing says why)
        return place, {}


def _path(place: Place) -> Path:
    folder, name = place
    return folder / name


def batches(files: list[T], size: Callable[[T], int]) -> list[list[T]]:
    """Small files in requests of about ``SMALL_BATCH`` bytes and ``BATCH_FILES`` files."""
    out: list[list[T]] = []
    used = 0
    for f in files:
        if not out or used + size(f) > SMALL_BATCH or len(out[-1]) >= BATCH_FILES:
            out.append([])
            used = 0
        out[-1].append(f)
        used += size(f)
    return out


async def pull_folder(client: TransferClient, share: Share, folder: str, landing: str,
                      info: StatAnswer, one_file: OneFile,
                      sized: Callable[[int], None] | None = None,
                      moved: Moved | None = None) -> tuple[str, int]:
    """Every file of ``folder`` (listed in ``info``) into ``landing`` in ``share``; returns
    the task's summary and the bytes this run moved. Raises ``FolderFailed`` naming the
    files that did not arrive (the others stay)."""
    files = entries(info, folder, landing)
    tally = Tally(files=len(files), size=sum(e.size for e in files))
    if sized is not None:
        sized(tally.size)
    todo, places = await asyncio.to_thread(landed_already, share.root, files)
    tally.there = len(files) - len(todo)
    if moved is not None and tally.there:
        moved(tally.size - sum(e.size for e in todo))
    small = [e for e in todo if e.size <= SMALL_FILE]
    big = [e for e in todo if e.size > SMALL_FILE]

    def counted(entry: Entry, result: Landed | TransferError, told: bool = False) -> None:
        tally.count(entry.source, result, moved, told)

    requests = asyncio.Semaphore(BATCHES)

    async def one_batch(group: list[Entry]) -> None:
        async with requests:
            by_source = {e.source: e for e in group}
            # a path refused as text never leaves: it fails by name here
            asked = [e for e in group if e.dest in places]
            for e in group:
                if e.dest not in places:
                    counted(e, TransferError(f"{e.dest}: the landing path is refused"))
            if not asked:
                return
            try:
                got = await client.pull_batch([e.source for e in asked],
                                              lambda path: _path(places[by_source[path].dest]),
                                              root=share.root)
            except TransferError as exc:
                got = {e.source: exc for e in asked}
            for e in asked:
                result = got.get(e.source) or TransferError("not in the answer")
                if isinstance(result, TooLarge):  # grew past small since it was listed
                    big.append(e)
                    continue
                counted(e, result)

    await asyncio.gather(*(one_batch(group) for group in batches(small, lambda e: e.size)))
    for entry in big:
        try:
            counted(entry, await one_file(entry.source, entry.dest, entry.size), told=True)
        except TransferError as exc:
            counted(entry, exc)
    tally.raise_failed(folder)
    return tally.summary(), tally.moved


@dataclass
class Local:
    """A file of a pushed folder: where it is here, where it lands in the peer's share
    (a normal share path), and its size and mtime here."""

    path: Path
    dest: str
    size: int
    mtime_ns: int


async def pushed_already(client: TransferClient, files: list[Local]) -> list[Local]:
    """The files the peer has not landed yet with their size and mtime here: a pushed
    folder resumes by file too. Asked in groups, before any is sent."""
    todo: list[Local] = []
    for start in range(0, len(files), BATCH_FILES):
        group = files[start:start + BATCH_FILES]
        have = await client.have([Landing(f.dest, f.size, f.mtime_ns) for f in group])
        todo.extend(f for f in group if f.dest not in have)
    return todo


async def push_folder(client: TransferClient, root: Path, files: list[Local],
                      one_file: OneFile, sized: Callable[[int], None] | None = None,
                      moved: Moved | None = None) -> tuple[str, int]:
    """Local files of a folder to the peer; returns the summary and the bytes moved.
    Raises ``FolderFailed``."""
    tally = Tally(files=len(files), size=sum(f.size for f in files))
    if sized is not None:
        sized(tally.size)
    todo = await pushed_already(client, files)
    tally.there = len(files) - len(todo)
    if moved is not None and tally.there:
        moved(tally.size - sum(f.size for f in todo))
    small = [f for f in todo if f.size <= SMALL_FILE]
    big = [f for f in todo if f.size > SMALL_FILE]

    def counted(dest: str, result: Landed | TransferError, told: bool = False) -> None:
        tally.count(dest, result, moved, told)

    requests = asyncio.Semaphore(BATCHES)

    async def one_batch(group: list[Local]) -> None:
        async with requests:
            try:
                got = await client.push_batch([(f.path, f.dest) for f in group], root=root)
            except TransferError as exc:
                got = {f.dest: exc for f in group}
            for f in group:
                result = got.get(f.dest) or TransferError("not in the answer")
                if isinstance(result, TooLarge):
                    big.append(f)
                    continue
                counted(f.dest, result)

    await asyncio.gather(*(one_batch(group) for group in batches(small, lambda f: f.size)))
    for f in big:
        try:
            counted(f.dest, await one_file(str(f.path), f.dest, f.size), told=True)
        except TransferError as exc:
            counted(f.dest, exc)
    tally.raise_failed(str(root))
    return tally.summary(), tally.moved
