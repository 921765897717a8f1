"""Operations on a share's files for the hub (``protocol.files``): list, stat, make a
folder, rename, move, delete; on the request's thread, from the share's root.

Every path is checked as text (``protocol.paths``), then reached from the share's real
root one folder at a time with no symlink followed (``transports.beneath``): a symlink
anywhere on the way, or as the thing named, is refused, never followed nor changed (a
listing shows one as a ``link``). The share's root itself is neither renamed, moved nor
deleted. Each refusal says what is wrong and comes before anything changes on disk.

The ticket must be a file operation's (``job: "files"``), for this operation and path,
signed over exactly this body (``digest``), and is taken once: ``FileOps`` remembers the
tickets it took until they expire, and refuses one shown again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import get_args

import structlog

from protocol import tickets
from protocol.files import (
    FILES,
    MAX_PAGE,
    Entry,
    EntryType,
    FileOpAnswer,
    FileOpRequest,
    digest,
    mtime_text,
)
from protocol.paths import PathRefused, join, share_parts
from protocol.tickets import FileOp
from protocol.transfer import Refused, Share
from transports.beneath import AT, Folder

log = structlog.get_logger("transports.fileops")

PARTS = (".ferry-part", ".ferry-state")  # files being received: not the share's files yet
MAX_TAKEN = 100_000  # tickets remembered at once; they live a minute each


def op_of(text: str) -> FileOp:
    """The operation a request names (``?op=``), before its ticket is checked for it."""
    for op in get_args(FileOp):
        if text == op:
            return op  # type: ignore[no-any-return]
    raise Refused(400, "bad_request", f"op must be one of {', '.join(get_args(FileOp))}, "
                  f"not {text[:40]!r}")


@dataclass
class FileOps:
    """The file operations of one endpoint, and the tickets they took (none twice)."""

    _taken: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, share: Share, scope: tickets.TicketScope, request: FileOpRequest
            ) -> FileOpAnswer:
        """Do ``request`` on ``share`` once ``scope`` (its ticket's, checked for this
        server, share and operation) is a file operation's for exactly this body."""
        if scope.job != FILES or scope.tree:
            raise Refused(403, "ticket_refused", "file operation refused: a transfer's "
                          "ticket, not a file operation's")
        if request.op != scope.op or request.path != scope.path or \
                digest(request) != scope.task:
            raise Refused(403, "ticket_refused", "file operation refused: the ticket is for "
                          "another operation, path or option")
        self._take(scope)
        answer = OPERATIONS[request.op](share, request)
        if request.op not in ("ls", "stat"):
            log.info("file changed", op=request.op, share=share.name, path=request.path,
                     to=request.to or None, recursive=request.recursive, result=answer.path,
                     changed=answer.changed)
        return answer

    def _take(self, scope: tickets.TicketScope) -> None:
        now = time.time()
        with self._lock:
            if scope.task in self._taken:
                raise Refused(403, "ticket_refused", "file operation refused: this ticket "
                              "was used already (a ticket opens one request)")
            if len(self._taken) >= MAX_TAKEN:
                for key in [k for k, until in self._taken.items() if until < now]:
                    del self._taken[key]
                if len(self._taken) >= MAX_TAKEN:
                    raise Refused(429, "busy", "too many file operations at once; try again")
            self._taken[scope.task] = scope.exp + tickets.SKEW


# -- where things are
def _parts(text: str, what: str = "path") -> tuple[str, ...]:
    try:
        return share_parts(text, windows=sys.platform == "win32")
    except PathRefused as exc:
        raise Refused(400, "bad_path", f"{what}: {exc}") from None


def _folder(share: Share, parts: tuple[str, ...], *, create: bool = False) -> Folder:
    """The folder at ``parts``, reached from the share's real root with no symlink
    followed (made, with the folders above it, when ``create``)."""
    real_root = Path(os.path.realpath(share.root))
    if not AT:  # no dir_fd (Windows): look at each name on the way instead
        for n in range(1, len(parts) + 1):
            if os.path.islink(real_root.joinpath(*parts[:n])):
                raise Refused(400, "bad_path", f"{join(parts[:n])!r} is a symlink: file "
                              "operations follow none")
    try:
        return Folder.beneath(share.root, real_root.joinpath(*parts), create=create)
    except PathRefused as exc:
        why = "is a symlink: file operations follow none" if "symlink" in exc.why else exc.why
        raise Refused(400, "bad_path", f"{exc.path!r} {why}") from None
    except FileNotFoundError:
        raise Refused(404, "not_found", f"no folder {join(parts)!r} in share {share.name!r}"
                      if parts else f"share {share.name!r} has no folder on this agent's "
                      "disk") from None
    except NotADirectoryError:
        raise Refused(409, "not_a_folder", f"{join(parts)!r} is not a folder") from None
    except OSError as exc:
        raise _cannot(share, parts, exc) from None


