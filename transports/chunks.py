"""Files in verified chunks: the sizes, the hashes, and reading them at the source.

A file of ``size`` bytes is cut into chunks of ``chunk_size(size)`` (8 MiB,
more for huge files, so that no file has more than 4096). Each chunk travels
with its BLAKE3 hash; the receiver hashes what arrived and writes it in place
only when the two agree (``transports.partial``). The file's own hash is BLAKE3
over its size, chunk size and the chunk hashes in order: built from the chunk
hashes, so nobody reads the file twice for it.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import stat as stat_module
import struct
from dataclasses import dataclass
from pathlib import Path

import blake3

from transports.beneath import CLOEXEC, NOFOLLOW, Folder
from transports.errors import (
    TOO_LARGE,
    ChunkCorrupt,
    DiskFull,
    PeerLied,
    SourceChanged,
    TooLarge,
    TransferError,
)

__all__ = ["TOO_LARGE", "ChunkCorrupt", "DiskFull", "PeerLied", "SourceChanged", "TooLarge",
           "TransferError"]  # the errors, where the data path's callers always found them

MiB = 1 << 20
CHUNK = 8 * MiB
MAX_CHUNKS = 4096
HASH_BYTES = 32


def chunk_size(size: int) -> int:
    """8 MiB, or more (a whole number of MiB) when that would make over 4096 chunks."""
    return max(CHUNK, math.ceil(size / MAX_CHUNKS / MiB) * MiB)


def chunk_count(size: int, chunk: int) -> int:
    return math.ceil(size / chunk)


def span(size: int, chunk: int, index: int) -> tuple[int, int]:
    """Offset and length of chunk ``index``."""
    offset = index * chunk
    return offset, min(chunk, size - offset)


def chunk_hash(data: bytes | bytearray | memoryview) -> bytes:
    # blake3 releases the GIL for large inputs: streams hash in parallel on their threads
    return blake3.blake3(data, max_threads=1).digest()


def file_hash(size: int, chunk: int, hashes: list[bytes]) -> str:
    """The whole file's hash, from its chunk hashes (hex)."""
    h = blake3.blake3(b"ferry file v1\n" + struct.pack("<QQ", size, chunk))
    for digest in hashes:
        h.update(digest)
    return h.hexdigest()


@dataclass(frozen=True)
class Stat:
    size: int
    mtime_ns: int
    mode: int  # permission bits (rwx only: set-id and sticky bits never travel)
    ident: str = ""  # the source's own identity, when known (see ``identity``)

    @property
    def identity(self) -> str:
        """What a resumed receive checks: the same source file, unchanged. The source
        side adds its inode and ctime (which no one can set) to size and mtime, so an
        in-place rewrite that keeps size and mtime still counts as a change."""
        return self.ident or f"{self.size}:{self.mtime_ns}"


class SourceFile:
    """A file being sent: read a chunk at a time (from any thread), hashed as it goes."""

    def __init__(self, path: Path, chunk: int | None = None, root: Path | None = None) -> None:
        """``root``: the share the file is in. It is then opened by walking down from there
        (``Folder.beneath``): no folder on the way may have become a symlink. Without it,
        only the file's own name must not be one."""
        self.path = path
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not hang the thread
        try:
            if root is None:
                self.fd = os.open(path, flags | NOFOLLOW | CLOEXEC)
            else:
                with Folder.beneath(root, path.parent) as folder:
                    self.fd = folder.open(path.name, flags)
        except OSError as exc:
            raise TransferError(f"cannot read {path}: {exc.strerror}") from None
        st = os.fstat(self.fd)
        if not stat_module.S_ISREG(st.st_mode):
            os.close(self.fd)
            self.fd = -1
            raise TransferError(f"cannot read {path}: not a regular file")
        os.set_blocking(self.fd, True)
        self.stat = Stat(st.st_size, st.st_mtime_ns, st.st_mode & 0o777,
                         f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}")
        self.chunk = chunk or chunk_size(self.stat.size)
        self.count = chunk_count(self.stat.size, self.chunk)

    def read(self, index: int) -> tuple[bytes, bytes]:
        """Chunk ``index`` and its hash."""
        offset, length = span(self.stat.size, self.chunk, index)
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise SourceChanged(f"{self.path} became shorter while it was sent")
        return data, chunk_hash(data)

    def read_into(self, index: int, buffer: memoryview) -> tuple[memoryview, bytes]:
        """Chunk ``index`` read into ``buffer`` (at least a chunk long), and its hash: the
        part of ``buffer`` it fills."""
        offset, length = span(self.stat.size, self.chunk, index)
        view = buffer[:length]
        if pread_into(self.fd, view, offset) != length:
            raise SourceChanged(f"{self.path} became shorter while it was sent")
        return view, chunk_hash(view)

    def check_unchanged(self) -> None:
        st = os.fstat(self.fd)
        if (st.st_size, st.st_mtime_ns) != (self.stat.size, self.stat.mtime_ns):
            raise SourceChanged(f"{self.path} changed while it was sent")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` with the file's bytes from ``offset`` (fewer only at its end), without
    moving its position: ``os.preadv`` straight into the buffer where the system has it,
    else ``os.pread`` and a copy (or, where there is neither, a seek: each request opens its
    own descriptor)."""
    done = 0
    while done < len(view):
        if _PREADV is not None:
            got = _PREADV(fd, [view[done:]], offset + done)
        else:
            if _PREAD is not None:
                data = _PREAD(fd, len(view) - done, offset + done)
            else:
                os.lseek(fd, offset + done, os.SEEK_SET)
                data = os.read(fd, len(view) - done)
            got = len(data)
            view[done:done + got] = data
        if not got:
            break
        done += got
    return done


_PREADV = getattr(os, "preadv", None)  # not on Windows (nor on older macOS)
_PREAD = getattr(os, "pread", None)  # not on Windows


def write_error(exc: OSError, dest: Path, need: int | None = None) -> TransferError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(dest.parent).free if dest.parent.exists() else 0
        what = f"{need} bytes are needed, {free} are free" if need is not None \
            else f"{free} bytes are free"
        return DiskFull(f"destination disk full at {dest.parent}: {what}")
    return TransferError(f"cannot write {dest}: {exc.strerror}")

