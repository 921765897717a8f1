"""What a peer's answers must be, checked before anything acts on them.

The client reads each answer within its size (``transports.limits``); these functions then
check its shape and its claims: a stat within this agent's quotas (a file of at most
``max_file_size`` bytes in at most ``MAX_CHUNKS`` chunks, a folder of at most ``max_files``
files, all below the folder asked for), a batch of small files that holds only files
asked for, each whole and small, and a push's answers that name only chunks and files
that exist. An answer that breaks one raises ``Lie`` with what the peer did wrong; the
client counts it against the peer and fails the transfer (``PeerLied``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import msgspec

from core.errors import FerryError
from protocol.paths import PathRefused, share_parts
from protocol.transfer import MAX_CHUNK, SMALL_FILE, FileHeader, HaveAnswer, StatAnswer
from transports.chunks import MAX_CHUNKS, chunk_count, chunk_size
from transports.limits import Limits

T = TypeVar("T")
INT64 = 1 << 63  # a time in ns, a size: what the file system can hold


class Lie(FerryError):
    """An answer no honest peer gives; the message says what is wrong with it."""


class OpenAnswer(msgspec.Struct, frozen=True):
    missing: list[int]
    have: int = 0


class CommitAnswer(msgspec.Struct, frozen=True):
    hash: str


class FileLanded(msgspec.Struct, frozen=True):
    path: str
    hash: str = ""
    error: str = ""


class FilesAnswer(msgspec.Struct, frozen=True):
    files: list[FileLanded]


def decode(body: bytes | bytearray | memoryview, kind: type[T], what: str) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Lie(f"answered {what} with something else ({exc})") from None


def stat(body: bytes | bytearray, path: str, limits: Limits) -> StatAnswer:
    """A stat answer for ``path``, within ``limits``."""
    info = decode(body, StatAnswer, f"the stat of {path!r}")
    if info.type == "file":
        if not 0 <= info.size <= limits.max_file_size:
            raise Lie(f"claims {path!r} has {info.size} bytes: this agent takes files of 0 to "
                      f"{limits.max_file_size} bytes (transfer_max_file_size)")
        most = min(MAX_CHUNK, chunk_size(info.size))
        if not 0 < info.chunk <= most or chunk_count(info.size, info.chunk) > MAX_CHUNKS:
            raise Lie(f"claims chunks of {info.chunk} bytes for {path!r} ({info.size} bytes): "
                      f"they are 1 to {most} bytes, at most {MAX_CHUNKS} of them")
        if not -INT64 <= info.mtime_ns < INT64:
            raise Lie(f"claims {path!r} was modified at {info.mtime_ns} ns")
        return info
    if info.type != "dir":
        raise Lie(f"claims {path!r} is a {info.type[:40]!r}, neither a file nor a folder")
    if len(info.files) > limits.max_files:
        raise Lie(f"lists {len(info.files)} files in {path!r}: this agent takes folders of at "
                  f"most {limits.max_files} files (transfer_max_files)")
    base = share_parts(path)
    for f in info.files:
        try:
            parts = share_parts(f.path)
        except PathRefused as exc:
            raise Lie(f"lists a file in {path!r} with a path that is not allowed: {exc}") \
                from None
        if len(parts) <= len(base) or parts[:len(base)] != base:
            raise Lie(f"lists {f.path!r}, which is not in {path!r}")
        if not 0 <= f.size < INT64:
            raise Lie(f"lists {f.path!r} with {f.size} bytes")
    return info


def batch(body: bytes | bytearray, asked: set[str]) -> Iterator[tuple[FileHeader, bytes]]:
    """The files of a small-file batch answer, each one asked for, once, whole and small."""
    view = memoryview(body)
    seen: set[str] = set()
    at = 0
    while at < len(view):
        end = body.find(b"\n", at)
        if end < 0:
            raise Lie("sent a batch of small files that ends inside a file's header")
        header = decode(view[at:end], FileHeader, "a file's header in a batch")
        if header.path not in asked or header.path in seen:
            raise Lie(f"sent {header.path[:200]!r} in a batch, which asked for it "
                      f"{'once' if header.path in seen else 'not at all'}")
        seen.add(header.path)
        if not 0 <= header.size <= SMALL_FILE:
            raise Lie(f"sent {header.size} bytes for the small file {header.path!r} (batched "
                      f"files are at most {SMALL_FILE} bytes)")
        at = end + 1 + header.size
        if at > len(view):
            raise Lie(f"sent a batch of small files that ends inside {header.path!r}")
        yield header, bytes(view[end + 1:at])


def missing(body: bytes | bytearray, count: int, path: str) -> list[int]:
    """The chunks a receiving peer asks for: each a chunk of the file, once."""
    answer = decode(body, OpenAnswer, f"the open of {path!r}")
    if len(set(answer.missing)) != len(answer.missing) or \
            not all(0 <= i < count for i in answer.missing):
        raise Lie(f"asked for chunks of {path!r} that it has not ({count} chunks)")
    return answer.missing


def committed(body: bytes | bytearray, whole: str | None, path: str) -> str:
    """The hash a receiving peer gives the file it landed: ours, when we know it."""
    answer = decode(body, CommitAnswer, f"the commit of {path!r}")
    if not _is_hash(answer.hash) or (whole is not None and answer.hash != whole):
        raise Lie(f"answered that {path!r} landed with hash {answer.hash[:80]!r}, not the "
                  "file's")
    return answer.hash


def landed(body: bytes | bytearray, sent: set[str]) -> list[FileLanded]:
    """A receiving peer's results for a batch of small files: only files sent, once."""
    answer = decode(body, FilesAnswer, "a batch of small files")
    seen: set[str] = set()
    for result in answer.files:
        if result.path not in sent or result.path in seen:
            raise Lie(f"answered for {result.path[:200]!r}, which the batch sent "
                      f"{'once' if result.path in seen else 'not at all'}")
        seen.add(result.path)
        if not result.error and not _is_hash(result.hash):
            raise Lie(f"answered {result.path!r} landed with hash {result.hash[:80]!r}")
    return answer.files


def there(body: bytes | bytearray, asked: set[str]) -> set[str]:
    """The files a receiving peer says have landed already: only files asked about."""
    answer = decode(body, HaveAnswer, "which files it has")
    have = set(answer.have)
    if not have <= asked:
        raise Lie(f"answered that it has {sorted(have - asked)[0][:200]!r}, which nobody "
                  "asked about")
    return have


def _is_hash(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
