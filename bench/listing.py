"""Listings against check-ins: three viewers page through a 100,000-task job while an agent
checks in.

One hub (SQLite; ``--postgres`` for PostgreSQL) gets one compute job of N tasks (one
``POST /job`` with items ``"1-N"``, command ``["true"]``, status ``paused``: nothing
runs) created by a user of an organization, and that organization gets three users with
the ``viewer`` role. One simulated agent (its own node key, enrolled) checks in back to
back with a pause of 20 ms, and each check-in's latency is measured:

1. baseline: for ``--baseline-seconds`` with nothing else going on;
2. listing: while the viewers page through all the job's tasks at once
   (``POST /find`` with ``limit`` records a page, following ``next``).

The ratio of check-in latency under listing to the baseline's (p50, p99, max) is the
figure: 1.0 would mean listings cost agents nothing. The hub's resident memory is
printed before, at its peak during and after the listing. The viewers run in a process
of their own and decode pages lazily (``msgspec.Raw``), so that the load generator does
not hold the prober's interpreter.

    .venv/bin/python bench/listing.py                      # 100,000 tasks, 10,000 a page
    .venv/bin/python bench/listing.py --limit 1000         # the hub's default page
    .venv/bin/python bench/listing.py --postgres
    .venv/bin/python bench/listing.py --hub-src /tmp/old --limit 0   # a hub of another
    # source tree (e.g. `git archive` of an older commit), viewers asking for no page

``--limit 0`` sends no ``limit`` (the hub's default page, or, on a hub from before paging,
every record in one answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import postgres_database, start_ferry, stop_process

PASSWORD = "bench-root-password"
VIEWER_PASSWORD = "bench-viewer-password"
CHECKIN = json.dumps({"metrics": {"c": 2, "l": 0.5, "m": 30.0, "mpf": 1 << 30, "mpt": 1 << 33,
                                  "mvf": 1 << 30, "mvt": 1 << 33,
                                  "in": {"s": 0.0, "s_a": 0.0, "s_t": -1.0},
                                  "out": {"s": 0.0, "s_a": 0.0, "s_t": -1.0},
                                  "la": [0.5, 0.4, 0.3]},
                      "host_id": "DE:A1:48:F1:00:01", "code": "render00001", "os": "linux",
                      "username": "render", "version": "0.1.0", "lanes": 2}).encode()


class Page(msgspec.Struct):
    result: list[msgspec.Raw]
    next: str | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


async def setup(url: str, tasks: int, viewers: int) -> dict[str, Any]:
    """The organization, its job, its viewers and an enrolled agent; their tokens."""
    api = f"{url}/api/v1"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        async def call(method: str, path: str, body: Any, token: str | None = None) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.request(method, f"{api}{path}", json=body, headers=headers) as r:
                answer = await r.json()
                if r.status >= 300:
                    raise RuntimeError(f"{method} {path}: {r.status} {answer}")
                return answer

        async def login(username: str, password: str) -> str:
            return str((await call("POST", "/token", {"username": username,
                                                      "password": password}))["token"])

        root = await login("root", PASSWORD)
        org = await call("POST", "/organization", {"name": "studio"}, root)
        await call("POST", "/user", {"username": "owner", "password": VIEWER_PASSWORD,
                                     "organization": org["id"], "roles": ["researcher"]}, root)
        owner = await login("owner", VIEWER_PASSWORD)
        started = time.monotonic()
        job = await call("POST", "/job", {"status": "paused", "compute": {
            "command": ["true"], "items": f"1-{tasks}"}}, owner)
        created = time.monotonic() - started
        tokens = []
        for n in range(viewers):
            await call("POST", "/user", {"username": f"viewer{n}", "password": VIEWER_PASSWORD,
                                         "organization": org["id"], "roles": ["viewer"]}, root)
            tokens.append(await login(f"viewer{n}", VIEWER_PASSWORD))
        node = await call("POST", "/node", {"name": "render00001", "organization": org["id"]},
                          root)
        agent = await call("POST", "/agent/enroll", {"api_key": node["api_key"],
                                                     "machine_id": "bench-listing-0001",
                                                     "code": "render00001", "os": "linux"})
    return {"job": job["id"], "viewers": tokens, "agent": agent["token"],
            "create_seconds": created}


def view_all(url: str, tokens: list[str], query: str, limit: int) -> list[dict[str, Any]]:
    """Each viewer pages through ``query`` at once (run in a process of its own)."""
    async def one(http: aiohttp.ClientSession, token: str) -> dict[str, Any]:
        cursor, records, pages, largest, refused = None, 0, 0, 0, 0
        started = time.monotonic()
        while True:
            body: dict[str, Any] = {"query": query}
            if limit:
                body["limit"] = limit
            if cursor:
                body["cursor"] = cursor
            async with http.post(f"{url}/api/v1/find", json=body,
                                 headers={"Authorization": f"Bearer {token}"}) as r:
                raw = await r.read()
                if r.status == 429:  # our own cap: wait as Retry-After says
                    refused += 1
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                if r.status != 200:
                    raise RuntimeError(f"find: {r.status} {raw[:300]!r}")
            page = msgspec.json.decode(raw, type=Page)
            pages += 1
            records += len(page.result)
            largest = max(largest, len(page.result))
            cursor = page.next
            if not cursor:
                break
        return {"records": records, "pages": pages, "largest_page": largest,
                "refused": refused, "seconds": time.monotonic() - started}

    async def main() -> list[dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=1800)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            return list(await asyncio.gather(*(one(http, t) for t in tokens)))

    return asyncio.run(main())


class PeakMemory:
    """The highest resident memory of a process, sampled every 50 ms on a thread of its
    own (a stalled hub must not hide its peak from the prober)."""

    def __init__(self, process: psutil.Process) -> None:
        self.process, self.peak = process, process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def probe(url: str, token: str, stop: threading.Event | None, seconds: float
                ) -> dict[str, Any]:
    """Check in back to back (20 ms apart) until ``stop`` is set or ``seconds`` pass;
    each check-in's latency."""
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        while (stop is None and time.monotonic() < end) or (stop is not None
                                                             and not stop.is_set()):
            started = time.perf_counter()
            async with http.post(f"{url}/api/v1/agent/checkin", data=CHECKIN,
                                 headers=headers) as r:
                await r.read()
                errors += r.status != 200
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)
    return {"count": len(latencies), "errors": errors, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99), "max": max(latencies, default=float("nan")),
            "mean": statistics.fmean(latencies) if latencies else float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--viewers", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10_000,
                        help="records a page (0: send no limit)")
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument("--postgres", action="store_true", help="the hub on PostgreSQL")
    parser.add_argument("--hub-src", type=Path, help="run the hub from this source tree")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a hub config key (YAML value), e.g. --set find_concurrent=1")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-listing-"))
    section: dict[str, Any] = {"ip": "127.0.0.1", "port": 0, "offline_grace": 900,
                               "logging": {"level": "WARNING"}}
    for setting in args.set:
        key, _, value = setting.partition("=")
        section[key] = yaml.safe_load(value)
    drop = None
    if args.postgres:
        section["uri"], drop = postgres_database()
    env = {"FERRY_ROOT_PASSWORD": PASSWORD}
    if args.hub_src:
        env["PYTHONPATH"] = str(args.hub_src.resolve())
        os.chdir(args.hub_src)  # `python -m` puts the working folder first on the path
    proc, info = start_ferry("hub", tmp, section, env)
    results: dict[str, Any] = {"tasks": args.tasks, "viewers": args.viewers,
                               "limit": args.limit, "engine": "PostgreSQL" if args.postgres
                               else "SQLite"}
    try:
        url, hub = info["url"], psutil.Process(proc.pid)
        made = asyncio.run(setup(url, args.tasks, args.viewers))
        print(f"job of {args.tasks} tasks created in {made['create_seconds']:.1f} s", flush=True)
        results["rss_before"] = hub.memory_info().rss
        results["baseline"] = asyncio.run(probe(url, made["agent"], None,
                                                args.baseline_seconds))
        stop = threading.Event()
        query = f"Task where job.id={made['job']}"
        with ProcessPoolExecutor(1) as pool, PeakMemory(hub) as memory:
            viewing = pool.submit(view_all, url, made["viewers"], query, args.limit)
            viewing.add_done_callback(lambda _: stop.set())
            results["listing"] = asyncio.run(probe(url, made["agent"], stop, 3600))
            results["viewed"] = viewing.result()
        results["rss_peak"], results["rss_after"] = memory.peak, hub.memory_info().rss
    finally:
        stop_process(proc)
        if drop is not None:
            drop()
        shutil.rmtree(tmp, ignore_errors=True)

    base, busy = results["baseline"], results["listing"]
    mib = 1024 * 1024
    print(f"\n{args.viewers} viewers, {args.tasks} tasks, limit {args.limit or 'none'}, "
          f"{results['engine']}:")
    for n, v in enumerate(results["viewed"]):
        print(f"  viewer {n}: {v['records']} records in {v['pages']} pages (largest "
              f"{v['largest_page']}) in {v['seconds']:.1f} s, {v['refused']} times 429")
    print(f"\n{'check-ins':22}{'count':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for name, r in (("baseline (no listing)", base), ("while listing", busy)):
        print(f"{name:22}{r['count']:7d}{r['p50']:9.2f}{r['p99']:9.2f}{r['max']:9.1f}"
              f"{r['errors']:8d}")
    for key in ("p50", "p99", "max"):
        results[f"ratio_{key}"] = busy[key] / base[key]
        print(f"ratio check-in latency listing/baseline, {key}: {results[f'ratio_{key}']:.2f}")
    print(f"hub RSS: {results['rss_before'] / mib:.0f} MiB before, {results['rss_peak'] / mib:.0f} MiB "
          f"at peak while listing, {results['rss_after'] / mib:.0f} MiB after")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
