"""What the endpoint reads for a peer, on the request's thread: a file's facts or a folder's
files, one chunk, or a batch of small files. Every file is opened from the share's root
down (``SourceFile(..., root=)``): a folder swapped for a symlink after the path was
checked is refused, not read through."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from stat import S_ISREG

import msgspec

from protocol.paths import PathRefused, join, share_parts
from protocol.transfer import BATCH_BYTES, SMALL_FILE, FileHeader, FileInfo, Refused, Share, StatAnswer
from transports.beneath import AT, Folder
from transports.chunks import TOO_LARGE, SourceFile, TransferError, chunk_hash
from transports.shares import files_below, resolve

NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted in a share must not hang us


def inside(bound: Path, place: Path, tree: bool) -> bool:
    """``place`` is ``bound`` itself or, for a ticket to a tree, below it (real paths)."""
    return place == bound or (tree and bound in place.parents)


def _open(share: Share, place: Path, chunk: int | None = None) -> SourceFile:
    """The file at ``place``, opened from the share's root: a path swapped under us is
    a 400 (counted by the endpoint), a file that is not there or not plain a 404/409."""
    try:
        return SourceFile(place, chunk, root=share.root)
    except PathRefused as exc:
        raise Refused(400, "bad_path", str(exc)) from None


def stat(share: Share, place: Path, parts: tuple[str, ...], tree: bool, bound: Path,
         max_files: int) -> StatAnswer:
    """A file's size and identity, or a folder's files (those really below ``bound``, the
    ticket's own place: a symlink to elsewhere is left out): at most ``max_files`` of
    them, or the answer is a refusal saying so (no listing of a whole disk in memory)."""
    try:
        st = os.stat(place)
    except FileNotFoundError:
        raise Refused(404, "not_found", f"{join(parts)!r} does not exist in share "
                      f"{share.name!r}") from None
    if not os.path.isdir(place):
        try:
            source = _open(share, place)
        except TransferError as exc:  # a FIFO, a device: nothing a transfer reads
            raise Refused(409, "not_a_file", str(exc)) from None
        try:
            return StatAnswer(type="file", size=source.stat.size, mtime_ns=source.stat.mtime_ns,
                              mode=source.stat.mode, chunk=source.chunk,
                              identity=source.stat.identity)
        finally:
            source.close()
    if not tree:
        raise Refused(403, "ticket_refused", "a folder needs a ticket for its whole tree")
    try:  # each file's facts as they are found: no stat results held for a whole tree
        files = [FileInfo(path=join((*parts, *rel)), size=info.st_size,
                          mtime_ns=info.st_mtime_ns, mode=info.st_mode & 0o777)
                 for _, rel, info in itertools.islice(files_below(share.root, place, bound),
                                                      max_files + 1)]
    except PathRefused as exc:
        raise Refused(400, "bad_path", str(exc)) from None
    if len(files) > max_files:
        raise Refused(413, "too_many_files", f"{join(parts)!r} holds more than {max_files} "
                      "files: transfer its folders one by one")
    return StatAnswer(type="dir", mtime_ns=st.st_mtime_ns, mode=st.st_mode & 0o777,
                      files=files)


def read_chunk(share: Share, place: Path, index: int, chunk: int, identity: str,
               buffer: memoryview) -> tuple[memoryview, bytes]:
    """Chunk ``index`` (of ``chunk`` bytes) read into ``buffer``, and its hash."""
    try:
        source = _open(share, place, chunk)
    except TransferError as exc:
        raise Refused(404, "not_found", str(exc)) from None
    try:
        if identity and source.stat.identity != identity:
            raise Refused(409, "source_changed", "the file changed since the transfer began")
        if not 0 <= index < source.count:
            raise Refused(400, "bad_chunk", f"chunk {index} is outside the file")
        return source.read_into(index, buffer)
    finally:
        source.close()


def read_batch(share: Share, names: list[str], bound: Path, tree: bool) -> bytes:
    """Small files as one answer: per file a JSON header line, then its bytes. A file that
    is really outside ``bound`` (the ticket's own place) is refused in its header.

    Each folder of the batch is resolved and opened once (``Folder.beneath``) and its files
    are opened relative to it, not following a symlink: a few system calls per file. A
    file that is a symlink (inside the share, it may be one) takes the slow way, through
    ``resolve``, and is checked against ``bound`` like any other."""
    out = bytearray()
    folders: dict[tuple[str, ...], Folder | None] = {}  # None: the slow way for its files
    places: dict[tuple[str, ...], Path] = {}
    try:
        for name in names:
            if len(out) > BATCH_BYTES:  # bounded, whatever is asked (a path may repeat)
                out += msgspec.json.encode(FileHeader(path=name, size=0, mtime_ns=0, mode=0,
                                                      error="the batch is full")) + b"\n"
                continue
            try:
                parts = share_parts(name)
                folder = _batch_folder(share, parts[:-1], bound, tree, folders, places) \
                    if parts else None
                found = _read_in(folder, name, parts[-1]) if folder is not None else None
                if found is None:  # a symlink, or a folder that takes the slow way
                    place = resolve(share.root, parts, places)
                    if not inside(bound, place, tree):
                        raise PathRefused(name, "leads outside the ticket's path (through a "
                                          "symlink)")
                    found = read_small(share, name, place)
            except (PathRefused, Refused) as exc:
                found = FileHeader(path=name, size=0, mtime_ns=0, mode=0, error=str(exc)), b""
            header, data = found
            out += msgspec.json.encode(header) + b"\n" + data
    finally:
        for folder in folders.values():
            if folder is not None:
                folder.close()
    return bytes(out)


def _batch_folder(share: Share, parts: tuple[str, ...], bound: Path, tree: bool,
                  folders: dict[tuple[str, ...], Folder | None],
                  places: dict[tuple[str, ...], Path]) -> Folder | None:
    """The folder ``parts`` open, once per batch, when its files may be read relative to
    it: really inside the ticket's tree. None: read its files the slow way."""
    if parts in folders:
        return folders[parts]
    folder = None
    if tree and AT:
        place = resolve(share.root, parts, places)
        if place == bound or bound in place.parents:
            try:
                folder = Folder.beneath(share.root, place)
            except (OSError, PathRefused):
                folder = None  # gone or swapped: each file says why, the slow way
    folders[parts] = folder
    return folder


def _read_in(folder: Folder, path: str, name: str) -> tuple[FileHeader, bytes] | None:
    """A small file of an open folder, by name, not through a symlink (None: it is one,
    or something else the slow way explains)."""
    try:
        fd = folder.open(name, os.O_RDONLY | NONBLOCK)
    except (OSError, PathRefused):
        return None
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode):
            return None
        if st.st_size > SMALL_FILE:
            return FileHeader(path=path, size=0, mtime_ns=0, mode=0,
                              error=f"larger than {SMALL_FILE} bytes: {TOO_LARGE}"), b""
        data = os.pread(fd, st.st_size, 0) if st.st_size else b""
        if len(data) != st.st_size:
            return FileHeader(path=path, size=0, mtime_ns=0, mode=0,
                              error=f"{path} became shorter while it was read"), b""
        return FileHeader(path=path, size=len(data), mtime_ns=st.st_mtime_ns,
                          mode=st.st_mode & 0o777, hash=chunk_hash(data).hex()), data
    finally:
        os.close(fd)


def read_small(share: Share, name: str, place: Path) -> tuple[FileHeader, bytes]:
    try:
        source = _open(share, place)
    except TransferError as exc:
        return FileHeader(path=name, size=0, mtime_ns=0, mode=0, error=str(exc)), b""
    try:
        if source.stat.size > SMALL_FILE:
            return FileHeader(path=name, size=0, mtime_ns=0, mode=0,
                              error=f"larger than {SMALL_FILE} bytes: {TOO_LARGE}"), b""
        data = os.pread(source.fd, source.stat.size, 0) if source.stat.size else b""
        return FileHeader(path=name, size=len(data), mtime_ns=source.stat.mtime_ns,
                          mode=source.stat.mode, hash=chunk_hash(data).hex()), data
    finally:
        source.close()