def _cannot(share: Share, parts: tuple[str, ...], exc: OSError) -> Refused:
    return Refused(409, "cannot_change", f"{join(parts) or 'the root'!r} of share "
                   f"{share.name!r}: {exc.strerror or exc}")


def _kind(mode: int) -> EntryType:
    return "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "file"


def _entry(parts: tuple[str, ...], info: os.stat_result, size: int | None = None) -> Entry:
    kind = _kind(info.st_mode)
    return Entry(name=parts[-1] if parts else "", path=join(parts), type=kind,
                 size=(info.st_size if kind == "file" else 0) if size is None else size,
                 mtime=mtime_text(info.st_mtime_ns))


def _name(folder: Folder, name: str) -> str:
    return name if AT else str(folder.path / name)


def _at(folder: Folder) -> dict[str, int]:
    return {"dir_fd": folder.fd} if AT else {}


def _named(share: Share, parts: tuple[str, ...], what: str = "path"
           ) -> tuple[Folder, os.stat_result]:
    """The folder holding ``parts[-1]`` (open: close it) and what is there, which must be
    there and be no symlink."""
    folder = _folder(share, parts[:-1])
    info = folder.lstat(parts[-1])
    if info is None or stat.S_ISLNK(info.st_mode):
        folder.close()
        if info is None:
            raise Refused(404, "not_found", f"{what}: {join(parts)!r} is not in share "
                          f"{share.name!r}")
        raise Refused(400, "bad_path", f"{what}: {join(parts)!r} is a symlink: file "
                      "operations follow and change none")
    return folder, info


def _listed(share: Share, parts: tuple[str, ...]) -> list[tuple[tuple[str, ...], os.stat_result]]:
    """What the folder ``parts`` holds, in name order (part files left out); nothing when
    it went away meanwhile."""
    found = []
    try:
        with _folder(share, parts) as folder:
            names = sorted(os.listdir(folder.fd if AT else folder.path))
            for name in names:
                if name.endswith(PARTS):
                    continue
                with contextlib.suppress(OSError):
                    info = folder.lstat(name)
                    if info is not None:
                        found.append(((*parts, name), info))
    except Refused:
        return []
    return found


def _walk(share: Share, top: tuple[str, ...], recursive: bool,
          after: tuple[str, ...] | None) -> Iterator[Entry]:
    """The entries below ``top`` in path order (a folder, then what it holds), those after
    ``after`` only. Folders are walked with a stack, not by recursion: a deep tree is no
    danger; a folder all of whose entries come before ``after`` is not entered."""
    stack = [iter(_listed(share, top))]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        rel, info = item
        if after is None or rel > after:
            yield _entry(rel, info)
        if recursive and stat.S_ISDIR(info.st_mode) and \
                (after is None or rel > after or after[:len(rel)] == rel):
            stack.append(iter(_listed(share, rel)))


def _target(share: Share, parts: tuple[str, ...]) -> os.stat_result:
    """What is at ``parts`` (the root: the share's folder), not following a symlink."""
    if not parts:
        with _folder(share, ()) as root:
            return os.stat(root.fd) if AT else os.stat(root.path)
    with _folder(share, parts[:-1]) as folder:
        info = folder.lstat(parts[-1])
    if info is None:
        raise Refused(404, "not_found", f"{join(parts)!r} is not in share {share.name!r}")
    return info


def _is_folder(share: Share, parts: tuple[str, ...]) -> bool:
    try:
        return stat.S_ISDIR(_target(share, parts).st_mode)
    except Refused as exc:
        if exc.status == 404:
            return False
        raise


# -- the operations
def ls(share: Share, request: FileOpRequest) -> FileOpAnswer:
    """A folder's entries, a page at a time (``skip``, ``limit``, ``cursor``); a file or a
    link named alone is its one entry."""
    if not 1 <= request.limit <= MAX_PAGE or request.skip < 0:
        raise Refused(400, "bad_request", f"limit must be 1 to {MAX_PAGE}, skip 0 or more")
    parts = _parts(request.path)
    info = _target(share, parts)
    if not stat.S_ISDIR(info.st_mode):
        return FileOpAnswer(entries=[_entry(parts, info)])
    after = _parts(request.cursor, "cursor") if request.cursor else None
    page = list(islice(_walk(share, parts, request.recursive, after), request.skip,
                       request.skip + request.limit + 1))
    more = len(page) > request.limit
    page = page[:request.limit]
    return FileOpAnswer(entries=page, next=page[-1].path if more else "")


def stat_(share: Share, request: FileOpRequest) -> FileOpAnswer:
    """The one entry at the path; a folder's size is what the files below it hold."""
    parts = _parts(request.path)
    info = _target(share, parts)
    size = None
    if stat.S_ISDIR(info.st_mode):
        size = sum(e.size for e in _walk(share, parts, True, None) if e.type == "file")
    return FileOpAnswer(entries=[_entry(parts, info, size)])


