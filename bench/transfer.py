"""File transfer throughput: Ferry agent to agent, against an rsync daemon and curl from nginx.

Two Ferry agents on loopback, each serving a share; a transfer job moves the
files from one to the other (HTTPS, BLAKE3 per chunk, written in place,
fsync'd and renamed: verification on). In the same run, the same files are
fetched from an ``rsync --daemon`` module (``rsync -a``) and, for the single
file, from nginx with ``curl`` (plain HTTP, sendfile: the floor). Every copy
lands in a fresh folder and is compared with the source. The page cache is
warm for all of them alike, and every copy starts with nothing left to write
back (``sync`` before each, untimed): no tool pays for the one before it.

    .venv/bin/python bench/transfer.py                     # 2 GiB file, 10,000 x 64 KiB
    .venv/bin/python bench/transfer.py --big-mib 512 --small-files 2000
    .venv/bin/python bench/transfer.py --tmpfs             # no disk: protocol and CPU only
    .venv/bin/python bench/transfer.py --only folder       # (c) alone: 100,000 x 4 KiB
    .venv/bin/python bench/transfer.py --only big --limit 50MB/s   # (e) a speed limit

Goals (printed, not asserted): (a) one 2 GiB file at least 1.5x rsync's and
1.0x curl's throughput; (b) 10,000 files of 64 KiB at least 1.5x rsync's
files per second; (c) a folder of 100,000 files of 4 KiB in no more time than
rsync, with the hub's own CPU under 50 us per file; (d) the pulling and the
serving agent each under 200 MiB of RSS throughout (their peaks are printed); (e) with
``--limit``, the big file again under that job speed limit: the rate achieved within 5 %
of the limit (printed as achieved/limit, goal 0.95-1.05).
rsync, nginx and curl come from Debian's packages and are installed when
missing. Runs as root or not: the rsync daemon keeps the user it runs as.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ensure, free_port, start_ferry, start_nginx, stop_process
from hub import Session
from protocol.rates import parse_rate

PASSWORD = "bench-root-password"
MiB = 1 << 20


CASES = ("big", "small", "folder")


def make_data(root: Path, args: argparse.Namespace) -> None:
    if "big" in args.only:
        (root / "big").mkdir(parents=True)
        with open(root / "big" / "big.bin", "wb") as fh:
            for _ in range(args.big_mib // 16):
                fh.write(os.urandom(16 * MiB))
    if "small" in args.only:
        make_files(root / "small", args.small_files, args.small_kib * 1024)
    if "folder" in args.only:
        make_files(root / "folder", args.folder_files, args.folder_kib * 1024)


def make_files(root: Path, count: int, size: int) -> None:
    """``count`` files of random bytes, 500 to a folder."""
    block = os.urandom(size + count)
    for n in range(count):
        folder = root / f"d{n // 500:03}"
        if n % 500 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{n:06}.bin").write_bytes(block[n:n + size])


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

    def copy(self, source: str, dest: str, limit: str | None = None
             ) -> tuple[float, float, list[float]]:
        """Seconds from the job's creation to its end, the hub's CPU seconds meanwhile, and
        the peak RSS (MiB) of the pulling and the serving agent. ``limit``: the job's
        speed limit."""
        hub = psutil.Process(self.hub.pid)
        peaks = Peaks([psutil.Process(self.agents[1].pid), psutil.Process(self.agents[0].pid)])
        cpu = sum(hub.cpu_times()[:2])
        created = time.time()
        with peaks:
            job = self.session.create("Job", {"source": f"share=src/{source}",
                                              "destination": f"share=dst/{dest}/",
                                              "retries": 0,
                                              **({"speed_limit": limit} if limit else {})})
            while True:
                time.sleep(0.1)
                state = self.session.get("Job", job["id"])
                if state["status"] in ("done", "failed", "aborted"):
                    break
        if state["status"] != "done":
            task = self.session.find_one(f"task WHERE job.id={job['id']} AND status!=done")
            raise RuntimeError(f"ferry transfer {state['status']}: {task and task['message']}")
        # the status polls of this loop are the hub's too: a few ms each, left in
        return epoch(state["finished"]) - created, sum(hub.cpu_times()[:2]) - cpu, peaks.mib

    def close(self) -> None:
        for proc in [*self.agents, self.hub]:
            stop_process(proc)


class Peaks:
    """The highest RSS of some processes while inside (sampled every 50 ms)."""

    def __init__(self, procs: list[psutil.Process]) -> None:
        self.procs = procs
        self.mib = [0.0] * len(procs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            for n, proc in enumerate(self.procs):
                with contextlib.suppress(psutil.Error):
                    self.mib[n] = max(self.mib[n], proc.memory_info().rss / MiB)
            if self._stop.wait(0.05):
                return

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_rsync(tmp: Path, source_root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "rsyncd.conf"
    # a daemon started as root drops to nobody, who cannot read our 0700 temporary
    # folder: keep the user it runs as (ignored when it is not root)
    conf.write_text(f"pid file = {tmp}/rsyncd.pid\nuse chroot = no\n"
                    f"uid = {os.getuid()}\ngid = {os.getgid()}\n[data]\n"
                    f"path = {source_root}\nread only = yes\n")
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}",
                             f"--port={port}", "--address=127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def start_static(tmp: Path, source_root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """nginx serving the sources over plain HTTP with sendfile: curl's side of (a)."""
    port = free_port()
    return start_nginx(tmp, port, f"""
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {source_root};
    }}"""), port


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-mib", type=int, default=2048)
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--folder-files", type=int, default=100_000)
    parser.add_argument("--folder-kib", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default=",".join(CASES),
                        help=f"which cases to run, comma-separated ({', '.join(CASES)})")
    parser.add_argument("--tmpfs", action="store_true",
                        help="keep the data and every copy in /dev/shm (memory): the tools "
                             "compete on protocol and CPU, not on the disk")
    parser.add_argument("--rsync-fsync", action="store_true",
                        help="also time rsync --fsync (every file synced, as Ferry lands "
                        "them): like for like on disk; not a goal's baseline")
    parser.add_argument("--limit", metavar="RATE",
                        help="(e): the big file again as a job with this speed limit "
                        "(50MB/s): the rate achieved against the limit")
    args = parser.parse_args()
    args.only = [c for c in args.only.split(",") if c]
    if not args.only or set(args.only) - set(CASES):
        parser.error(f"--only takes {', '.join(CASES)}")
    if args.limit and "big" not in args.only:
        parser.error("--limit moves the big file: keep big in --only")
    ensure("rsync", "rsync")
    ensure("nginx", "nginx-light")
    ensure("curl", "curl")
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-transfer-",
                                dir="/dev/shm" if args.tmpfs else None))
    source = tmp / "source"
    procs = []
    ferry = None
    results: dict[str, list[float]] = {}
    peaks: list[list[float]] = []  # per Ferry copy: pulling agent, serving agent (MiB)
    hub_cpu: list[float] = []  # the hub's CPU seconds per file of the folder (c)

    def note(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    def ferry_copy(case: str, n: int, limit: str | None = None) -> float:
        assert ferry is not None
        seconds, cpu, peak = ferry.copy(case, f"r{n}-{case}", limit)
        peaks.append(peak)
        if case == "folder":
            hub_cpu.append(cpu / args.folder_files)
        assert tree_digest(ferry.dest_root / f"r{n}-{case}" / case) == wanted[case]
        shutil.rmtree(ferry.dest_root / f"r{n}-{case}")
        return seconds

    def rsync_copy(case: str, out: Path, *flags: str) -> float:
        (out / f"rsync-{case}").mkdir(parents=True)
        seconds = timed(["rsync", "-a", *flags, f"rsync://127.0.0.1:{rsync_port}/data/{case}/",
                         str(out / f"rsync-{case}")])
        assert tree_digest(out / f"rsync-{case}") == wanted[case]
        shutil.rmtree(out / f"rsync-{case}")
        return seconds

    try:
        print(f"making the data ({', '.join(args.only)}) ...", file=sys.stderr)
        make_data(source, args)
        wanted = {case: tree_digest(source / case) for case in args.only}
        rsync, rsync_port = start_rsync(tmp, source)
        nginx, nginx_port = start_static(tmp, source)
        procs += [rsync, nginx]
        ferry = Ferry(tmp, source)
        for n in range(args.rounds):
            out = tmp / f"round{n}"
            out.mkdir()
            for case in args.only:
                print(f"round {n + 1}: {case} ...", file=sys.stderr)
                os.sync()
                note(f"ferry_{case}", ferry_copy(case, n))
                os.sync()
                note(f"rsync_{case}", rsync_copy(case, out))
                if args.rsync_fsync:
                    os.sync()
                    note(f"rsyncfsync_{case}", rsync_copy(case, out, "--fsync"))
                if case == "big":
                    (out / "curl-big").mkdir()
                    os.sync()
                    note("curl_big", timed(["curl", "-sf", "-o", str(out / "curl-big" /
                                                                     "big.bin"),
                                            f"http://127.0.0.1:{nginx_port}/big/big.bin"]))
                    assert tree_digest(out / "curl-big") == wanted["big"]
                    if args.limit:
                        print(f"round {n + 1}: big at {args.limit} ...", file=sys.stderr)
                        os.sync()
                        note("limited_big", ferry_copy(case, n, args.limit))
            shutil.rmtree(out)
    finally:
        if ferry is not None:
            ferry.close()
        for proc in procs:
            stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    where = "in memory (/dev/shm)" if args.tmpfs else "on disk"
    if "big" in args.only:
        big_mb = args.big_mib * MiB / 1e6
        print(f"(a) one {args.big_mib} MiB file, median of {args.rounds}, {where}:")
        for name in ("ferry", "rsync", "curl"):
            print(f"    {name:6} {med[name + '_big']:7.2f} s  "
                  f"{big_mb / med[name + '_big']:8.1f} MB/s")
        print(f"    ratio ferry/rsync {med['rsync_big'] / med['ferry_big']:.2f} (goal >= 1.5), "
              f"ferry/curl {med['curl_big'] / med['ferry_big']:.2f} (goal >= 1.0)")
    if "small" in args.only:
        print(f"(b) {args.small_files} files of {args.small_kib} KiB, median of {args.rounds}, "
              f"{where}:")
        for name in ("ferry", "rsync"):
            print(f"    {name:6} {med[name + '_small']:7.2f} s  "
                  f"{args.small_files / med[name + '_small']:8.0f} files/s")
        print(f"    ratio ferry/rsync {med['rsync_small'] / med['ferry_small']:.2f} "
              "(goal >= 1.5)")
    if "folder" in args.only:
        print(f"(c) a folder of {args.folder_files} files of {args.folder_kib} KiB, median of "
              f"{args.rounds}, {where}:")
        for name in ("ferry", "rsync"):
            print(f"    {name:6} {med[name + '_folder']:7.2f} s  "
                  f"{args.folder_files / med[name + '_folder']:8.0f} files/s")
        print(f"    ratio ferry/rsync {med['rsync_folder'] / med['ferry_folder']:.2f} "
              f"(goal >= 1.0); the hub's CPU per file {statistics.median(hub_cpu) * 1e6:.1f} us "
              "(goal < 50)")
    for case in ("big", "small", "folder"):
        if f"rsyncfsync_{case}" in med:
            print(f"    [{case}] rsync --fsync {med[f'rsyncfsync_{case}']:.2f} s: ratio "
                  f"ferry/(rsync --fsync) {med[f'rsyncfsync_{case}'] / med[f'ferry_{case}']:.2f}")
    if args.limit:
        limit = parse_rate(args.limit)
        achieved = args.big_mib * MiB / med["limited_big"]
        print(f"(e) one {args.big_mib} MiB file at speed_limit {args.limit}, median of "
              f"{args.rounds}: {med['limited_big']:.2f} s, {achieved / 1e6:.1f} MB/s")
        print(f"    ratio achieved/limit {achieved / limit:.3f} (goal 0.95-1.05)")
    print(f"(d) peak RSS: pulling agent {max(p[0] for p in peaks):.0f} MiB, serving agent "
          f"{max(p[1] for p in peaks):.0f} MiB (goal < 200 each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
