"""The transfer endpoint alone: how fast one serving agent gives out (and takes in) chunks,
against nginx serving the same file over HTTPS.

The endpoint runs in a process of its own (a share holding one file, TLS with its
certificate). A threaded client in this process pulls the file's 8 MiB chunks over 1, 2
and 4 kept-alive TLS connections (``http.client``), each read into a buffer of its thread
and checked against its BLAKE3 (``X-Ferry-Hash``), as a receiver does; then nginx (TLS,
``sendfile`` off as TLS needs) serves the same file to the same client, chunk by chunk as
``Range`` requests, hashed the same way. Then the client pushes a file of the same size to
the endpoint (``receive/open``, ``receive/chunk``, ``receive/commit``); nginx takes no
pushes, so that line has no ratio. The client is the same for both: the ratio says how
close the endpoint comes to a server written in C.

    .venv/bin/python bench/endpoint.py                 # 1 GiB, on disk (page cache warm)
    .venv/bin/python bench/endpoint.py --tmpfs --mib 2048
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import blake3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ensure, free_port, start_nginx, stop_process
from protocol import tickets
from protocol.tickets import TicketScope
from protocol.transfer import PREFIX

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MiB = 1 << 20
CHUNK = 8 * MiB
ROUNDS = 3  # each figure is the best of these


def serve(root: Path, tls_dir: Path, public_key: str) -> None:
    """The child: an endpoint serving ``root`` as share ``sh``; prints its port, serves
    until its stdin closes."""
    from protocol.transfer import Share  # noqa: PLC0415 - the child's imports
    from transports import tls  # noqa: PLC0415
    from transports.endpoint import TransferEndpoint  # noqa: PLC0415

    async def main() -> None:
        endpoint = TransferEndpoint("srv", tickets.public_key(public_key),
                                    {"sh": Share("sh", "bench", root)})
        key, cert = tls.ensure_identity(tls_dir, "bench")
        port = await endpoint.start("127.0.0.1", 0, tls.server_context(key, cert))
        print(json.dumps({"port": port}), flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await endpoint.stop()

    asyncio.run(main())


def start_tls_static(tmp: Path, root: Path, tls_dir: Path
                     ) -> tuple[subprocess.Popen[bytes], int]:
    """nginx serving ``root`` over TLS with the endpoint's own certificate."""
    port = free_port()
    return start_nginx(tmp, port, f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tls_dir}/transfer-cert.pem;
        ssl_certificate_key {tls_dir}/transfer-key.pem;
        keepalive_requests 100000;
        root {root};
    }}""", workers=2), port


Request = Callable[[http.client.HTTPSConnection, int], http.client.HTTPResponse]


def streamed(worker: Callable[[], None], streams: int) -> float:
    """Seconds ``worker`` takes on ``streams`` threads at once, until the last ends."""
    threads = [threading.Thread(target=worker) for _ in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def pull(port: int, count: int, streams: int, ask: Request) -> float:
    """MB/s for ``count`` chunks pulled over ``streams`` connections, each chunk read into
    the thread's buffer and hashed; ``ask`` sends the request for chunk n."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    todo, lock, failed = list(range(count)), threading.Lock(), []

    def worker() -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        view = memoryview(bytearray(CHUNK))
        while True:
            with lock:
                if not todo:
                    break
                index = todo.pop()
            resp = ask(conn, index)
            got = 0
            while got < CHUNK and (n := resp.readinto(view[got:])):
                got += n
            digest = blake3.blake3(view[:got], max_threads=1).hexdigest()
            wanted = resp.getheader("X-Ferry-Hash", digest)
            if resp.status not in (200, 206) or got != CHUNK or digest != wanted:
                failed.append((index, resp.status, got))
                break
        conn.close()

    seconds = streamed(worker, streams)
    if failed:
        raise RuntimeError(f"chunks failed: {failed[:3]}")
    return count * CHUNK / seconds / 1e6


