"""The floor under many small files: how fast can one Python thread read and land them,
with nothing else (no network, no TLS, no hashes, no protocol), against rsync copying
the same files in the same run.

A folder of small files is moved at the speed of its per-file system calls. Ferry's
agents are Python; this measures what those calls alone cost in Python, on this
machine, so that goals (b) and (c) of bench/transfer.py can be read against it:

* read: walk the folder (``scandir``, a descriptor per folder), open, ``fstat``, read
  and close each file, as the serving agent does;
* land: for each file, create its part file beside it (``O_EXCL``), write it, set its
  mode and mtime, close it, then one ``syncfs`` for all, then rename each into place,
  as the receiving agent does;
* rsync: ``rsync -a`` of the folder into a fresh one (two processes in C, no sync).

The ratio printed is the floor's files per second over rsync's (read and land one
after the other, as one thread would; and the slower of the two alone, as two processes
in parallel would at best). Below 1.0, no Python agent that does these calls once per
file can match rsync on this machine, whatever its protocol.

    .venv/bin/python bench/landing.py                 # on disk: 100,000 x 4 KiB, 10,000 x 64 KiB
    .venv/bin/python bench/landing.py --tmpfs         # in memory (/dev/shm)
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ensure

PER_FOLDER = 1000


def make(root: Path, count: int, size: int) -> None:
    for n in range(count):
        folder = root / f"d{n // PER_FOLDER:03d}"
        if n % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"f{n:06d}").write_bytes(os.urandom(size))
    os.sync()


def read_all(root: Path) -> tuple[float, list[tuple[str, str, bytes, int]]]:
    started = time.perf_counter()
    out = []
    for folder in sorted(os.scandir(root), key=lambda e: e.name):
        dfd = os.open(folder.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for entry in os.scandir(folder.path):
                fd = os.open(entry.name, os.O_RDONLY, dir_fd=dfd)
                try:
                    st = os.fstat(fd)
                    out.append((folder.name, entry.name, os.read(fd, st.st_size + 1),
                                st.st_mtime_ns))
                finally:
                    os.close(fd)
        finally:
            os.close(dfd)
    return time.perf_counter() - started, out


def land_all(dest: Path, files: list[tuple[str, str, bytes, int]]) -> float:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    started = time.perf_counter()
    folders: dict[str, int] = {}
    staged = []
    for parent, name, data, mtime_ns in files:
        dfd = folders.get(parent)
        if dfd is None:
            (dest / parent).mkdir(parents=True)
            dfd = folders[parent] = os.open(dest / parent, os.O_RDONLY | os.O_DIRECTORY)
        temp = f".{name}.ferry-part"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dfd)
        os.write(fd, data)
        os.fchmod(fd, 0o644)
        os.utime(fd, ns=(mtime_ns, mtime_ns))
        os.close(fd)
        staged.append((dfd, temp, name))
    libc.syncfs(next(iter(folders.values())))
    for dfd, temp, name in staged:
        os.rename(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    for dfd in folders.values():
        os.fsync(dfd)
        os.close(dfd)
    return time.perf_counter() - started


def rsync(source: Path, dest: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["rsync", "-a", f"{source}/", str(dest)], check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tmpfs", action="store_true", help="files in /dev/shm (memory)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="100000x4,10000x64",
                        help="COUNTxKIB, comma-separated (default: %(default)s)")
    args = parser.parse_args()
    ensure("rsync", "rsync")
    where = "in memory (/dev/shm)" if args.tmpfs else "on disk"
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-landing-",
                                dir="/dev/shm" if args.tmpfs else None))
    try:
        for case in args.cases.split(","):
            count, kib = (int(x) for x in case.lower().split("x"))
            source = tmp / "source"
            make(source, count, kib << 10)
            times: dict[str, list[float]] = {"read": [], "land": [], "rsync": []}
            for n in range(args.rounds):
                os.sync()
                seconds, files = read_all(source)
                times["read"].append(seconds)
                os.sync()
                times["land"].append(land_all(tmp / f"py{n}", files))
                del files
                os.sync()
                times["rsync"].append(rsync(source, tmp / f"rsync{n}"))
                shutil.rmtree(tmp / f"py{n}")
                shutil.rmtree(tmp / f"rsync{n}")
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"{count} x {kib} KiB, {where}, median of {args.rounds}:")
            for name in ("read", "land", "rsync"):
                print(f"    {name:6} {count / med[name]:>10,.0f} files/s  "
                      f"({med[name] / count * 1e6:.1f} us a file)")
            serial = med["read"] + med["land"]
            print(f"    ratio python floor/rsync (files/s), one thread: {med['rsync'] / serial:.2f}; "
                  f"two in parallel at best: {med['rsync'] / max(med['read'], med['land']):.2f}")
            shutil.rmtree(source)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
