"""File operations on the transfer endpoint (``transports.fileops``), over real sockets on
loopback with tickets signed as the hub signs them: each operation on a real folder, the
paths it refuses (``..``, absolute, symlinks on the way or named, the share's root) with
nothing changed on disk, and the tickets it refuses (a transfer's, another operation's or
body's, expired, forged, shown twice)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from protocol import tickets
from protocol.files import FILEOP_PATH, FILES, FileOpRequest, digest
from protocol.tickets import TicketScope
from protocol.transfer import Share
from transports import tls
from transports.endpoint import TransferEndpoint

KEY = tickets.private_key(os.urandom(32))


@dataclass
class Served:
    endpoint: TransferEndpoint
    url: str
    fingerprint: str
    root: Path

    def ticket(self, request: FileOpRequest, *, key: Any = KEY, ttl: float = 60,
               now: float | None = None, **scope: Any) -> str:
        fields: dict[str, Any] = {"server": "srv1", "share": "sh1", "path": request.path,
                                  "op": request.op, "job": FILES, "task": digest(request)}
        return tickets.issue(key, TicketScope(**{**fields, **scope}), ttl=ttl, now=now)

    async def send(self, request: FileOpRequest, ticket: str, op: str | None = None,
                   share: str = "sh1") -> tuple[int, Any]:
        async with aiohttp.ClientSession() as client, client.post(
                self.url + FILEOP_PATH, params={"share": share, "op": op or request.op},
                data=msgspec.json.encode(request),
                headers={"Authorization": f"Ticket {ticket}"},
                ssl=tls.pin(self.fingerprint)) as resp:
            return resp.status, await resp.json()

    async def op(self, op: str, path: str, **fields: Any) -> tuple[int, Any]:
        request = FileOpRequest(op=op, path=path, nonce=uuid.uuid4().hex,  # type: ignore[arg-type]
                                **fields)
        return await self.send(request, self.ticket(request))


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    root = tmp_path / "share"
    root.mkdir()
    endpoint = TransferEndpoint("srv1", tickets.public_key(tickets.public_key_text(KEY)),
                                {"sh1": Share("sh1", "projects", root)})
    key, cert = tls.ensure_identity(tmp_path / "tls", "srv1")
    port = await endpoint.start("127.0.0.1", 0, tls.server_context(key, cert))
    yield Served(endpoint, f"https://127.0.0.1:{port}", tls.fingerprint(cert), root)
    await endpoint.stop()


def tree(root: Path) -> dict[str, str]:
    """What is below ``root``: each path with its kind and, for a file, its bytes."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = ("link:" + os.readlink(path) if path.is_symlink() else
                      "dir" if path.is_dir() else path.read_text())
    return found


def film(root: Path, outside: Path) -> None:
    for rel, text in (("film/a.exr", "aaaa"), ("film/b.exr", "bb"), ("film/shot/c.exr", "c"),
                      ("film/shot/d/e.exr", "eeeee"), ("film/z.exr", "z")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "film" / "a.exr.ferry-part").write_text("partial")
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "film" / "out").symlink_to(outside)  # a folder outside the share
    (root / "film" / "in").symlink_to(root / "film" / "shot")  # one inside


async def test_ls_pages_and_stat(served: Served, tmp_path: Path) -> None:
    film(served.root, tmp_path / "outside")
    status, answer = await served.op("ls", "film")
    assert status == 200, answer
    names = [(e["name"], e["type"], e["size"]) for e in answer["entries"]]
    assert names == [("a.exr", "file", 4), ("b.exr", "file", 2), ("in", "link", 0),
                     ("out", "link", 0), ("shot", "dir", 0), ("z.exr", "file", 1)]
    assert answer["next"] == "" and answer["entries"][0]["mtime"].endswith("Z")
    # recursive, a page of 3 at a time through the cursor: the same as all at once
    _, whole = await served.op("ls", "film", recursive=True)
    paths = [e["path"] for e in whole["entries"]]
    assert paths == ["film/a.exr", "film/b.exr", "film/in", "film/out", "film/shot",
                     "film/shot/c.exr", "film/shot/d", "film/shot/d/e.exr", "film/z.exr"]
    paged, cursor = [], ""
    while True:
        _, page = await served.op("ls", "film", recursive=True, limit=3, cursor=cursor)
        paged += [e["path"] for e in page["entries"]]
        cursor = page["next"]
        if not cursor:
            break
    assert paged == paths
    _, skipped = await served.op("ls", "film", recursive=True, limit=2, skip=4)
    assert [e["path"] for e in skipped["entries"]] == paths[4:6]
    _, one = await served.op("ls", "film/b.exr")
    assert [e["path"] for e in one["entries"]] == ["film/b.exr"]
    _, root = await served.op("ls", "")
    assert [e["name"] for e in root["entries"]] == ["film"]
    status, answer = await served.op("stat", "film/shot")
    assert status == 200 and answer["entries"][0]["size"] == 6  # c.exr and d/e.exr
    status, answer = await served.op("stat", "film/nothing.exr")
    assert status == 404 and "'film/nothing.exr' is not in share 'projects'" in \
        answer["error"]["message"]


