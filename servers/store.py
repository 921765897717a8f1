"""JSON files that are never half-written, and the lock their writers share.

A file is replaced whole: written to a temporary file in the same folder, flushed to
disk, renamed over the old one (atomic on POSIX and Windows), then the folder is
flushed on POSIX so the rename itself survives a crash. A reader therefore sees the
old file or the new one, never a mix, and needs no lock; writers take ``locked()``
so that a read-modify-write is not lost to another process's.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import filelock

from core.config import write_atomic
from core.errors import FerryError
from servers.errors import ServersError


class Unreadable(FerryError):
    """A file exists but is not JSON we can read (bad bytes, bad JSON, not a file)."""


def read_json(path: Path) -> Any:
    """The decoded JSON of ``path``: FileNotFoundError when there is none, Unreadable
    when what is there cannot be read as JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except UnicodeDecodeError as exc:
        raise Unreadable(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise Unreadable(f"it cannot be read ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Unreadable(f"it is not valid JSON ({exc})") from None


def write_json(path: Path, data: Any, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably; ``mode`` from the first byte
    (a file meant to be private never exists readable)."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", mode)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk; Windows has no such call."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_name(path: Path, label: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.{label}-{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{label}-{stamp}-{n}")
    return candidate


def move_aside(path: Path, label: str) -> Path:
    """Rename ``path`` to ``<name>.<label>-<UTC time>`` next to it; the new path."""
    target = _free_name(path, label)
    os.rename(path, target)
    sync_folder(path.parent)
    return target


def save_aside(path: Path, label: str, data: Any, *, mode: int = 0o644) -> Path:
    """Write ``data`` to a new ``<name>.<label>-<UTC time>`` next to ``path``."""
    target = _free_name(path, label)
    write_json(target, data, mode=mode)
    return target


@contextlib.contextmanager
def locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold the inter-process lock of ``path`` (``<path>.lock``), creating its folder.

    ServersError after ``timeout`` seconds; PermissionError when the folder is not ours
    to write (the caller decides whether read-only use is fine).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # a new lock object per use: threads of one process then exclude each other too
    lock = filelock.FileLock(path.with_name(path.name + ".lock"), timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise ServersError(f"{path} is locked by another process for more than {timeout:g} s; "
                           "try again, or look for a stuck ferry process") from None
    try:
        yield
    finally:
        lock.release()
