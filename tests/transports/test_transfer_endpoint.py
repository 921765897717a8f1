"""The transfer endpoint and its client, over real sockets on loopback: pulls and pushes,
damage and dropped connections on the way, resume, and every kind of refusal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.testing

from protocol import tickets
from protocol.tickets import TicketScope
from protocol.transfer import Share
from tests.proxy import Proxy
from transports import tls
from transports.chunks import MiB, TransferError
from transports.client import TransferClient
from transports.endpoint import TransferEndpoint

KEY = tickets.private_key(os.urandom(32))


@dataclass
class Served:
    endpoint: TransferEndpoint
    url: str
    fingerprint: str | None
    root: Path

    def ticket(self, path: str, op: tickets.Op = "read", *, tree: bool = False,
               ttl: float = 60, server: str | None = None, share: str = "sh1") -> str:
        return tickets.issue(KEY, TicketScope(server=server or self.endpoint.server_id,
                                              share=share, path=path, op=op, job="j", task="t",
                                              tree=tree), ttl=ttl)

    def client(self, ticket: str, **kwargs: object) -> TransferClient:
        kwargs.setdefault("backoff", 0.01)
        return TransferClient(kwargs.pop("url", self.url), self.fingerprint, ticket,  # type: ignore[arg-type]
                              "sh1", **kwargs)  # type: ignore[arg-type]


async def serve(tmp_path: Path, use_tls: bool = True) -> Served:
    root = tmp_path / "share"
    root.mkdir(exist_ok=True)
    endpoint = TransferEndpoint("srv1", tickets.public_key(tickets.public_key_text(KEY)),
                                {"sh1": Share("sh1", "projects", root)})
    context, fingerprint = None, None
    if use_tls:
        key, cert = tls.ensure_identity(tmp_path / "tls", "srv1")
        context, fingerprint = tls.server_context(key, cert), tls.fingerprint(cert)
    port = await endpoint.start("127.0.0.1", 0, context)
    scheme = "https" if use_tls else "http"
    return Served(endpoint, f"{scheme}://127.0.0.1:{port}", fingerprint, root)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    it = await serve(tmp_path)
    yield it
    await it.endpoint.stop()


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.randbytes(size))
    return path


async def test_pull_a_file_in_chunks_over_tls(served: Served, tmp_path: Path) -> None:
    source = random_file(served.root / "thefilm" / "edit.mov", 20 * MiB + 5)
    os.chmod(source, 0o640)
    dest = tmp_path / "out" / "edit.mov"
    async with served.client(served.ticket("thefilm/edit.mov"), streams=3) as client:
        info = await client.stat("thefilm/edit.mov")
        assert (info.type, info.size, info.chunk) == ("file", 20 * MiB + 5, 8 * MiB)
        digest = await client.pull("thefilm/edit.mov", dest, info)
    assert dest.read_bytes() == source.read_bytes() and len(digest) == 64
    assert dest.stat().st_mode & 0o777 == 0o640
    assert dest.stat().st_mtime_ns == source.stat().st_mtime_ns
    assert served.endpoint.served_chunks == 3


async def test_pull_a_tree_with_small_files_batched(served: Served, tmp_path: Path) -> None:
    for n in range(50):
        random_file(served.root / "plates" / f"sub{n % 3}" / f"f{n:03}.dpx", 1000 + n)
    random_file(served.root / "plates" / "big.mov", 9 * MiB)
    async with served.client(served.ticket("plates", tree=True)) as client:
        listing = await client.stat("plates")
        assert listing.type == "dir" and len(listing.files) == 51
        small = [f.path for f in listing.files if f.size <= MiB]
        hashes = await client.pull_small(
            small, lambda p: tmp_path.joinpath("out", *Path(p).parts[1:]))
        assert len(hashes) == 50
        await client.pull("plates/big.mov", tmp_path / "out" / "big.mov")
    for f in listing.files:
        rel = Path(*Path(f.path).parts[1:])
        assert (tmp_path / "out" / rel).read_bytes() == (served.root / f.path).read_bytes()


async def test_push_a_file_and_small_files(served: Served, tmp_path: Path) -> None:
    local = random_file(tmp_path / "local.mov", 17 * MiB)
    async with served.client(served.ticket("incoming/local.mov", "write")) as client:
        await client.push(local, "incoming/local.mov")
    assert (served.root / "incoming" / "local.mov").read_bytes() == local.read_bytes()
    assert served.endpoint.received_chunks == 3
    smalls = [random_file(tmp_path / f"s{n}.txt", 100 * n) for n in range(5)]
    async with served.client(served.ticket("incoming", "write", tree=True)) as client:
        await client.push_small([(p, f"incoming/{p.name}") for p in smalls])
    for path in smalls:
        assert (served.root / "incoming" / path.name).read_bytes() == path.read_bytes()
    assert not [p for p in (served.root / "incoming").iterdir() if p.name.startswith(".")]


async def test_a_chunk_damaged_in_flight_is_fetched_again(tmp_path: Path) -> None:
    # plain HTTP through a relay that flips one byte of the answer: under TLS the record
    # layer would catch it first; the chunk hash catches what TLS cannot (disks, memory,
    # proxies that end TLS)
    plain = await serve(tmp_path, use_tls=False)
    proxy = Proxy(plain.endpoint.port, flip_at=300_000)
    port = await proxy.start()
    try:
        source = random_file(plain.root / "a.mov", 3 * MiB)
        dest = tmp_path / "a.mov"
        async with plain.client(plain.ticket("a.mov"), url=f"http://127.0.0.1:{port}",
                                streams=1) as client:
            info = await client.stat("a.mov")
            await client.pull("a.mov", dest, info)
            assert client.retried == 1
        assert dest.read_bytes() == source.read_bytes()
        assert plain.endpoint.served_chunks == 2  # the damaged chunk, fetched twice
    finally:
        await proxy.stop()
        await plain.endpoint.stop()


async def test_a_dropped_connection_is_retried(served: Served, tmp_path: Path) -> None:
    proxy = Proxy(served.endpoint.port, cut_at=2 * MiB)
    port = await proxy.start()
    try:
        source = random_file(served.root / "b.mov", 12 * MiB)
        dest = tmp_path / "b.mov"
        async with served.client(served.ticket("b.mov"), url=f"https://127.0.0.1:{port}",
                                 streams=2) as client:
            await client.pull("b.mov", dest)
            assert client.retried >= 1
        assert dest.read_bytes() == source.read_bytes()
    finally:
        await proxy.stop()


async def test_an_interrupted_pull_resumes(served: Served, tmp_path: Path) -> None:
    source = random_file(served.root / "c.mov", 40 * MiB)
    dest = tmp_path / "c.mov"
    streams = 2
    async with served.client(served.ticket("c.mov"), streams=streams) as client:
        info = await client.stat("c.mov")
        client_chunk = 1 * MiB  # many chunks, so that it stops part-way
        info = type(info)(**{**{f: getattr(info, f) for f in info.__struct_fields__},
                             "chunk": client_chunk})
        got = 0
        halfway = asyncio.Event()

        def progress(n: int) -> None:
            nonlocal got
            got += n
            if got >= 20 * MiB:
                halfway.set()

        pulling = asyncio.create_task(client.pull("c.mov", dest, info, progress))
        await halfway.wait()
        pulling.cancel()  # as good as a kill: nothing tidied up but the open files
        with contextlib.suppress(asyncio.CancelledError):
            await pulling
        assert not dest.exists()
        first = served.endpoint.served_chunks
        await client.pull("c.mov", dest, info)
    assert dest.read_bytes() == source.read_bytes()
    sent_again = served.endpoint.served_chunks - 40
    assert first < 40 and 0 <= sent_again <= streams, (first, sent_again)


async def test_refusals_are_answered_and_logged(served: Served, tmp_path: Path) -> None:
    random_file(served.root / "ok.mov", 1000)
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", served.root / "out.mov")
    good = served.ticket("ok.mov")
    cases: list[tuple[str, str, Callable[[TransferClient], object], str]] = [
        ("../secret", good, lambda c: c.stat("../secret"), "'..' would leave the share"),
        ("out.mov", served.ticket("out.mov"), lambda c: c.stat("out.mov"),
         "leads outside its share"),
        ("ok.mov", tickets.issue(tickets.private_key(os.urandom(32)), TicketScope(
            server="srv1", share="sh1", path="ok.mov", op="read", job="j", task="t"), ttl=60),
         lambda c: c.stat("ok.mov"), "forged ticket"),
        ("ok.mov", served.ticket("ok.mov", ttl=-100), lambda c: c.stat("ok.mov"),
         "expired ticket"),
        ("other.mov", good, lambda c: c.stat("other.mov"), "ticket for another path"),
        ("ok.mov", served.ticket("ok.mov", server="srv2"), lambda c: c.stat("ok.mov"),
         "ticket for another server"),
        ("ok.mov", served.ticket("ok.mov", "write"), lambda c: c.stat("ok.mov"),
         "ticket to write, not to read"),
        ("ok.mov", good, lambda c: c.push(served.root / "ok.mov", "ok.mov"),
         "ticket to read, not to write"),
        ("C:/x", good, lambda c: c.stat("C:/x"), "drive letter"),
        ("a\0b", good, lambda c: c.stat("a\0b"), "NUL"),
    ]
    with structlog.testing.capture_logs() as logged:
        for _path, ticket, call, why in cases:
            async with served.client(ticket) as client:
                with pytest.raises(TransferError, match=why):
                    await call(client)  # type: ignore[misc]
    assert served.endpoint.refused == len(cases)
    refusals = [e for e in logged if e["event"] == "refused"]  # core/refusals.py
    assert len(refusals) == len(cases)
    assert all(e["who"] == "127.0.0.1" and e["log_level"] == "warning" for e in refusals)
    assert [e["why"] for e in refusals if "forged" in e["why"]]
    assert {e["what"] for e in refusals} == {"ticket", "share_path"}
    # still serving
    async with served.client(good) as client:
        assert (await client.stat("ok.mov")).size == 1000


async def test_a_pinned_certificate_must_match(served: Served, tmp_path: Path) -> None:
    random_file(served.root / "ok.mov", 10)
    client = TransferClient(served.url, "00" * 32, served.ticket("ok.mov"), "sh1", backoff=0.01)
    async with client:
        with pytest.raises(TransferError, match="fingerprint mismatch"):
            await client.stat("ok.mov")


async def test_hostile_requests(served: Served, tmp_path: Path) -> None:
    """Set-id bits never travel; writes never go through a symlink or onto the share's
    root; a FIFO is refused, not waited on; bodies are bounded and need a ticket first."""
    import aiohttp

    local = random_file(tmp_path / "tool", 1000)
    os.chmod(local, 0o6755)
    async with served.client(served.ticket("in", "write", tree=True)) as client:
        await client.push(local, "in/tool")
        await client.push_small([(local, "in/tool2")])
    for name in ("tool", "tool2"):
        assert (served.root / "in" / name).stat().st_mode & 0o7777 == 0o755
    (served.root / "in" / "target").write_text("keep")
    os.symlink(served.root / "in" / "target", served.root / "in" / "link")
    async with served.client(served.ticket("in", "write", tree=True)) as client:
        with pytest.raises(TransferError, match="is a symlink at the destination"):
            await client.push(local, "in/link")
    assert (served.root / "in" / "target").read_text() == "keep"
    async with served.client(served.ticket("", "write", tree=True)) as client:
        with pytest.raises(TransferError, match="not at its root"):
            await client.push(local, "")
    os.mkfifo(served.root / "pipe")
    async with served.client(served.ticket("pipe")) as client:
        with pytest.raises(TransferError, match="not a regular file"):
            await asyncio.wait_for(client.stat("pipe"), timeout=30)
    async with aiohttp.ClientSession() as http:
        url = f"{served.url}/transfer/v1/files?share=sh1"
        ssl = tls.pin(served.fingerprint) if served.fingerprint else None
        async with http.post(url, data=b"{" * 2_000_000, ssl=ssl) as resp:
            assert resp.status == 403  # no ticket: refused before the body is read
        async with http.post(url, data=b'{"paths": ["' + b"a" * 2_000_000 + b'"]}', ssl=ssl,
                             headers={"Authorization": f"Ticket {served.ticket('', tree=True)}"}
                             ) as resp:
            assert resp.status == 413


async def test_a_ticket_covers_only_what_is_really_below_its_path(served: Served,
                                                                  tmp_path: Path) -> None:
    """A symlink inside the share that leads from the ticket's folder to another folder of
    the same share reaches nothing there: not by reading, listing, batching or writing."""
    random_file(served.root / "shot010" / "plate.dpx", 500)
    secret = random_file(served.root / "finance" / "salaries.xls", 300)
    os.symlink(secret, served.root / "shot010" / "looks_innocent.dpx")
    os.symlink(served.root / "finance", served.root / "shot010" / "more")
    tree = served.ticket("shot010", tree=True)
    async with served.client(tree) as client:
        listing = await client.stat("shot010")
        assert [f.path for f in listing.files] == ["shot010/plate.dpx"]
        for path in ("shot010/looks_innocent.dpx", "shot010/more/salaries.xls"):
            with pytest.raises(TransferError, match="leads outside the ticket's path"):
                await client.stat(path)
            with pytest.raises(TransferError, match="leads outside the ticket's path"):
                await client.pull(path, tmp_path / "out" / "x")
        got = await client.pull_batch(["shot010/plate.dpx", "shot010/looks_innocent.dpx"],
                                      lambda path: tmp_path / "batch" / path)
        assert not isinstance(got["shot010/plate.dpx"], TransferError)
        assert "leads outside the ticket's path" in str(got["shot010/looks_innocent.dpx"])
    assert not (tmp_path / "batch" / "shot010" / "looks_innocent.dpx").exists()
    # writing: a push ticket for shot010 cannot land in finance through the folder link
    local = random_file(tmp_path / "local.dpx", 100)
    async with served.client(served.ticket("shot010", "write", tree=True)) as client:
        with pytest.raises(TransferError, match="leads outside the ticket's path"):
            await client.push(local, "shot010/more/new.dpx")
        got = await client.push_batch([(local, "shot010/more/new2.dpx")])
        assert "leads outside the ticket's path" in str(got["shot010/more/new2.dpx"])
    assert sorted(p.name for p in (served.root / "finance").iterdir()) == ["salaries.xls"]
    # the finance folder is served to a ticket for it
    async with served.client(served.ticket("finance", tree=True)) as client:
        assert [f.path for f in (await client.stat("finance")).files] == [
            "finance/salaries.xls"]


async def test_a_push_left_idle_is_closed_and_can_resume(served: Served, tmp_path: Path
                                                        ) -> None:
    import time

    import msgspec

    local = random_file(tmp_path / "local.mov", 3 * MiB)
    async with served.client(served.ticket("in", "write", tree=True)) as client:
        opened = {"size": 3 * MiB, "chunk": MiB, "identity": "x", "mode": 0o644,
                  "mtime_ns": 1}
        status, _, _ = await client.request("POST", "receive/open", params={"path": "in/a.mov"},
                                          data=msgspec.json.encode(opened))
        assert status == 200
        assert served.endpoint.close_idle(time.monotonic() - 60) == 0  # not idle long enough
        assert served.endpoint.close_idle(time.monotonic() + 1) == 1  # the sender went away
        assert list((served.root / "in").glob(".a.mov*")), "its part file stays on disk"
        status, body, _ = await client.request("PUT", "receive/chunk", params={
            "path": "in/a.mov", "index": 0}, data=b"x" * MiB, headers={"X-Ferry-Hash": "00"})
        assert status == 409 and b"not_open" in body  # closed: chunks need a new open
        assert await client.push(local, "in/a.mov")  # a sender that comes back finishes
    assert (served.root / "in" / "a.mov").read_bytes() == local.read_bytes()
    assert served.endpoint.close_idle(time.monotonic() + 1) == 0


async def test_a_small_file_that_grew_travels_in_chunks(served: Served, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder's file listed small that has grown past 1 MiB by the time its batch is
    asked for: the batch answers it too large, and it travels in chunks instead."""
    from agent import folder, moving
    from agent.moving import Mover
    from protocol import TransferWork

    small = random_file(served.root / "plates" / "a.dpx", 1000)
    grown = random_file(served.root / "plates" / "b.dpx", 2000)
    listed: dict[str, int] = {}
    chunked: list[str] = []

    async def grows_once_listed(client: TransferClient, share: Share, name: str, landing: str,
                                info: Any, *rest: Any) -> tuple[str, int]:
        listed.update((f.path, f.size) for f in info.files)
        random_file(grown, 3 * MiB)
        return await folder.pull_folder(client, share, name, landing, info, *rest)

    real_pull = TransferClient.pull

    async def pull(client: TransferClient, path: str, *args: Any, **kwargs: Any) -> str:
        chunked.append(path)
        return await real_pull(client, path, *args, **kwargs)

    monkeypatch.setattr(moving, "pull_folder", grows_once_listed)
    monkeypatch.setattr(TransferClient, "pull", pull)
    dest = tmp_path / "dest"
    work = TransferWork(url=served.url, fingerprint=served.fingerprint or "", share="sh1",
                        path="plates", ticket=served.ticket("plates", tree=True),
                        dest_share="d", dest_path="in/plates", into_folder=False,
                        dest_root=str(dest))
    summary, size = await Mover(dict).run(work)
    assert listed == {"plates/a.dpx": 1000, "plates/b.dpx": 2000}
    assert summary == "a folder of 2 files, 3000 bytes" and size == 1000 + 3 * MiB
    assert chunked == ["plates/b.dpx"]  # a.dpx came in a batch
    assert (dest / "in" / "plates" / "b.dpx").read_bytes() == grown.read_bytes()
    assert (dest / "in" / "plates" / "a.dpx").read_bytes() == small.read_bytes()