async def test_changes(served: Served, tmp_path: Path) -> None:
    film(served.root, tmp_path / "outside")
    root = served.root
    status, answer = await served.op("mkdir", "film/shot020/plates")
    assert (status, answer["changed"]) == (200, True) and (root / "film/shot020/plates").is_dir()
    status, answer = await served.op("mkdir", "film/shot020")
    assert (status, answer["changed"]) == (200, False)
    status, answer = await served.op("rename", "film/b.exr", to="b2.exr")
    assert (status, answer["path"]) == (200, "film/b2.exr")
    assert (root / "film/b2.exr").read_text() == "bb" and not (root / "film/b.exr").exists()
    status, answer = await served.op("mv", "film/b2.exr", to="film/shot020")  # into it
    assert (status, answer["path"]) == (200, "film/shot020/b2.exr")
    status, answer = await served.op("mv", "film/shot020/b2.exr", to="film/shot/b3.exr")
    assert (status, answer["path"]) == (200, "film/shot/b3.exr")
    status, answer = await served.op("mv", "film/shot020", to="archive")
    assert (status, answer["path"]) == (200, "archive")  # a new path, at the root
    assert (root / "archive/plates").is_dir()
    status, _ = await served.op("delete", "film/z.exr")
    assert status == 200 and not (root / "film/z.exr").exists()
    status, _ = await served.op("delete", "archive/plates")  # an empty folder
    assert status == 200 and not (root / "archive/plates").exists()
    # recursive: what a link inside points to stays (the link itself goes)
    (root / "film/shot/d/link-out").symlink_to(tmp_path / "outside")
    status, _ = await served.op("delete", "film/shot", recursive=True)
    assert status == 200 and not (root / "film/shot").exists()
    assert (tmp_path / "outside/secret.txt").read_text() == "secret"


