"""Download links on the transfer endpoint, over real sockets on loopback: fetched, resumed
and split by curl, wget and aria2c (Debian's packages; skipped naming the one missing),
answered with ranges and validators as HTTP says, and refused, saying why, when the link
expired, was altered, or its ticket is shown anywhere else."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import shutil
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict

from core import refusals
from protocol import tickets
from protocol.links import LINK, link_url
from protocol.tickets import TicketScope
from protocol.transfer import PREFIX, Share
from transports import links, tls
from transports.connection import Headers
from transports.endpoint import TransferEndpoint
from transports.limits import Budget, Limits

KEY = tickets.private_key(os.urandom(32))
MiB = 1 << 20


@dataclass
class Served:
    endpoint: TransferEndpoint
    url: str
    fingerprint: str
    pin: str
    root: Path

    def link(self, path: str, *, ttl: float = 60, now: float | None = None,
             share: str = "sh1", url_path: str | None = None, job: str = LINK,
             tree: bool = False) -> str:
        ticket = tickets.issue(KEY, TicketScope(server="srv1", share=share, path=path,
                                                op="read", job=job, task="l1", tree=tree),
                               ttl=ttl, now=now)
        return link_url(self.url, "sh1", url_path or path, ticket)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    root = tmp_path / "share"
    root.mkdir()
    endpoint = TransferEndpoint("srv1", tickets.public_key(tickets.public_key_text(KEY)),
                                {"sh1": Share("sh1", "projects", root)})
    key, cert = tls.ensure_identity(tmp_path / "tls", "srv1")
    port = await endpoint.start("127.0.0.1", 0, tls.server_context(key, cert))
    yield Served(endpoint, f"https://127.0.0.1:{port}", tls.fingerprint(cert),
                 tls.public_key_pin(cert), root)
    await endpoint.stop()


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.randbytes(size))
    return path


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install curl wget aria2; "
                    ".ci/run installs them)")
    return found


async def run(*argv: str) -> tuple[int, str]:
    """Run a command while the endpoint, in this event loop, answers it."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


def curl(served: Served, *args: str) -> list[str]:
    return [tool("curl"), "-sS", "-k", "--pinnedpubkey", served.pin, *args]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def get(served: Served, url: str, headers: dict[str, str] | None = None,
              method: str = "GET") -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as client, client.request(
            method, url, headers=headers, ssl=tls.pin(served.fingerprint)) as resp:
        return resp.status, CIMultiDict(resp.headers), await resp.read()


# -- standard clients
async def test_curl_wget_and_aria2c_download_the_same_bytes(served: Served, tmp_path: Path
                                                            ) -> None:
    source = random_file(served.root / "thefilm" / "latest edit é.mov", 9 * MiB + 123)
    url = served.link("thefilm/latest edit é.mov")
    assert url.split("?")[0].endswith("/latest%20edit%20%C3%A9.mov")
    out = tmp_path / "out"
    out.mkdir()

    code, text = await run(*curl(served, "-o", str(out / "curl.mov"), url))
    assert code == 0, text
    code, text = await run(tool("wget"), "-q", "--no-check-certificate", "-O",
                           str(out / "wget.mov"), url)
    assert code == 0, text
    code, text = await run(tool("aria2c"), "-x4", "-s4", "-k1M", "--check-certificate=false",
                           "--allow-overwrite=true", "--auto-file-renaming=false",
                           "--console-log-level=warn", "--summary-interval=0",
                           "-d", str(out), "-o", "aria2c.mov", url)
    assert code == 0, text
    for name in ("curl.mov", "wget.mov", "aria2c.mov"):
        assert sha(out / name) == sha(source), name
    assert served.endpoint.served_links >= 3
    assert served.endpoint.served_bytes >= 3 * source.stat().st_size  # the agent's s_t counts them