def push(port: int, key: Ed25519PrivateKey, count: int, streams: int, n: int) -> float:
    """MB/s for a file of ``count`` chunks pushed over ``streams`` connections."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    name, size = f"pushed{n}.bin", count * CHUNK
    auth = {"Authorization": "Ticket " + tickets.issue(key, TicketScope(
        server="srv", share="sh", path=name, op="write", job="j", task="t"), ttl=600)}
    data = os.urandom(CHUNK)
    digest = blake3.blake3(data).hexdigest()
    control = http.client.HTTPSConnection("127.0.0.1", port, context=context)

    def call(method: str, what: str, body: bytes) -> None:
        control.request(method, f"{PREFIX}/receive/{what}?share=sh&path={name}", body=body,
                        headers=auth)
        resp = control.getresponse()
        answer = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{what}: {resp.status} {answer[:200]!r}")

    call("POST", "open", json.dumps({"size": size, "chunk": CHUNK, "identity": "bench",
                                     "mode": 0o644, "mtime_ns": 1}).encode())
    todo, lock, failed = list(range(count)), threading.Lock(), []

    def worker() -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        while True:
            with lock:
                if not todo:
                    break
                index = todo.pop()
            conn.request("PUT", f"{PREFIX}/receive/chunk?share=sh&path={name}&index={index}",
                         body=data, headers={**auth, "X-Ferry-Hash": digest})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 204:
                failed.append((index, resp.status))
                break
        conn.close()

    seconds = streamed(worker, streams)
    if failed:
        raise RuntimeError(f"chunks failed: {failed[:3]}")
    call("POST", "commit", b'{"hash": null}')
    control.close()
    return size / seconds / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="the file's size")
    parser.add_argument("--tmpfs", action="store_true",
                        help="keep the files in /dev/shm (memory): no disk at all")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]), args.serve[2])
        return 0
    ensure("nginx", "nginx-light")
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-endpoint-",
                                dir="/dev/shm" if args.tmpfs else None))
    root, tls_dir = tmp / "share", tmp / "tls"
    root.mkdir()
    count = args.mib * MiB // CHUNK
    with open(root / "big.bin", "wb") as fh:
        for _ in range(count):
            fh.write(os.urandom(CHUNK))
    key = tickets.private_key(os.urandom(32))
    ticket = tickets.issue(key, TicketScope(server="srv", share="sh", path="big.bin", op="read",
                                            job="j", task="t"), ttl=3600)
    endpoint = subprocess.Popen([sys.executable, __file__, "--serve", str(root), str(tls_dir),
                                 tickets.public_key_text(key)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    nginx = None
    try:
        assert endpoint.stdout is not None
        port = json.loads(endpoint.stdout.readline())["port"]
        nginx, nginx_port = start_tls_static(tmp, root, tls_dir)

        def ferry_chunk(conn: http.client.HTTPSConnection, index: int
                        ) -> http.client.HTTPResponse:
            conn.request("GET", f"{PREFIX}/chunk?share=sh&path=big.bin&index={index}"
                         f"&chunk={CHUNK}&identity=", headers={"Authorization": f"Ticket {ticket}"})
            return conn.getresponse()

        def nginx_range(conn: http.client.HTTPSConnection, index: int
                        ) -> http.client.HTTPResponse:
            start = index * CHUNK
            conn.request("GET", "/big.bin", headers={"Range": f"bytes={start}-{start + CHUNK - 1}"})
            return conn.getresponse()

        pull(port, count, 2, ferry_chunk)  # warm both, and the page cache
        pull(nginx_port, count, 2, nginx_range)
        where = "in memory (/dev/shm)" if args.tmpfs else "on disk"
        print(f"one {args.mib} MiB file in chunks of 8 MiB over TLS, best of {ROUNDS}, {where}:")
        for streams in (1, 2, 4):
            ferry = max(pull(port, count, streams, ferry_chunk) for _ in range(ROUNDS))
            other = max(pull(nginx_port, count, streams, nginx_range) for _ in range(ROUNDS))
            print(f"    pull, {streams} stream(s): endpoint {ferry:7.1f} MB/s, nginx "
                  f"{other:7.1f} MB/s, ratio endpoint/nginx {ferry / other:.2f}")
        pushed = 0
        for streams in (1, 2, 4):
            rates = []
            for _ in range(ROUNDS):
                pushed += 1
                rates.append(push(port, key, count, streams, pushed))
                (root / f"pushed{pushed}.bin").unlink()
            print(f"    push, {streams} stream(s): endpoint {max(rates):7.1f} MB/s")
    finally:
        if nginx is not None:
            stop_process(nginx)
        if endpoint.stdin is not None:
            endpoint.stdin.close()
        endpoint.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
