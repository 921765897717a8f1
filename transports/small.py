"""Small files, which travel many to a request: landed by the same rules as chunked ones
(checked against their hash, written aside, renamed into place), with one flush to disk
for a whole batch instead of one per file."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.refusals import refused
from protocol.paths import PathRefused
from transports.beneath import Folder, folder_of
from transports.chunks import (
    ChunkCorrupt,
    TransferError,
    chunk_hash,
    file_hash,
    write_error,
)
from transports.partial import received, receiving


@dataclass(frozen=True)
class SmallFile:
    """A small file that arrived whole, with the hash its sender gave it."""

    dest: Path
    data: bytes | bytearray  # as it arrived (a batch request reads each into its own)
    digest: bytes
    mtime_ns: int
    mode: int


def land_small(files: list[SmallFile], root: Path | None = None) -> list[str | TransferError]:
    """Small files by the same rules as big ones: each checked against its hash and
    written aside; then one flush to disk for all of them (not one per file, which is
    what makes many small files slow); then each renamed into place. Returns, in order,
    each file's hash or the error that kept it out.

    ``root`` is the share they land in (each ``dest`` as ``shares.resolve`` gives it):
    each folder is reached from there without following a symlink, and each file is made,
    renamed and removed relative to its folder (``transports.beneath``). Without it, each
    file's folder is trusted as it is (and made if missing)."""
    folders: dict[Path, Folder] = {}
    held: list[str] = []  # destinations this batch receives (``partial.receiving``)
    try:
        return _land(files, root, folders, held)
    finally:
        received(held)
        for folder in folders.values():
            folder.close()


def _land(files: list[SmallFile], root: Path | None, folders: dict[Path, Folder],
          held: list[str]) -> list[str | TransferError]:
    results: list[str | TransferError] = []
    staged: list[tuple[int, int, SmallFile, Folder, str]] = []  # (index, fd, file, its temp)
    for index, f in enumerate(files):
        if chunk_hash(f.data) != f.digest:
            results.append(ChunkCorrupt(f"{f.dest.name} does not match its hash "
                                        "(corrupted in flight)"))
            continue
        if not receiving(str(f.dest)):  # two transfers for one file must not share its temp
            results.append(TransferError(f"{f.dest.name} is being received by another "
                                         "transfer"))
            continue
        held.append(str(f.dest))
        try:
            folder = folders.get(f.dest.parent)
            if folder is None:
                folder = folders[f.dest.parent] = folder_of(f.dest, root, create=True)
            fd, temp = _temp(folder, f.dest.name)
        except PathRefused as exc:
            refused("share_path", "a writer of the share", str(exc), dest=str(f.dest))
            results.append(TransferError(str(exc)))
            continue
        except OSError as exc:
            results.append(write_error(exc, f.dest))
            continue
        try:
            view = memoryview(f.data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, f.mode & 0o777)
            os.utime(fd, ns=(f.mtime_ns, f.mtime_ns))
        except OSError as exc:
            os.close(fd)
            folder.unlink(temp)
            results.append(write_error(exc, f.dest, len(f.data)))
            continue
        staged.append((index, fd, f, folder, temp))
        results.append(file_hash(len(f.data), max(len(f.data), 1),
                                 [f.digest] if f.data else []))
    try:
        _flush([fd for _, fd, _, _, _ in staged])
    except OSError as exc:
        for _, fd, _f, folder, temp in staged:
            os.close(fd)
            folder.unlink(temp)
        error = write_error(exc, staged[0][2].dest)
        return [error if isinstance(r, str) else r for r in results]
    position = {index: n for n, (index, _, _, _, _) in enumerate(staged)}
    out: list[str | TransferError] = []
    for index, result in enumerate(results):
        landed: str | TransferError = result
        if index in position:
            _, fd, f, folder, temp = staged[position[index]]
            os.close(fd)
            try:
                folder.replace(temp, f.dest.name)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    folder.unlink(temp)
                landed = write_error(exc, f.dest)
        out.append(landed)
    for folder in {id(s[3]): s[3] for s in staged}.values():
        folder.sync()
    return out


def _temp(folder: Folder, name: str) -> tuple[int, str]:
    """A new file beside ``name``, ours alone (``O_EXCL``): its descriptor and name. The
    name is the file's part file, as a chunked receive names it: one left by a killed
    run (or a planted symlink) goes first, so a run cut short leaves nothing behind once
    its files are sent again. A big file's journal that went with it goes too."""
    temp = f".{name}.ferry-part"
    try:
        folder.unlink_existing(temp)
    except FileNotFoundError:
        pass
    else:
        folder.unlink(f".{name}.ferry-state")
    return folder.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), temp


def _flush(fds: list[int]) -> None:
    """Data of these files on disk: one syncfs per file system on Linux, else fsync each."""
    syncfs = _syncfs()
    if syncfs is None:
        for fd in fds:
            os.fsync(fd)
        return
    done: set[int] = set()
    for fd in fds:
        device = os.fstat(fd).st_dev
        if device in done:
            continue
        if syncfs(fd) != 0:
            for each in fds:
                os.fsync(each)
            return
        done.add(device)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function: Callable[[int], int] = libc.syncfs
        return function
    except (OSError, AttributeError):
        return None