async def test_a_folder_is_one_task_that_names_what_failed_and_resumes_by_file(
        served: Served, tmp_path: Path) -> None:
    """A folder moves as one task: small files many to a request, big ones in chunks. A
    file that cannot land fails by name and the rest land; the next run sends only what
    is missing (a landing with the source's size and mtime is not sent again)."""
    from agent.folder import FolderFailed
    from agent.moving import Mover
    from protocol import TransferWork

    for n in range(300):
        random_file(served.root / "plates" / f"reel{n % 3}" / f"p{n:04}.dpx", 1000 + n)
    random_file(served.root / "plates" / "big.mov", 9 * MiB)
    dest = tmp_path / "dest"
    blocked = dest / "in" / "plates" / "reel1" / "p0004.dpx"
    (blocked / "inside").mkdir(parents=True)  # a folder where a file must land
    work = TransferWork(url=served.url, fingerprint=served.fingerprint or "", share="sh1",
                        path="plates", ticket=served.ticket("plates", tree=True),
                        dest_share="d", dest_path="in/plates", into_folder=False,
                        dest_root=str(dest), size=-1)
    sizes: list[int] = []
    moved: list[int] = []
    with pytest.raises(FolderFailed) as failed:
        await Mover(dict).run(work, sizes.append, moved.append)
    assert "1 of 301 files of 'plates' did not arrive: plates/reel1/p0004.dpx" in \
        str(failed.value)
    assert list(failed.value.failed) == ["plates/reel1/p0004.dpx"]
    total = sum(f.stat().st_size for f in (served.root / "plates").rglob("*") if f.is_file())
    assert sizes == [total] and sum(moved) == total - 1004
    for source in (served.root / "plates").rglob("*"):
        if source.is_file() and source.name != "p0004.dpx":
            landed = dest / "in" / source.relative_to(served.root)
            assert landed.read_bytes() == source.read_bytes(), landed
            assert landed.stat().st_mtime_ns == source.stat().st_mtime_ns
    assert not [p for p in dest.rglob("*ferry*")], "no part files left"

    blocked.joinpath("inside").rmdir()
    blocked.rmdir()
    served_before = served.endpoint.served_bytes
    summary, size = await Mover(dict).run(work)
    assert summary == f"a folder of 301 files, {total} bytes; 300 files were there already"
    assert size == 1004  # and only it travelled (its bytes and a header line)
    assert 1004 < served.endpoint.served_bytes - served_before < 1004 + 1024
    assert blocked.read_bytes() == (served.root / "plates" / "reel1" / "p0004.dpx").read_bytes()


