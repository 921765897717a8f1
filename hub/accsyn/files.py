"""The client's file calls (``workspace/file`` events, ``op`` in the data) onto Ferry's
file operations (``hub/files.py``): the same rights on the share, the same agent, the
same log of changes.

=============  ====================================================================
client call     Ferry
=============  ====================================================================
``ls``          ``ls`` (every page; ``recursive``, ``maxdepth``, ``files_only``,
                ``directories_only``); entries: name, path, type, is_dir, size, mtime
``exists``      ``stat``: true, or false when there is nothing at the path
``getsize``     ``stat``: the size in bytes (a folder's: what its files hold)
``mkdir``       ``mkdir``
``rename``      ``rename`` (``path_to``: a path in the same folder)
``mv``          ``mv``
``delete``      ``delete`` (``force``: a folder with what it holds)
=============  ====================================================================
"""

from __future__ import annotations

from typing import Any

import msgspec

from hub.accsyn.wire import Event, accsyn_times
from hub.errors import Invalid, NotAllowed, NotFound
from hub.files import file_op
from hub.runtime import Ctx
from protocol.files import Entry, Listing

PAGE = 1000  # entries asked of the agent at a time
MOST = 100_000  # entries one ls answers at most


async def file_call(ctx: Ctx, event: Event) -> Any:
    data = event.data if isinstance(event.data, dict) else {}
    op = data.get("op")
    path = _path(data.get("path"), "path")
    if op == "ls":
        return await _ls(ctx, path, data)
    if op in ("exists", "getsize"):
        _no_filters(data, op)
        try:
            entry = await file_op(ctx, "stat", {"path": path})
        except NotFound:
            if op == "exists":
                return False
            raise
        assert isinstance(entry, Entry)
        return True if op == "exists" else entry.size
    if op == "mkdir":
        return _plain(await file_op(ctx, "mkdir", {"path": path}))
    if op in ("rename", "move"):
        to = _path(data.get("path_to"), "path_to")
        if op == "move":
            return _plain(await file_op(ctx, "mv", {"path": path, "to": to}))
        return _plain(await file_op(ctx, "rename", {"path": path, "to": _name_in(path, to)}))
    if op == "delete":
        force = data.get("force", False)
        if not isinstance(force, bool):
            raise Invalid("wrong_type", "'force' must be true or false", field="force")
        return _plain(await file_op(ctx, "delete", {"path": path, "recursive": force}))
    raise NotAllowed("not_supported", f"file operation '{op}' is not supported by Ferry "
                     "because it has none such (ls, exists, getsize, mkdir, rename, mv, "
                     "delete are)")


def _path(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise NotAllowed("not_supported", f"{field}: only one path as text "
                         "('share=<share>/<path>') is supported by Ferry, because its file "
                         "operations work on one share path at a time", )
    return value if value.startswith("share=") else f"share={value}"


def _name_in(path: str, to: str) -> str:
    """``rename``'s new name: ``path_to`` names the same folder as ``path``."""
    folder, _, _ = path.rstrip("/").rpartition("/")
    other, _, name = to.rstrip("/").rpartition("/")
    if other != folder or not name:
        raise Invalid("invalid_path", f"path_to: '{to}' is not in the folder of '{path}': "
                      "rename keeps the folder (mv moves)", field="path_to")
    return name


def _no_filters(data: dict[str, Any], op: str) -> None:
    if data.get("include") or data.get("exclude"):
        raise NotAllowed("not_supported", f"{op}: include and exclude filters are not "
                         "supported by Ferry because its listings are filtered by the caller")


async def _ls(ctx: Ctx, path: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    _no_filters(data, "ls")
    recursive = data.get("recursive", False)
    depth = data.get("maxdepth")
    files_only, dirs_only = data.get("files_only", False), data.get("directories_only", False)
    for name, value in (("recursive", recursive), ("files_only", files_only),
                        ("directories_only", dirs_only)):
        if not isinstance(value, bool):
            raise Invalid("wrong_type", f"'{name}' must be true or false", field=name)
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)
                              or depth < 1):
        raise Invalid("wrong_type", "'maxdepth' must be a whole number, 1 or more",
                      field="maxdepth")
    base = path.rstrip("/").count("/")
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        body: dict[str, Any] = {"path": path, "recursive": recursive, "limit": PAGE}
        if cursor:
            body["cursor"] = cursor
        page = await file_op(ctx, "ls", body)
        assert isinstance(page, Listing)
        for entry in page.result:
            shown = {**msgspec.to_builtins(entry), "is_dir": entry.type == "dir"}
            deep = entry.path.rstrip("/").count("/") - base
            if (depth is not None and deep > depth) or (files_only and shown["is_dir"]) or \
                    (dirs_only and not shown["is_dir"]):
                continue
            entries.append(accsyn_times(shown))
        if len(entries) > MOST:
            raise Invalid("too_many", f"ls: more than {MOST} entries: list a folder lower "
                          "down, or without recursive", field="path")
        cursor = page.next
        if not cursor:
            return entries


def _plain(done: Any) -> Any:
    return msgspec.to_builtins(done)
