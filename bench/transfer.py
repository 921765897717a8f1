"""File transfer throughput: Ferry agent to agent, against an rsync daemon and curl from nginx.

Two Ferry agents on loopback, each serving a share; a transfer job moves the
files from one to the other (HTTPS, BLAKE3 per chunk, written in place,
fsync'd and renamed: verification on). In the same run, the same files are
fetched from an ``rsync --daemon`` module (``rsync -a``) and, for the single
file, from nginx with ``curl`` (plain HTTP, sendfile: the floor). Every copy
lands in a fresh folder and is compared with the source. The page cache is
warm for all of them alike.

    .venv/bin/python bench/transfer.py                     # 2 GiB file, 10,000 x 64 KiB
    .venv/bin/python bench/transfer.py --big-mib 512 --small-files 2000
    .venv/bin/python bench/transfer.py --tmpfs             # no disk: protocol and CPU only

Goals (printed, not asserted): (a) one 2 GiB file at least 1.5x rsync's and
1.0x curl's throughput; (b) 10,000 files of 64 KiB at least 1.0x rsync's
files per second. rsync, nginx and curl come from Debian's packages and are
installed when missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ensure, free_port, start_ferry, stop_process
from hub import Session

PASSWORD = "bench-root-password"
MiB = 1 << 20


def make_data(root: Path, big_mib: int, small_files: int, small_kib: int) -> None:
    (root / "big").mkdir(parents=True)
    with open(root / "big" / "big.bin", "wb") as fh:
        for _ in range(big_mib // 16):
            fh.write(os.urandom(16 * MiB))
    for n in range(small_files):
        folder = root / "small" / f"d{n // 500:03}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n:05}.bin").write_bytes(os.urandom(small_kib * 1024))


def tree_digest(root: Path) -> str:
    h = hashlib.blake2b()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode())
            with open(path, "rb") as fh:
                while block := fh.read(8 * MiB):
                    h.update(block)
    return h.hexdigest()


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).replace(tzinfo=UTC).timestamp()


class Ferry:
    def __init__(self, tmp: Path, source_root: Path) -> None:
        self.tmp = tmp
        self.hub, info = start_ferry("hub", tmp, {"ip": "127.0.0.1", "port": 0,
                                                  "logging": {"level": "WARNING"}},
                                     {"FERRY_ROOT_PASSWORD": PASSWORD})
        self.session = Session(info["url"], username="root", password=PASSWORD)
        self.agents = []
        ids = []
        for name in ("src", "dst"):
            key = self.session.create("Node", {"name": name})["api_key"]
            proc, agent_info = start_ferry("agent", tmp, {
                "hub": info["url"], "api_key": key, "lanes": 1, "transfer_ip": "127.0.0.1",
                "logging": {"level": "WARNING"}}, name=name)
            self.agents.append(proc)
            while True:
                status = json.loads(urllib.request.urlopen(
                    agent_info["status_url"] + "/status.json").read())
                if status["client_id"]:
                    ids.append(status["client_id"])
                    break
                time.sleep(0.1)
        self.dest_root = tmp / "ferry-dest"
        self.dest_root.mkdir()
        self.session.create("Share", {"name": "src", "client": ids[0], "path": str(source_root)})
        self.session.create("Share", {"name": "dst", "client": ids[1],
                                      "path": str(self.dest_root)})
        time.sleep(2.0)  # the agents learn their shares at their next check-in

    def copy(self, source: str, dest: str) -> float:
        created = time.time()
        job = self.session.create("Job", {"source": f"share=src/{source}",
                                          "destination": f"share=dst/{dest}/", "retries": 0})
        while True:
            time.sleep(0.1)
            state = self.session.get("Job", job["id"])
            if state["status"] in ("done", "failed", "aborted"):
                break
        if state["status"] != "done":
            task = self.session.find_one(f"task WHERE job.id={job['id']}")
            raise RuntimeError(f"ferry transfer {state['status']}: {task['message']}")
        return epoch(state["finished"]) - created

    def close(self) -> None:
        for proc in [*self.agents, self.hub]:
            stop_process(proc)


def start_rsync(tmp: Path, source_root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "rsyncd.conf"
    conf.write_text(f"pid file = {tmp}/rsyncd.pid\nuse chroot = no\n[data]\n"
                    f"path = {source_root}\nread only = yes\n")
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}",
                             f"--port={port}", "--address=127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def start_nginx(tmp: Path, source_root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
{"user root root;" if os.geteuid() == 0 else ""}
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {source_root};
    }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-mib", type=int, default=2048)
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tmpfs", action="store_true",
                        help="keep the data and every copy in /dev/shm (memory): the tools "
                             "compete on protocol and CPU, not on the disk")
    args = parser.parse_args()
    ensure("rsync", "rsync")
    ensure("nginx", "nginx-light")
    ensure("curl", "curl")
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-transfer-",
                                dir="/dev/shm" if args.tmpfs else None))
    source = tmp / "source"
    procs = []
    ferry = None
    results: dict[str, list[float]] = {k: [] for k in (
        "ferry_big", "rsync_big", "curl_big", "ferry_small", "rsync_small")}
    try:
        print(f"making {args.big_mib} MiB and {args.small_files} x {args.small_kib} KiB of "
              "random data ...", file=sys.stderr)
        make_data(source, args.big_mib, args.small_files, args.small_kib)
        want_big, want_small = tree_digest(source / "big"), tree_digest(source / "small")
        rsync, rsync_port = start_rsync(tmp, source)
        nginx, nginx_port = start_nginx(tmp, source)
        procs += [rsync, nginx]
        ferry = Ferry(tmp, source)
        for n in range(args.rounds):
            out = tmp / f"round{n}"
            results["ferry_big"].append(ferry.copy("big", f"r{n}-big"))
            assert tree_digest(ferry.dest_root / f"r{n}-big" / "big") == want_big
            (out / "rsync-big").mkdir(parents=True)
            results["rsync_big"].append(timed(["rsync", "-a", f"rsync://127.0.0.1:{rsync_port}"
                                               "/data/big/", str(out / "rsync-big")]))
            assert tree_digest(out / "rsync-big") == want_big
            (out / "curl-big").mkdir(parents=True)
            results["curl_big"].append(timed(["curl", "-sf", "-o", str(out / "curl-big" /
                                                                      "big.bin"),
                                              f"http://127.0.0.1:{nginx_port}/big/big.bin"]))
            assert tree_digest(out / "curl-big") == want_big
            results["ferry_small"].append(ferry.copy("small", f"r{n}-small"))
            assert tree_digest(ferry.dest_root / f"r{n}-small" / "small") == want_small
            (out / "rsync-small").mkdir(parents=True)
            results["rsync_small"].append(timed(["rsync", "-a", f"rsync://127.0.0.1:"
                                                 f"{rsync_port}/data/small/",
                                                 str(out / "rsync-small")]))
            assert tree_digest(out / "rsync-small") == want_small
            shutil.rmtree(out)
            shutil.rmtree(ferry.dest_root / f"r{n}-big")
            shutil.rmtree(ferry.dest_root / f"r{n}-small")
    finally:
        if ferry is not None:
            ferry.close()
        for proc in procs:
            stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    big_mb = args.big_mib * MiB / 1e6
    where = "in memory (/dev/shm)" if args.tmpfs else "on disk"
    print(f"(a) one {args.big_mib} MiB file, median of {args.rounds}, {where}:")
    for name in ("ferry", "rsync", "curl"):
        print(f"    {name:6} {med[name + '_big']:7.2f} s  {big_mb / med[name + '_big']:8.1f} MB/s")
    print(f"    ratio ferry/rsync {med['rsync_big'] / med['ferry_big']:.2f} (goal >= 1.5), "
          f"ferry/curl {med['curl_big'] / med['ferry_big']:.2f} (goal >= 1.0)")
    print(f"(b) {args.small_files} files of {args.small_kib} KiB, median of {args.rounds}:")
    for name in ("ferry", "rsync"):
        print(f"    {name:6} {med[name + '_small']:7.2f} s  "
              f"{args.small_files / med[name + '_small']:8.0f} files/s")
    print(f"    ratio ferry/rsync {med['rsync_small'] / med['ferry_small']:.2f} (goal >= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