def mkdir(share: Share, request: FileOpRequest) -> FileOpAnswer:
    """The folder, and those above it that are missing; one there already is no change."""
    parts = _parts(request.path)
    if not parts:
        raise Refused(400, "bad_path", "path: names the share's root, which is there")
    with _folder(share, parts[:-1], create=True) as folder:
        try:
            os.mkdir(_name(folder, parts[-1]), 0o777, **_at(folder))
        except FileExistsError:
            info = folder.lstat(parts[-1])
            if info is not None and stat.S_ISDIR(info.st_mode):
                return FileOpAnswer(changed=False, path=join(parts))
            raise Refused(409, "exists", f"path: {join(parts)!r} is there already, and is "
                          f"not a folder ({_kind(info.st_mode) if info else 'gone'})"
                          ) from None
        except OSError as exc:
            raise _cannot(share, parts, exc) from None
    return FileOpAnswer(changed=True, path=join(parts))


def rename(share: Share, request: FileOpRequest) -> FileOpAnswer:
    """A file or folder renamed in its folder: ``to`` is a name, not a path."""
    parts = _parts(request.path)
    if not parts:
        raise Refused(400, "bad_path", "path: the share's root is not renamed")
    if not request.to or "/" in request.to or _parts(request.to, "to") != (request.to,):
        raise Refused(400, "bad_name", f"to: {request.to!r} is not a name: rename takes a "
                      "new name in the same folder (no '/'); mv moves elsewhere")
    folder, _ = _named(share, parts)
    with folder:
        if request.to == parts[-1]:
            raise Refused(409, "exists", f"to: {join(parts)!r} is called {request.to!r} "
                          "already")
        if folder.lstat(request.to) is not None:
            raise Refused(409, "exists", f"to: {join((*parts[:-1], request.to))!r} is "
                          "there already")
        try:
            os.rename(_name(folder, parts[-1]), _name(folder, request.to),
                      **({"src_dir_fd": folder.fd, "dst_dir_fd": folder.fd} if AT else {}))
        except OSError as exc:
            raise _cannot(share, parts, exc) from None
    return FileOpAnswer(changed=True, path=join((*parts[:-1], request.to)))


def mv(share: Share, request: FileOpRequest) -> FileOpAnswer:
    """A file or folder moved within the share: to ``to``, or into it when it is a
    folder. What ``to`` names must not be there (nothing is replaced)."""
    src, dst = _parts(request.path), _parts(request.to, "to")
    if not src:
        raise Refused(400, "bad_path", "path: the share's root is not moved")
    source, info = _named(share, src)
    with source:
        if _is_folder(share, dst):
            dst = (*dst, src[-1])  # into the folder
        if stat.S_ISDIR(info.st_mode) and dst[:len(src)] == src:
            raise Refused(400, "bad_path", f"to: a folder cannot move into itself "
                          f"({join(src)!r} to {join(dst)!r})")
        with _folder(share, dst[:-1]) as target:
            landed = target.lstat(dst[-1])
            if landed is not None:
                what = "is where it is already" if dst == src else "is there already"
                raise Refused(409, "exists", f"to: {join(dst)!r} {what}")
            try:
                os.rename(_name(source, src[-1]), _name(target, dst[-1]),
                          **({"src_dir_fd": source.fd, "dst_dir_fd": target.fd} if AT else {}))
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    raise Refused(409, "cannot_change", f"to: {join(dst)!r} is on another "
                                  "file system than the share's folder holding "
                                  f"{join(src)!r}") from None
                raise _cannot(share, src, exc) from None
    return FileOpAnswer(changed=True, path=join(dst))


def delete(share: Share, request: FileOpRequest) -> FileOpAnswer:
    """A file, or an empty folder; a folder with what it holds only when ``recursive``."""
    parts = _parts(request.path)
    if not parts:
        raise Refused(400, "bad_path", "path: the share's root is not deleted")
    folder, info = _named(share, parts)
    with folder:
        try:
            if not stat.S_ISDIR(info.st_mode):
                os.unlink(_name(folder, parts[-1]), **_at(folder))
            elif request.recursive:  # by descriptor, no symlink followed (3.11's rmtree)
                shutil.rmtree(_name(folder, parts[-1]), dir_fd=folder.fd if AT else None)
            else:
                os.rmdir(_name(folder, parts[-1]), **_at(folder))
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise Refused(409, "not_empty", f"path: {join(parts)!r} is a folder that is "
                              "not empty: delete it with what it holds with recursive=True "
                              "(ferry rm --recursive)") from None
            raise _cannot(share, parts, exc) from None
    return FileOpAnswer(changed=True, path=join(parts))


OPERATIONS = {"ls": ls, "stat": stat_, "mkdir": mkdir, "rename": rename, "mv": mv,
              "delete": delete}