async def test_a_cancelled_pull_stops_its_streams_and_resumes(served: Served,
                                                               tmp_path: Path) -> None:
    """The bytes move on threads: cancelling the pull cuts their connections and waits
    for them, so nothing of it runs on, its part file is let go, and the next pull
    resumes from what landed."""
    import threading

    source = random_file(served.root / "reel.mov", 64 * MiB)
    dest = tmp_path / "out" / "reel.mov"
    moved: list[int] = []
    some = asyncio.Event()

    def progress(count: int) -> None:  # told on the event loop
        moved.append(count)
        if count:
            some.set()

    async with served.client(served.ticket("reel.mov"), streams=2) as client:
        pulling = asyncio.create_task(client.pull("reel.mov", dest, progress=progress))
        await some.wait()
        pulling.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pulling
        assert not [t for t in threading.enumerate() if t.name.startswith("pull-")]
        assert not dest.exists() and 0 < sum(moved) < 64 * MiB
        served_before = served.endpoint.served_chunks
        await client.pull("reel.mov", dest)  # not "being received by another transfer"
    assert dest.read_bytes() == source.read_bytes()
    assert served.endpoint.served_chunks - served_before < 8  # what had landed stayed


async def test_a_pushed_folder_resumes_by_file(served: Served, tmp_path: Path) -> None:
    """A pushed folder asks the receiver which files have landed already (with the size
    and mtime they have here) and sends only the others: a run cut short sends again
    only what had not landed; a file changed since is sent again."""
    from agent.moving import Mover
    from protocol import TransferWork

    source = tmp_path / "local"
    for n in range(120):
        random_file(source / "plates" / f"reel{n % 2}" / f"p{n:04}.dpx", 2000 + n)
    random_file(source / "plates" / "big.mov", 9 * MiB)
    work = TransferWork(url=served.url, fingerprint=served.fingerprint or "", share="sh1",
                        path="plates", ticket=served.ticket("in", "write", tree=True),
                        dest_share="d", dest_path="in/plates", into_folder=False,
                        direction="push", source_root=str(source))
    total = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    summary, size = await Mover(dict).run(work)
    assert summary == f"a folder of 121 files, {total} bytes" and size == total
    # an earlier run that was cut short: one small file and the big one are missing
    (served.root / "in" / "plates" / "reel1" / "p0007.dpx").unlink()
    (served.root / "in" / "plates" / "big.mov").unlink()
    changed = random_file(source / "plates" / "reel0" / "p0010.dpx", 2010)  # new bytes
    received = served.endpoint.received_bytes
    summary, size = await Mover(dict).run(work)
    assert summary == f"a folder of 121 files, {total} bytes; 118 files were there already"
    assert size == 2007 + 2010 + 9 * MiB
    assert 2007 + 2010 + 9 * MiB <= served.endpoint.received_bytes - received \
        < 2007 + 2010 + 9 * MiB + 1024
    for local in source.rglob("*"):
        if local.is_file():
            landed = served.root / "in" / local.relative_to(source)
            assert landed.read_bytes() == local.read_bytes(), landed
    assert (served.root / "in" / "plates" / "reel0" / "p0010.dpx").read_bytes() == \
        changed.read_bytes()
