"""Files in verified chunks: reading them at the source, and building them at the
destination so that a corrupt or half-written file never appears under its name.

A file of ``size`` bytes is cut into chunks of ``chunk_size(size)`` (8 MiB,
more for huge files, so that no file has more than 4096). Each chunk travels
with its BLAKE3 hash; the receiver hashes what arrived and writes it in place
only when the two agree. The file's own hash is BLAKE3 over its size, chunk
size and the chunk hashes in order: built from the chunk hashes, so nobody
reads the file twice for it.

At the destination a ``PartialFile`` is a preallocated temporary file beside
the destination (``.<name>.ferry-part``), and a journal (``.<name>.ferry-
state``) of the chunks that are in it, one record appended per chunk right
after it is written. A killed receiver loses only the chunks it was writing:
on restart the journal says what is there. The journal trusts the page cache,
which survives a killed process but not a crashed machine: after a reboot
(another boot id), the chunks it lists are read and hashed again before they
count. The file is renamed into place only after every chunk is in, the whole
file's hash matches the sender's, and its data is on disk; its mtime and
permission bits are the source's.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import stat as stat_module
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import blake3
import msgspec

MiB = 1 << 20
CHUNK = 8 * MiB
MAX_CHUNKS = 4096
HASH_BYTES = 32
_RECORD = struct.Struct(f"<I{HASH_BYTES}s")
_MAGIC = b"ferry-part 1\n"


def chunk_size(size: int) -> int:
    """8 MiB, or more (a whole number of MiB) when that would make over 4096 chunks."""
    return max(CHUNK, math.ceil(size / MAX_CHUNKS / MiB) * MiB)


def chunk_count(size: int, chunk: int) -> int:
    return math.ceil(size / chunk)


def span(size: int, chunk: int, index: int) -> tuple[int, int]:
    """Offset and length of chunk ``index``."""
    offset = index * chunk
    return offset, min(chunk, size - offset)


def chunk_hash(data: bytes | memoryview) -> bytes:
    # blake3 releases the GIL for large inputs: streams hash in parallel on their threads
    return blake3.blake3(data, max_threads=1).digest()


def file_hash(size: int, chunk: int, hashes: list[bytes]) -> str:
    """The whole file's hash, from its chunk hashes (hex)."""
    h = blake3.blake3(b"ferry file v1\n" + struct.pack("<QQ", size, chunk))
    for digest in hashes:
        h.update(digest)
    return h.hexdigest()


class TransferError(Exception):
    """A file cannot be read or written; the message says why, for the task's report."""


class ChunkCorrupt(TransferError):
    pass


class SourceChanged(TransferError):
    pass


class DiskFull(TransferError):
    pass


class TooLarge(TransferError):
    """A file listed as small is no longer: it must travel in chunks."""


TOO_LARGE = "send it in chunks"  # ends the answer's error for such a file


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


_OPEN: set[str] = set()  # destinations being received in this process
_OPEN_LOCK = threading.Lock()


class SourceFile:
    """A file being sent: read a chunk at a time (from any thread), hashed as it goes."""

    def __init__(self, path: Path, chunk: int | None = None) -> None:
        self.path = path
        try:  # non-blocking: a FIFO must not hang the thread that opens it
            self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) |
                              getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
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

    def check_unchanged(self) -> None:
        st = os.fstat(self.fd)
        if (st.st_size, st.st_mtime_ns) != (self.stat.size, self.stat.mtime_ns):
            raise SourceChanged(f"{self.path} changed while it was sent")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Header(msgspec.Struct, frozen=True):
    size: int
    chunk: int
    source: str  # Stat.identity of the source
    boot: str  # boot id when the journal was started


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # other systems: treat every start as a new boot (re-verify)
        return f"pid-{os.getpid()}"


