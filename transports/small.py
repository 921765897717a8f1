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
    folders: dict[str, Folder] = {}  # by the real path of the folder
    held: list[str] = []  # destinations this batch receives (``partial.receiving``)
    try:
        return _land(files, root, folders, held)
    finally:
        received(held)
        for folder in folders.values():
            folder.close()


def _land(files: list[SmallFile], root: Path | None, folders: dict[str, Folder],
          held: list[str]) -> list[str | TransferError]:
    results: list[str | TransferError] = []
    staged: list[tuple[int, str, Folder, str]] = []  # (index, name, folder, its temp)
    syncfs = _syncfs()  # None: each file is synced on its own as it is written
    for index, f in enumerate(files):
        if chunk_hash(f.data) != f.digest:
            results.append(ChunkCorrupt(f"{f.dest.name} does not match its hash "
                                        "(corrupted in flight)"))
            continue
        key = str(f.dest)
        parent, _, name = key.rpartition(os.sep)  # not pathlib's: per file, it shows
        if not receiving(key):  # two transfers for one file must not share its temp
            results.append(TransferError(f"{name} is being received by another transfer"))
            continue
        held.append(key)
        try:
            folder = folders.get(parent)
            if folder is None:
                folder = folders[parent] = folder_of(f.dest, root, create=True)
            fd, temp = _temp(folder, name)
        except PathRefused as exc:
            refused("share_path", "a writer of the share", str(exc), dest=key)
            results.append(TransferError(str(exc)))
            continue
        except OSError as exc:
            results.append(write_error(exc, f.dest))
            continue
        try:  # closed at once: a batch of thousands of files holds no descriptor per file
            view = memoryview(f.data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, f.mode & 0o777)
            os.utime(fd, ns=(f.mtime_ns, f.mtime_ns))
            if syncfs is None:
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            folder.unlink(temp)
            results.append(write_error(exc, f.dest, len(f.data)))
            continue
        os.close(fd)
        staged.append((index, name, folder, temp))
        results.append(file_hash(len(f.data), max(len(f.data), 1),
                                 [f.digest] if f.data else []))
    touched = list({id(s[2]): s[2] for s in staged}.values())
    try:
        if syncfs is not None:
            _flush(syncfs, touched, staged)
    except OSError as exc:
        for _, _f, folder, temp in staged:
            folder.unlink(temp)
        error = write_error(exc, staged[0][2].path / staged[0][1])
        return [error if isinstance(r, str) else r for r in results]
    position = {index: n for n, (index, _, _, _) in enumerate(staged)}
    out: list[str | TransferError] = []
    for index, result in enumerate(results):
        landed: str | TransferError = result
        if index in position:
            _, name, folder, temp = staged[position[index]]
            try:
                folder.replace(temp, name)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    folder.unlink(temp)
                landed = write_error(exc, folder.path / name)
        out.append(landed)
    for folder in touched:
        folder.sync()
    return out


def _temp(folder: Folder, name: str) -> tuple[int, str]:
    """A new file beside ``name``, ours alone (``O_EXCL``): its descriptor and name. The
    name is the file's part file, as a chunked receive names it: one left by a killed
    run (or a planted symlink) goes first, so a run cut short leaves nothing behind once
    its files are sent again. A big file's journal that went with it goes too."""
    temp = f".{name}.ferry-part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return folder.open(temp, flags, 0o600), temp
    except FileExistsError:
        folder.unlink(temp)
        folder.unlink(f".{name}.ferry-state")
    return folder.open(temp, flags, 0o600), temp


def _flush(syncfs: Callable[[int], int], folders: list[Folder],
           staged: list[tuple[int, str, Folder, str]]) -> None:
    """The written files' data on disk: one syncfs per file system (through a folder's
    descriptor), not one fsync per file; where syncfs fails, each file is synced."""
    done: set[int] = set()
    for folder in folders:
        device = os.fstat(folder.fd).st_dev if folder.fd >= 0 else -1
        if device in done:
            continue
        if folder.fd < 0 or syncfs(folder.fd) != 0:  # no descriptor (no dir_fd), or failed
            for _, _f, each, temp in staged:
                fd = each.open(temp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
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
