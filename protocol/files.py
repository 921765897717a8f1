"""Files of a share on the agent that serves it: list, stat, make a folder, rename, move,
delete (issue 19), with the rights of the caller on that share.

A user asks the hub (``POST /api/v1/files/<op>``, ``hub/files.py``), which checks the
caller's right on the share (``read`` for ``ls`` and ``stat``, ``write`` for the rest),
signs a ticket for exactly this one operation, and sends it to the serving agent's
transfer endpoint itself, pinning the agent's certificate; the user talks to the hub
only. On the agent (``transports/fileops.py``)::

    POST /transfer/v1/fileop?share=S&op=OP     Authorization: Ticket T     body: FileOpRequest

The ticket is an ordinary transfer ticket (``protocol.tickets``) with ``op`` one of
``FileOp`` (never read or write: no transfer request takes it, and this request takes no
transfer's), ``job: "files"``, ``path`` the request's path and ``task`` the SHA-256 of
the request's body (``digest``): the ticket opens this one request, with these paths and
options, and no other. The body carries a ``nonce``, so no two tickets are alike, and the
agent takes each ticket once (a replay is refused). A ticket lives ``TICKET_TTL`` seconds.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from protocol.tickets import FileOp
from protocol.transfer import PREFIX

FILES = "files"  # the ``job`` of a file operation's ticket (never a job id: 24 hex digits)
FILEOP_PATH = f"{PREFIX}/fileop"
READING: tuple[FileOp, ...] = ("ls", "stat")  # the caller must read the share
CHANGING: tuple[FileOp, ...] = ("mkdir", "rename", "mv", "delete")  # must write it
TICKET_TTL = 60  # seconds: the hub sends the ticket at once
DEFAULT_PAGE = 1000  # entries a listing answers at a time, unless told
MAX_PAGE = 10_000
MAX_TEXT = 4200  # a path's text: 4096 bytes of path and ``share=<name>/``

EntryType = Literal["file", "dir", "link"]  # a link is listed, never followed nor changed


class FilesRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A caller's request to the hub. ``path``: ``share=<share>/<path>`` (or without
    ``share=``); ``to``: the new name (rename) or the destination path in the same share
    (mv); ``recursive``: list below folders (ls), delete a folder with what it holds
    (delete); ``limit``, ``skip`` and ``cursor`` page a listing."""

    path: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
    to: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] = ""
    recursive: bool = False
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE
    skip: Annotated[int, msgspec.Meta(ge=0)] = 0
    cursor: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] = ""


class FileOpRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the hub asks the agent: one operation, paths inside the share (checked again
    by the agent)."""

    op: FileOp
    path: str
    nonce: str  # one of a kind: no two tickets sign the same body
    to: str = ""  # rename: a name; mv: a path inside the share
    recursive: bool = False
    limit: int = DEFAULT_PAGE
    skip: int = 0
    cursor: str = ""  # a listing goes on after this path (the ``next`` of the page before)


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One file, folder or link: ``path`` inside the share, ``size`` in bytes (a folder's
    is what its files hold when it was ``stat``-ed, else 0), ``mtime`` ISO 8601 UTC."""

    name: str
    path: str
    type: EntryType
    size: int
    mtime: str


class FileOpAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The agent's answer: ``entries`` and ``next`` (the cursor of the page after; "" at
    the end) for ls, ``entries`` of one for stat; ``changed`` and the resulting ``path``
    for a change (``changed`` false: it was so already, a folder ``mkdir`` found)."""

    entries: list[Entry] = []
    next: str = ""
    changed: bool = False
    path: str = ""


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    """The hub's answer to ``ls``: a page of entries (their ``path`` as share paths,
    ``share=<share>/…``) and the cursor of the next page (None: the last)."""

    result: list[Entry]
    next: str | None


class Changed(msgspec.Struct, frozen=True, kw_only=True):
    """The hub's answer to a change: what it was on, whether it changed anything (a folder
    ``mkdir`` found: no), and where the file or folder is now ("" once deleted)."""

    op: FileOp
    path: str
    changed: bool
    result: str


def digest(request: FileOpRequest) -> str:
    """What a ticket's ``task`` holds: the SHA-256 of the request's body as JSON."""
    return hashlib.sha256(msgspec.json.encode(request)).hexdigest()


def mtime_text(mtime_ns: int) -> str:
    """A file's modification time as answers show times (UTC ISO 8601, milliseconds, Z)."""
    moment = datetime.fromtimestamp(mtime_ns / 1e9, UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"
