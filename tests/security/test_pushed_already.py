"""``receive/have``: a pusher asks which of the files it is about to send have landed
already. The answer tells whether a file is there, so it is told only to a holder of a
write ticket for exactly those paths, on this server and share, unexpired; a path outside
the ticket, through a symlink, or out of the share is never "there"; bad input is refused
by name. Nothing is written by any of it. And a receiver that lies about what it has is
caught by the pusher."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from protocol import tickets
from protocol.tickets import TicketScope
from protocol.transfer import PREFIX, Share
from transports import answers
from transports.endpoint import TransferEndpoint

KEY = tickets.private_key(os.urandom(32))
OTHER_KEY = tickets.private_key(os.urandom(32))  # another hub's: not this agent's


def ticket(path: str, op: tickets.Op = "write", *, key: Any = KEY, server: str = "srv",
           share: str = "sh", ttl: float = 60) -> str:
    return tickets.issue(key, TicketScope(server=server, share=share, path=path, op=op,
                                          job="j", task="t", tree=True), ttl=ttl)


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"", p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[TransferEndpoint, str, Path]]:
    root = tmp_path / "share"
    (root / "in").mkdir(parents=True)
    (root / "secret").mkdir()
    (root / "in" / "a.dpx").write_bytes(b"a" * 10)
    (root / "secret" / "b.dpx").write_bytes(b"b" * 20)
    os.symlink(root / "secret" / "b.dpx", root / "in" / "link.dpx")
    (tmp_path / "outside.dpx").write_bytes(b"o" * 30)
    endpoint = TransferEndpoint("srv", tickets.public_key(tickets.public_key_text(KEY)),
                                {"sh": Share("sh", "projects", root),
                                 "other": Share("other", "other", tmp_path / "other")})
    port = await endpoint.start("127.0.0.1", 0, None)
    try:
        yield endpoint, f"http://127.0.0.1:{port}{PREFIX}/receive/have", root
    finally:
        await endpoint.stop()


def landing(root: Path, path: str, real: Path | None = None) -> dict[str, Any]:
    st = (real or root / path).stat()
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


async def ask(url: str, ticket_text: str | None, body: Any, share: str = "sh"
              ) -> tuple[int, Any]:
    headers = {} if ticket_text is None else {"Authorization": "Ticket " + ticket_text}
    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
    async with aiohttp.ClientSession() as http_session, http_session.post(
            url, params={"share": share}, headers=headers, data=data) as resp:
        return resp.status, msgspec.json.decode(await resp.read())


async def test_only_a_writer_of_those_paths_hears_what_is_there(
        served: tuple[TransferEndpoint, str, Path], tmp_path: Path) -> None:
    endpoint, url, root = served
    before = tree(root)
    a = landing(root, "in/a.dpx")
    secret = landing(root, "secret/b.dpx")
    files = [a, secret,
             {**secret, "path": "in/link.dpx"},  # the symlink leads out of the ticket's path
             {**landing(root, "", tmp_path / "outside.dpx"), "path": "../outside.dpx"},
             {**a, "path": "in/a.dpx/../../secret/b.dpx"},
             {**a, "size": 11}]  # another size: not the same file
    status, answer = await ask(url, ticket("in"), {"files": files})
    assert (status, answer) == (200, {"have": ["in/a.dpx"]})
    refused_before = endpoint.refused
    # a reader, another server's or share's ticket, another hub's, an expired one, none
    for text, share in [(ticket("in", "read"), "sh"), (ticket("in", server="srv2"), "sh"),
                        (ticket("in", share="other"), "sh"), (ticket("in"), "other"),
                        (ticket("in", key=OTHER_KEY), "sh"), (ticket("in", ttl=-3600), "sh"),
                        (None, "sh")]:
        status, answer = await ask(url, text, {"files": [a]}, share=share)
        assert status == 403 and "have" not in answer, (text, share, answer)
        assert answer["error"]["code"] in ("ticket_refused", "no_ticket")
    assert endpoint.refused > refused_before
    # a ticket for secret/ asks about in/: not covered, so not there
    status, answer = await ask(url, ticket("secret"), {"files": [a, secret]})
    assert (status, answer) == (200, {"have": ["secret/b.dpx"]})
    assert tree(root) == before, "asking wrote nothing"


@pytest.mark.parametrize(("body", "says"), [
    (b"not json", "JSON"),
    ({"files": []}, "1 to 10000 files"),
    ({"files": [{"path": "in/a.dpx", "size": 1, "mtime_ns": 1}] * 10_001}, "1 to 10000 files"),
    ({"files": [{"path": "in/a.dpx", "size": 1}]}, "mtime_ns"),
    ({"files": [{"path": "in/a.dpx", "size": 1, "mtime_ns": 1, "mode": 1}]}, "mode"),
], ids=["not-json", "none", "too-many", "no-mtime", "unknown-field"])
async def test_bad_input_is_refused_by_name(served: tuple[TransferEndpoint, str, Path],
                                            body: Any, says: str) -> None:
    _, url, root = served
    before = tree(root)
    status, answer = await ask(url, ticket("in"), body)
    assert status == 400 and says in answer["error"]["message"], answer
    assert tree(root) == before
    status, answer = await ask(url, ticket("in"), {"files": [landing(root, "in/a.dpx")]})
    assert (status, answer) == (200, {"have": ["in/a.dpx"]}), "it keeps answering"


def test_a_receiver_that_claims_files_nobody_asked_about_is_caught() -> None:
    asked = {"in/a.dpx", "in/b.dpx"}
    assert answers.there(b'{"have": ["in/b.dpx"]}', asked) == {"in/b.dpx"}
    with pytest.raises(answers.Lie, match="nobody asked about"):
        answers.there(b'{"have": ["in/a.dpx", "etc/passwd"]}', asked)
    with pytest.raises(answers.Lie, match="which files it has"):
        answers.there(b'{"have": "everything"}', asked)