async def test_curl_pins_the_agents_key(served: Served, tmp_path: Path) -> None:
    """With another key pinned, curl refuses the connection before anything is sent."""
    random_file(served.root / "a.bin", 1000)
    other = "sha256//" + "A" * 43 + "="
    code, text = await run(tool("curl"), "-sS", "-k", "--pinnedpubkey", other,
                           "-o", str(tmp_path / "x"), served.link("a.bin"))
    assert code != 0 and "pinned" in text.lower(), text
    assert not (tmp_path / "x").exists()


async def test_an_interrupted_curl_download_resumes_to_the_same_file(
        served: Served, tmp_path: Path) -> None:
    source = random_file(served.root / "big.mov", 24 * MiB)
    url, dest = served.link("big.mov"), tmp_path / "big.mov"
    proc = await asyncio.create_subprocess_exec(
        *curl(served, "--limit-rate", "4M", "-o", str(dest), url),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (dest.exists() and dest.stat().st_size >= 2 * MiB):
        assert time.monotonic() < deadline, "curl wrote nothing"
        await asyncio.sleep(0.05)
    proc.kill()
    await proc.wait()
    partial = dest.stat().st_size
    assert 0 < partial < source.stat().st_size
    code, text = await run(*curl(served, "-C", "-", "-o", str(dest), url))
    assert code == 0, text
    assert sha(dest) == sha(source)


async def test_wget_continues_a_partial_file(served: Served, tmp_path: Path) -> None:
    source = random_file(served.root / "w.bin", 3 * MiB + 7)
    dest = tmp_path / "w.bin"
    dest.write_bytes(source.read_bytes()[:MiB + 5])
    code, text = await run(tool("wget"), "-q", "-c", "--no-check-certificate", "-O", str(dest),
                           served.link("w.bin"))
    assert code == 0, text
    assert sha(dest) == sha(source)


# -- refusals, each saying why
async def test_an_expired_link_is_refused_saying_so(served: Served, tmp_path: Path) -> None:
    random_file(served.root / "a.mov", 1000)
    url = served.link("a.mov", ttl=10, now=time.time() - 100)  # expired 90 s ago
    body = tmp_path / "body"
    code, text = await run(*curl(served, "-o", str(body), "-w", "%{http_code}", url))
    assert (code, text) == (0, "403"), text
    assert "link refused: expired ticket" in body.read_text()
    assert served.endpoint.refused == 1


async def test_an_altered_link_is_refused(served: Served) -> None:
    random_file(served.root / "a.mov", 1000)
    random_file(served.root / "b.mov", 1000)
    url = served.link("a.mov")
    base, ticket = url.split("?ticket=")
    payload, signature = ticket.split(".")
    claims = tickets._unb64(payload).replace(b'"a.mov"', b'"b.mov"')
    forged = f"{tickets._b64(claims)}.{signature}"
    for bad, why in (
            (url.replace("/a.mov?", "/b.mov?"), "ticket for another path"),
            (f"{base.replace('/a.mov', '/b.mov')}?ticket={forged}", "forged ticket"),
            (f"{base}?ticket={ticket[:-3]}", "forged ticket"),
            (base, "carries its ticket"),
            (url.replace("/link/sh1/", "/link/sh2/"), "ticket for another share")):
        status, _, data = await get(served, bad)
        assert status == 403 and why in data.decode(), (bad, data)
    assert served.endpoint.refused == 5


async def test_only_a_links_ticket_opens_a_link(served: Served) -> None:
    random_file(served.root / "dir" / "a.mov", 1000)
    for job, tree, path in (("j1", False, "dir/a.mov"), ("j1", True, "dir"),
                            (LINK, True, "dir")):
        status, _, data = await get(served, served.link(path, job=job, tree=tree,
                                                        url_path="dir/a.mov"))
        assert status == 403 and b"not a download link's" in data, (job, tree, data)


async def test_a_links_ticket_opens_nothing_else(served: Served) -> None:
    """Not a chunk, a stat or a folder listing of the transfer protocol, and no write."""
    random_file(served.root / "dir" / "a.mov", 1000)
    ticket = served.link("dir/a.mov").split("?ticket=")[1]
    auth = {"Authorization": f"Ticket {ticket}"}
    for method, path in (("GET", "stat?share=sh1&path=dir/a.mov"),
                         ("GET", "stat?share=sh1&path=dir"),
                         ("GET", "chunk?share=sh1&path=dir/a.mov&index=0&chunk=1000&identity="),
                         ("POST", "receive/open?share=sh1&path=dir/a.mov"),
                         ("POST", "receive/discard?share=sh1&path=dir/a.mov")):
        status, _, data = await get(served, f"{served.url}{PREFIX}/{path}", auth, method)
        assert status == 403, (path, data)
        assert b"opens its link only" in data or b"ticket to read" in data, (path, data)
    assert (served.root / "dir" / "a.mov").stat().st_size == 1000


async def test_what_is_not_a_file_is_not_served(served: Served, tmp_path: Path) -> None:
    (served.root / "folder").mkdir()
    outside = random_file(tmp_path / "secret.txt", 100)
    (served.root / "out.txt").symlink_to(outside)
    random_file(served.root / "real.txt", 10)
    (served.root / "alias.txt").symlink_to(served.root / "real.txt")  # stays inside: fine
    for path, status, why in (("folder", 409, "is a folder"),
                              ("gone.txt", 404, "is not in share 'projects'"),
                              ("out.txt", 400, "leads outside its share")):
        got, _, data = await get(served, served.link(path))
        assert got == status and why in data.decode(), (path, data)
        assert str(tmp_path) not in data.decode()  # nothing of the disk is told
    got, _, data = await get(served, served.link("alias.txt"))
    assert got == 200 and data == (served.root / "real.txt").read_bytes()


# -- HTTP: ranges and validators
async def test_ranges_and_validators(served: Served) -> None:
    source = random_file(served.root / "r.bin", 1000)
    data = source.read_bytes()
    url = served.link("r.bin")
    status, head, body = await get(served, url, method="HEAD")
    assert status == 200 and body == b""
    assert head["Content-Length"] == "1000" and head["Accept-Ranges"] == "bytes"
    assert head["Content-Disposition"] == \
        "attachment; filename=\"r.bin\"; filename*=UTF-8''r.bin"
    etag, modified = head["ETag"], head["Last-Modified"]
    assert etag.startswith('"') and not etag.startswith("W/")
    for wanted, status_, part, span in (
            ("bytes=0-99", 206, data[:100], "bytes 0-99/1000"),
            ("bytes=990-", 206, data[990:], "bytes 990-999/1000"),
            ("bytes=-10", 206, data[-10:], "bytes 990-999/1000"),
            ("bytes=-5000", 206, data, "bytes 0-999/1000"),
            ("bytes=900-5000", 206, data[900:], "bytes 900-999/1000"),
            ("bytes=0-1,5-6", 200, data, None),  # several: the whole file
            ("bytes=9-3", 200, data, None),  # unreadable: ignored
            ("bytes=1000-", 416, b"", "bytes */1000"),
            ("bytes=-0", 416, b"", "bytes */1000")):
        got, headers, body = await get(served, url, {"Range": wanted})
        assert (got, body) == (status_, part), wanted
        assert headers.get("Content-Range") == span, wanted
    # If-Range: the same version gets its range, another the whole file
    for validator, status_ in ((etag, 206), (modified, 206), ('"other"', 200),
                               (f"W/{etag}", 200), ("Thu, 01 Jan 1970 00:00:00 GMT", 200)):
        got, _, body = await get(served, url, {"Range": "bytes=0-9", "If-Range": validator})
        assert got == status_ and body == (data[:10] if status_ == 206 else data), validator
    for headers, status_ in (({"If-None-Match": etag}, 304), ({"If-None-Match": '"x"'}, 200),
                             ({"If-Modified-Since": modified}, 304),
                             ({"If-Match": etag}, 200), ({"If-Match": '"x"'}, 412),
                             ({"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, 412)):
        got, _, _ = await get(served, url, headers)
        assert got == status_, headers
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    _, later, _ = await get(served, url, method="HEAD")
    assert later["ETag"] != etag  # a new version: a new ETag
    got, _, body = await get(served, url, {"Range": "bytes=0-9", "If-Range": etag})
    assert got == 200 and body == data


async def test_an_empty_file(served: Served) -> None:
    (served.root / "empty").write_bytes(b"")
    status, headers, body = await get(served, served.link("empty"))
    assert (status, headers["Content-Length"], body) == (200, "0", b"")
    status, headers, _ = await get(served, served.link("empty"), {"Range": "bytes=0-"})
    assert status == 416 and headers["Content-Range"] == "bytes */0"


def test_plan_follows_rfc_9110_order() -> None:
    """If-Match before If-None-Match before Range; If-None-Match overrides
    If-Modified-Since."""
    def plan(**headers: str) -> links.Plan:
        return links.plan(Headers({k.replace("_", "-"): v for k, v in headers.items()}), 100,
                          '"t"', 1_700_000_000)

    assert plan(If_Match='"x"', If_None_Match='"t"').status == 412
    assert plan(If_None_Match='"x"', If_Modified_Since="Sun, 01 Jan 2040 00:00:00 GMT",
                Range="bytes=0-0") == links.Plan(206, 0, 1)
    assert plan(If_Match="*", Range="bytes=5-") == links.Plan(206, 5, 95)
    assert plan(If_None_Match="*").status == 304
    assert links.disposition('a "b"\\%é.mov') == \
        "attachment; filename=\"a _b____.mov\"; filename*=UTF-8''a%20%22b%22%5C%25%C3%A9.mov"


# -- what a download holds, and a file that changes under it
async def test_many_downloads_hold_bounded_memory(served: Served) -> None:
    source = random_file(served.root / "m.bin", 4 * MiB)
    served.endpoint.budget = Budget(2 * links.BLOCK)
    url = served.link("m.bin")
    results = await asyncio.gather(*(get(served, url) for _ in range(8)))
    assert all(status == 200 and body == source.read_bytes() for status, _, body in results)
    assert served.endpoint.budget.peak <= 2 * links.BLOCK
    assert served.endpoint.budget.used == 0


async def test_a_file_that_changes_while_it_is_sent_is_cut_off(served: Served) -> None:
    source = random_file(served.root / "c.bin", 32 * MiB)
    async with aiohttp.ClientSession() as client, client.get(
            served.link("c.bin"), ssl=tls.pin(served.fingerprint)) as resp:
        assert resp.status == 200
        first = await resp.content.readexactly(links.BLOCK)
        with source.open("r+b") as fh:  # rewritten in place
            fh.write(b"x" * 10)
        os.utime(source, ns=(time.time_ns(), time.time_ns() + 10_000_000_000))
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert len(first) == links.BLOCK


async def test_a_slow_reader_is_cut_off(served: Served) -> None:
    """Past its deadline (grace, plus its bytes at ``transfer_min_rate``) a download is
    cut off and counted, like any slow peer."""
    size = 48 * MiB  # more than the sockets' buffers hold
    random_file(served.root / "s.bin", size)
    served.endpoint.limits = Limits(min_rate=1 << 30, grace=0.5)
    before = refusals.counts().get("transfer_peer", 0)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    host, port = served.url.removeprefix("https://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), ssl=context)
    path = served.link("s.bin").removeprefix(served.url)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    try:
        assert b"200 OK" in await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(2)  # reads nothing meanwhile: the endpoint waits, then gives up
        got = 0
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while block := await asyncio.wait_for(reader.read(1 << 20), 10):
                got += len(block)
        assert got < size
    finally:
        writer.close()
    assert refusals.counts().get("transfer_peer", 0) == before + 1