class PartialFile:
    """A file being received into ``dest``; several streams may ``write`` at once."""

    def __init__(self, dest: Path, size: int, chunk: int, source: Stat) -> None:
        self.dest = dest
        self.size = size
        self.chunk = chunk
        self.source = source
        self.count = chunk_count(size, chunk)
        self.temp = dest.with_name(f".{dest.name}.ferry-part")
        self.journal = dest.with_name(f".{dest.name}.ferry-state")
        self.hashes: list[bytes | None] = [None] * self.count
        self._lock = threading.Condition()
        self._writing = 0  # writes in progress (on other threads): close waits for them
        self._fd = -1
        self._journal_fd = -1

    # -- open, resume
    def open(self) -> int:
        """Open (or resume) the partial file; returns how many chunks it already holds.
        One transfer at a time may receive a destination (in this process)."""
        key = os.path.realpath(self.dest)
        with _OPEN_LOCK:
            if key in _OPEN:
                raise TransferError(f"{self.dest.name} is being received by another transfer")
            _OPEN.add(key)
        self._key = key
        header = _Header(self.size, self.chunk, self.source.identity, boot_id())
        try:
            resumed = self._load(header)
            if resumed is None:
                self._start(header)
                return 0
            return resumed
        except BaseException:
            self.close()
            raise

    def _start(self, header: _Header) -> None:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.temp, self.journal):
            path.unlink(missing_ok=True)
        self._fd = os.open(self.temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _preallocate(self._fd, self.size, self.dest)
        except BaseException:
            self.discard()
            raise
        self._journal_fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                                   os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.write(self._journal_fd, _MAGIC + msgspec.json.encode(header) + b"\n")

    def _load(self, header: _Header) -> int | None:
        nofollow = getattr(os, "O_NOFOLLOW", 0)
        try:  # only our own plain files: a symlink planted here must not be written through
            journal_fd = os.open(self.journal, os.O_RDONLY | os.O_CLOEXEC | nofollow)
            try:
                if not _own_plain_file(journal_fd):
                    return None
                raw = b""
                while block := os.read(journal_fd, 1 << 20):
                    raw += block
            finally:
                os.close(journal_fd)
            fd = os.open(self.temp, os.O_RDWR | os.O_CLOEXEC | nofollow)
        except OSError:
            return None
        if not _own_plain_file(fd):
            os.close(fd)
            return None
        first, _, records = raw[len(_MAGIC):].partition(b"\n")
        try:
            old = msgspec.json.decode(first, type=_Header)
        except (msgspec.DecodeError, msgspec.ValidationError):
            old = None
        if not raw.startswith(_MAGIC) or old is None or \
                (old.size, old.chunk, old.source) != (header.size, header.chunk, header.source) \
                or os.fstat(fd).st_size != self.size:
            os.close(fd)  # another file, or another version of it: start again
            return None
        whole = len(records) // _RECORD.size  # a torn last record is ignored
        for n in range(whole):
            index, digest = _RECORD.unpack_from(records, n * _RECORD.size)
            if index < self.count:
                self.hashes[index] = digest
        self._fd = fd
        if old.boot != header.boot:  # the machine restarted: the page cache may be lost
            self._reverify()
        self._journal_fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        os.ftruncate(self._journal_fd, len(_MAGIC) + len(first) + 1 + whole * _RECORD.size)
        if old.boot != header.boot:  # rewrite it: for this boot, with what checked out
            os.ftruncate(self._journal_fd, 0)
            os.write(self._journal_fd, _MAGIC + msgspec.json.encode(header) + b"\n" + b"".join(
                _RECORD.pack(i, d) for i, d in enumerate(self.hashes) if d is not None))
        return sum(1 for d in self.hashes if d is not None)

    def _reverify(self) -> None:
        for index, digest in enumerate(self.hashes):
            if digest is None:
                continue
            offset, length = span(self.size, self.chunk, index)
            if chunk_hash(os.pread(self._fd, length, offset)) != digest:
                self.hashes[index] = None

    # -- receive
    def missing(self) -> list[int]:
        return [i for i, d in enumerate(self.hashes) if d is None]

    def write(self, index: int, data: bytes | memoryview, digest: bytes) -> None:
        """Chunk ``index`` as it arrived, with the hash the sender gave it. A chunk whose
        bytes do not match is refused (``ChunkCorrupt``) and not written."""
        if not 0 <= index < self.count:
            raise TransferError(f"chunk {index} is outside the file ({self.count} chunks)")
        offset, length = span(self.size, self.chunk, index)
        if len(data) != length:
            raise ChunkCorrupt(f"chunk {index} has {len(data)} bytes, not {length}")
        if chunk_hash(data) != digest:
            raise ChunkCorrupt(f"chunk {index} does not match its hash (corrupted in flight)")
        with self._lock:
            if self._fd < 0:
                raise TransferError(f"{self.dest.name} is closed")
            self._writing += 1
        try:
            written = os.pwrite(self._fd, data, offset)
            if written != length:
                raise TransferError(f"short write of chunk {index} to {self.temp}")
            with self._lock:
                self.hashes[index] = digest
                os.write(self._journal_fd, _RECORD.pack(index, digest))
        except OSError as exc:
            raise write_error(exc, self.dest) from None
        finally:
            with self._lock:
                self._writing -= 1
                self._lock.notify_all()

    # -- finish
    def commit(self, expected: str | None = None) -> str:
        """Check, sync and rename into place; returns the file's hash. ``expected`` is the
        sender's hash of the whole file (None: the chunk hashes alone vouch for it)."""
        if self.missing():
            raise TransferError(f"{len(self.missing())} chunks of {self.dest.name} are missing")
        whole = file_hash(self.size, self.chunk, [d for d in self.hashes if d is not None])
        if expected is not None and whole != expected:
            self.discard()
            raise ChunkCorrupt(f"{self.dest.name}: the file's hash does not match the sender's")
        try:
            os.fchmod(self._fd, self.source.mode & 0o777)
            os.fsync(self._fd)
            os.utime(self._fd, ns=(self.source.mtime_ns, self.source.mtime_ns))
            ours, there = os.fstat(self._fd), os.lstat(self.temp)
            if (ours.st_dev, ours.st_ino) != (there.st_dev, there.st_ino):
                raise TransferError(f"{self.temp.name} was replaced while it was written")
            os.replace(self.temp, self.dest)
        except OSError as exc:
            raise write_error(exc, self.dest) from None
        sync_folder(self.dest.parent)
        self.close()
        self.journal.unlink(missing_ok=True)
        return whole

    def close(self) -> None:
        """Close the files (after the writes in progress); what is written stays."""
        with _OPEN_LOCK:
            _OPEN.discard(getattr(self, "_key", ""))
        with self._lock:
            self._lock.wait_for(lambda: self._writing == 0, timeout=60)
            for attr in ("_fd", "_journal_fd"):
                fd = getattr(self, attr)
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                    setattr(self, attr, -1)

    def discard(self) -> None:
        """Give up: nothing of it is left behind."""
        self.close()
        for path in (self.temp, self.journal):
            with contextlib.suppress(OSError):
                path.unlink()


def _own_plain_file(fd: int) -> bool:
    st = os.fstat(fd)
    return stat_module.S_ISREG(st.st_mode) and st.st_nlink == 1 and (
        not hasattr(os, "geteuid") or st.st_uid == os.geteuid())


def _preallocate(fd: int, size: int, dest: Path) -> None:
    if size == 0:
        return
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
        else:
            os.ftruncate(fd, size)
    except OSError as exc:
        raise write_error(exc, dest, size) from None


def write_error(exc: OSError, dest: Path, need: int | None = None) -> TransferError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(dest.parent).free if dest.parent.exists() else 0
        what = f"{need} bytes are needed, {free} are free" if need is not None \
            else f"{free} bytes are free"
        return DiskFull(f"destination disk full at {dest.parent}: {what}")
    return TransferError(f"cannot write {dest}: {exc.strerror}")


def sync_folder(folder: Path) -> None:
    """The rename itself on disk (POSIX: fsync the folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
