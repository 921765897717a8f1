"""The endpoint's threaded server, in process over real sockets: kept-alive and pipelined
requests, the bound on connections (more wait; idle ones make room), TLS handshakes and
request heads that must end in time, idle connections closed, malformed requests answered
400 and closed, 100 Continue and chunked bodies, and a stop that ends busy connections."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from protocol import tickets
from protocol.tickets import TicketScope
from protocol.transfer import PREFIX, Share
from transports import tls
from transports.endpoint import TransferEndpoint
from transports.server import Timeouts

KEY = tickets.private_key(os.urandom(32))
FAST = Timeouts(handshake=0.5, idle=0.5, crowded=0.2, head=0.5, stop=2.0)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *, use_tls: bool = False, **options: object
                  ) -> AsyncIterator[tuple[TransferEndpoint, int]]:
    root = tmp_path / "share"
    root.mkdir(exist_ok=True)
    (root / "a.txt").write_bytes(b"hello")
    endpoint = TransferEndpoint("srv", tickets.public_key(tickets.public_key_text(KEY)),
                                {"sh": Share("sh", "projects", root)}, **options)  # type: ignore[arg-type]
    context = None
    if use_tls:
        key, cert = tls.ensure_identity(tmp_path / "tls", "srv")
        context = tls.server_context(key, cert)
    port = await endpoint.start("127.0.0.1", 0, context)
    try:
        yield endpoint, port
    finally:
        await endpoint.stop()


def ticket(path: str = "a.txt", *, tree: bool = False) -> str:
    return tickets.issue(KEY, TicketScope(server="srv", share="sh", path=path, op="read",
                                          job="j", task="t", tree=tree), ttl=60)


def stat(path: str = "a.txt") -> bytes:
    return (f"GET {PREFIX}/stat?share=sh&path={path} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Ticket {ticket(path)}\r\n\r\n").encode()


def files_head(length: int | None, *, authorized: bool = True, expect: bool = False) -> bytes:
    """The head of a request for small files (a body of ``length`` bytes, or chunked)."""
    lines = [f"POST {PREFIX}/files?share=sh HTTP/1.1", "Host: x"]
    if authorized:
        lines.append(f"Authorization: Ticket {ticket('', tree=True)}")
    lines.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    if expect:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Client:
    """A peer on a plain (or TLS) socket that reads answers one after the other."""

    def __init__(self, port: int, *, context: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = context.wrap_socket(sock) if context else sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        block = self.sock.recv(65536)
        if not block:
            raise ConnectionError("closed")
        return block

    def answer(self, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._more(timeout)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        line, *fields = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        length = int(headers.get("content-length", 0))
        while len(self.buffer) < length:
            self.buffer += self._more(timeout)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(line.split()[1]), headers, body

    def closed(self, within: float) -> bool:
        """Does the endpoint close the connection within ``within`` seconds?"""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.buffer += self._more(left)
            except TimeoutError:
                return False
            except (ConnectionError, ssl.SSLError):
                return True
        return False

    def close(self) -> None:
        self.sock.close()


def plain_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


async def test_requests_one_after_the_other_on_one_connection(tmp_path: Path) -> None:
    async with serving(tmp_path) as (_, port):
        client = Client(port)
        client.send(stat() + stat())  # pipelined
        for _ in range(2):
            status, headers, body = client.answer()
            assert status == 200 and b'"size":5' in body and "connection" not in headers
        client.send(stat("nothing.txt"))
        assert client.answer()[0] == 404  # an answer that refuses keeps the connection too
        client.send(stat())
        assert client.answer()[0] == 200
        client.close()


async def test_an_idle_connection_is_closed(tmp_path: Path) -> None:
    async with serving(tmp_path, timeouts=FAST) as (_, port):
        client = Client(port)
        client.send(stat())
        assert client.answer()[0] == 200
        started = time.monotonic()
        assert client.closed(within=5)
        assert time.monotonic() - started >= FAST.idle - 0.1


async def test_connections_past_the_bound_wait_for_one_to_end(tmp_path: Path) -> None:
    slow = Timeouts(idle=30, crowded=0.2)
    async with serving(tmp_path, max_connections=2, timeouts=slow) as (endpoint, port):
        body = msgspec.json.encode({"paths": ["a.txt"]})
        busy = [Client(port), Client(port)]
        for client in busy:  # each waits for its body: busy, not idle
            client.send(files_head(len(body)))
        waiting = Client(port)  # connected (the system's backlog), not served yet
        waiting.send(stat())
        with pytest.raises(TimeoutError):
            waiting.answer(timeout=0.8)
        assert endpoint._server is not None and endpoint._server.connections == 2
        busy[0].send(body)
        status, _, batch = busy[0].answer()
        assert status == 200 and batch.endswith(b"\nhello")
        # the first is idle now, and someone waits: it is closed to make room
        assert waiting.answer(timeout=5)[0] == 200
        assert busy[0].closed(within=1)
        busy[1].send(body)
        assert busy[1].answer()[0] == 200
        for client in (*busy, waiting):
            client.close()


async def test_idle_connections_make_room_for_new_ones(tmp_path: Path) -> None:
    slow = Timeouts(idle=30, crowded=0.2)
    async with serving(tmp_path, max_connections=2, timeouts=slow) as (_, port):
        idle = [Client(port), Client(port)]
        for client in idle:
            client.send(stat())
            assert client.answer()[0] == 200
        started = time.monotonic()
        newcomer = Client(port)
        newcomer.send(stat())
        assert newcomer.answer(timeout=5)[0] == 200
        assert time.monotonic() - started < 3  # not the 30 s of an idle connection
        assert sum(client.closed(within=1) for client in idle) >= 1


async def test_a_tls_handshake_must_end_in_time(tmp_path: Path) -> None:
    async with serving(tmp_path, use_tls=True, timeouts=FAST) as (_, port):
        silent = Client(port)  # connects, says nothing
        started = time.monotonic()
        assert silent.closed(within=5)
        assert time.monotonic() - started < FAST.handshake + 1
        # a ClientHello a byte at a time: the deadline is for the handshake in all
        hello_bio, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        with contextlib.suppress(ssl.SSLWantReadError):
            plain_tls().wrap_bio(hello_bio, out).do_handshake()
        hello = out.read()
        trickle = Client(port)
        started = time.monotonic()
        for byte in hello:
            try:
                trickle.send(bytes([byte]))
            except OSError:
                break
            if trickle.closed(within=0.1):
                break
        assert time.monotonic() - started < FAST.handshake + 1, "held for the whole trickle"
        # one that completes it is served
        client = Client(port, context=plain_tls())
        client.send(stat())
        assert client.answer()[0] == 200
        client.close()


@pytest.mark.parametrize("head", [
    b"GARBAGE\r\n\r\n",
    b"GET /transfer/v1/stat HTTP/2.0\r\n\r\n",
    b"GET transfer/v1/stat HTTP/1.1\r\n\r\n",
    b"GET /transfer/v1/stat HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"GET /transfer/v1/stat HTTP/1.1\r\n folded: value\r\n\r\n",
    b"POST /transfer/v1/files HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
    b"POST /transfer/v1/files HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /transfer/v1/files HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"GET /" + b"a" * (40 << 10) + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n",
], ids=["garbage", "http2", "no-slash", "no-colon", "folded", "two-lengths",
        "negative-length", "gzip", "long-line", "many-headers"])
async def test_a_malformed_request_is_answered_400_and_closed(tmp_path: Path, head: bytes
                                                               ) -> None:
    async with serving(tmp_path) as (endpoint, port):
        client = Client(port)
        client.send(head)
        status, headers, body = client.answer()
        assert status == 400 and headers["connection"] == "close"
        assert msgspec.json.decode(body)["error"]["code"] == "bad_request"
        assert client.closed(within=2)
        assert endpoint.refused == 1


async def test_a_chunked_body_that_breaks_its_framing_is_refused(tmp_path: Path) -> None:
    async with serving(tmp_path) as (endpoint, port):
        client = Client(port)
        client.send(files_head(None) + b"zz\r\nhello\r\n0\r\n\r\n")
        status, headers, body = client.answer()
        assert (status, headers["connection"]) == (400, "close"), body
        assert client.closed(within=2) and endpoint.refused == 1


async def test_a_head_that_trickles_in_is_dropped(tmp_path: Path) -> None:
    async with serving(tmp_path, timeouts=FAST) as (_, port):
        client = Client(port)
        started = time.monotonic()
        client.send(f"GET {PREFIX}/stat?share=sh&path=a.txt HTTP/1.1\r\n".encode())
        for _ in range(20):
            try:
                client.send(b"X-Slow: yes\r\n")
            except OSError:
                break
            if client.closed(within=0.2):
                break
        assert time.monotonic() - started < FAST.head + 1.5


async def test_100_continue_and_chunked_bodies(tmp_path: Path) -> None:
    body = msgspec.json.encode({"paths": ["a.txt"]})
    async with serving(tmp_path) as (endpoint, port):
        client = Client(port)
        client.send(files_head(len(body), expect=True))
        assert client.answer()[0] == 100  # the ticket is good: send the body
        client.send(body)
        status, _, batch = client.answer()
        assert status == 200 and batch.endswith(b"\nhello")
        client.send(files_head(None) + b"".join(
            b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:])) + b"0\r\n\r\n")
        status, _, batch = client.answer()
        assert status == 200 and batch.endswith(b"\nhello")
        refused = Client(port)  # no ticket: no 100 Continue, and the body is never read
        refused.send(files_head(len(body), authorized=False, expect=True))
        status, headers, _ = refused.answer()
        assert status == 403 and headers["connection"] == "close"
        assert refused.closed(within=2)
        assert endpoint.refused == 1
        for each in (client, refused):
            each.close()


async def test_stop_ends_busy_connections(tmp_path: Path) -> None:
    async with serving(tmp_path, timeouts=FAST) as (endpoint, port):
        client = Client(port)
        client.send(files_head(1000))  # and no body: its request waits for it
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await endpoint.stop()
        assert time.monotonic() - started < FAST.stop
        assert client.closed(within=2)
        with pytest.raises(OSError):
            Client(port).send(stat())
