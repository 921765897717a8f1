"""What the transfer endpoint and its client say to each other: paths, limits, shapes.

docs/TRANSFERS.md describes the requests; ``transports/endpoint.py`` answers them and
``transports/client.py`` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from core.errors import FerryError

PREFIX = "/transfer/v1"
MAX_CHUNK = 256 << 20
BATCH_BYTES = 16 << 20  # a batch of small files, at most
SMALL_FILE = 1 << 20  # files up to this travel in batches


@dataclass(frozen=True)
class Share:
    id: str
    name: str
    root: Path


class FileInfo(msgspec.Struct, frozen=True):
    path: str
    size: int
    mtime_ns: int
    mode: int


class StatAnswer(msgspec.Struct, frozen=True):
    type: str  # "file" or "dir"
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0
    chunk: int = 0
    identity: str = ""
    files: list[FileInfo] = []


class OpenRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    size: int
    chunk: int
    identity: str
    mode: int
    mtime_ns: int


class CommitRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    hash: str | None = None


class FilesRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    paths: list[str]


class Landing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A file a sender is about to send, as it is at the sender: is it there already?"""
    path: str
    size: int
    mtime_ns: int


class HaveRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    files: list[Landing]


class HaveAnswer(msgspec.Struct, frozen=True):
    have: list[str]  # the paths that have landed already, with that size and mtime


class FileHeader(msgspec.Struct, frozen=True):
    """One file of a batch, before its bytes (``size`` of them) in the same stream."""
    path: str
    size: int
    mtime_ns: int
    mode: int
    hash: str = ""  # BLAKE3 of the bytes (hex)
    error: str = ""  # instead of bytes: why this file could not be read


class Refused(FerryError):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(message)