@pytest.mark.parametrize(("op", "path", "fields", "status", "says"), [
    ("ls", "../x", {}, 400, "'..' would leave the share"),
    ("ls", "/etc", {}, 400, "is absolute"),
    ("ls", "film/out", {}, 200, ""),  # the link itself, as its entry: never followed
    ("ls", "film/out/secret.txt", {}, 400, "'film/out' is a symlink"),
    ("stat", "film/out/", {}, 200, ""),
    ("mkdir", "film/out/x", {}, 400, "'film/out' is a symlink"),
    ("mkdir", "film/a.exr", {}, 409, "is there already, and is not a folder"),
    ("mkdir", "film/a.exr/x", {}, 400, "is not a folder"),
    ("mkdir", "", {}, 400, "names the share's root"),
    ("rename", "film/a.exr", {"to": "x/y.exr"}, 400, "rename takes a new name"),
    ("rename", "film/a.exr", {"to": ".."}, 400, "'..' would leave the share"),
    ("rename", "film/a.exr", {"to": "z.exr"}, 409, "'film/z.exr' is there already"),
    ("rename", "film/out", {"to": "o2"}, 400, "is a symlink"),
    ("rename", "", {"to": "x"}, 400, "the share's root is not renamed"),
    ("mv", "film/a.exr", {"to": "film/z.exr"}, 409, "is there already"),
    ("mv", "film/a.exr", {"to": "../a.exr"}, 400, "to: path '../a.exr' refused"),
    ("mv", "film/a.exr", {"to": "film/out/a.exr"}, 400, "'film/out' is a symlink"),
    ("mv", "film/shot", {"to": "film/shot/d"}, 400, "cannot move into itself"),
    ("mv", "film/a.exr", {"to": "nowhere/a.exr"}, 404, "no folder 'nowhere'"),
    ("mv", "film/nothing", {"to": "x"}, 404, "is not in share 'projects'"),
    ("delete", "film/shot", {}, 409, "not empty: delete it with what it holds"),
    ("delete", "", {"recursive": True}, 400, "the share's root is not deleted"),
    ("delete", "film/out", {"recursive": True}, 400, "is a symlink"),
    ("delete", "film/out/secret.txt", {}, 400, "'film/out' is a symlink"),
    ("delete", "film/in/c.exr", {}, 400, "'film/in' is a symlink"),
    ("ls", "film", {"limit": 0}, 400, "limit must be 1 to 10000"),
    ("ls", "film", {"skip": -1}, 400, "skip 0 or more"),
])
async def test_refused_paths_change_nothing(served: Served, tmp_path: Path, op: str,
                                            path: str, fields: dict[str, Any], status: int,
                                            says: str) -> None:
    film(served.root, tmp_path / "outside")
    before, outside = tree(served.root), tree(tmp_path / "outside")
    got, answer = await served.op(op, path, **fields)
    assert got == status, answer
    if says:
        assert says in answer["error"]["message"], answer
    if op in ("ls", "stat") and status == 200:
        assert answer["entries"][0]["type"] == "link"
    assert tree(served.root) == before and tree(tmp_path / "outside") == outside


async def test_refused_tickets_change_nothing(served: Served, tmp_path: Path) -> None:
    film(served.root, tmp_path / "outside")
    before = tree(served.root)
    request = FileOpRequest(op="delete", path="film/a.exr", nonce="n1")
    other = FileOpRequest(op="delete", path="film/b.exr", nonce="n2")
    forger = tickets.private_key(os.urandom(32))
    attempts = [  # (what, ticket, op in the query, reason)
        ("forged", served.ticket(request, key=forger), None, "forged ticket"),
        ("expired", served.ticket(request, ttl=1, now=1_000_000.0), None, "expired ticket"),
        ("another path's", served.ticket(other), None, "another operation, path or option"),
        ("another body's", served.ticket(request, task=digest(other)), None,
         "another operation, path or option"),
        ("a listing's", served.ticket(request, op="ls"), None, "ticket to ls, not to delete"),
        ("a listing's, asked as one", served.ticket(request, op="ls"), "ls",
         "another operation, path or option"),
        ("a transfer's", served.ticket(request, op="write", job="j" * 24, tree=True), None,
         "ticket to write, not to delete"),
        ("a transfer's, asked as one", served.ticket(request, op="write"), "write",
         "op must be one of"),
        ("a link's", served.ticket(request, job="link"), None, "a transfer's ticket"),
        ("another server's", served.ticket(request, server="srv2"), None,
         "ticket for another server"),
    ]
    for what, ticket, op, reason in attempts:
        status, answer = await served.send(request, ticket, op)
        assert status in (400, 403), (what, answer)
        assert reason in answer["error"]["message"], (what, answer)
    assert tree(served.root) == before
    # the ticket made for it works once; shown again, it is refused
    ticket = served.ticket(request)
    assert (await served.send(request, ticket))[0] == 200
    (served.root / "film/a.exr").write_text("made again")
    status, answer = await served.send(request, ticket)
    assert status == 403 and "used already" in answer["error"]["message"]
    assert (served.root / "film/a.exr").read_text() == "made again"
    # and a file operation's ticket opens no transfer request
    listing = FileOpRequest(op="ls", path="film", nonce="n3")
    async with aiohttp.ClientSession() as client, client.get(
            served.url + "/transfer/v1/stat", params={"share": "sh1", "path": "film"},
            headers={"Authorization": f"Ticket {served.ticket(listing)}"},
            ssl=tls.pin(served.fingerprint)) as resp:
        assert resp.status == 403 and "ticket to ls, not to read" in await resp.text()
