"""Small files, which travel many to a request: landed by the same rules as chunked ones
(checked against their hash, written aside, renamed into place), with one flush to disk
for a whole batch instead of one per file."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transports.chunks import (
    ChunkCorrupt,
    TransferError,
    chunk_hash,
    file_hash,
    sync_folder,
    write_error,
)


@dataclass(frozen=True)
class SmallFile:
    """A small file that arrived whole, with the hash its sender gave it."""

    dest: Path
    data: bytes
    digest: bytes
    mtime_ns: int
    mode: int


def land_small(files: list[SmallFile]) -> list[str | TransferError]:
    """Small files by the same rules as big ones: each checked against its hash and
    written aside; then one flush to disk for all of them (not one per file, which is
    what makes many small files slow); then each renamed into place. Returns, in order,
    each file's hash or the error that kept it out."""
    results: list[str | TransferError] = []
    staged: list[tuple[int, int, SmallFile, Path]] = []  # (index, fd, file, temp)
    for index, f in enumerate(files):
        if chunk_hash(f.data) != f.digest:
            results.append(ChunkCorrupt(f"{f.dest.name} does not match its hash "
                                        "(corrupted in flight)"))
            continue
        try:  # a temp of this batch's own: two batches for one file must not share it
            f.dest.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=f.dest.parent, prefix=f".{f.dest.name[:200]}.",
                                        suffix=".ferry-part")
            temp = Path(name)
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
            temp.unlink(missing_ok=True)
            results.append(write_error(exc, f.dest, len(f.data)))
            continue
        staged.append((index, fd, f, temp))
        results.append(file_hash(len(f.data), max(len(f.data), 1),
                                 [f.digest] if f.data else []))
    try:
        _flush([fd for _, fd, _, _ in staged])
    except OSError as exc:
        for _, fd, _f, temp in staged:
            os.close(fd)
            temp.unlink(missing_ok=True)
        error = write_error(exc, staged[0][2].dest)
        return [error if isinstance(r, str) else r for r in results]
    position = {index: n for n, (index, _, _, _) in enumerate(staged)}
    out: list[str | TransferError] = []
    for index, result in enumerate(results):
        landed: str | TransferError = result
        if index in position:
            _, fd, f, temp = staged[position[index]]
            os.close(fd)
            try:
                os.replace(temp, f.dest)
            except OSError as exc:
                temp.unlink(missing_ok=True)
                landed = write_error(exc, f.dest)
        out.append(landed)
    for folder in {f.dest.parent for _, _, f, _ in staged}:
        sync_folder(folder)
    return out


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
