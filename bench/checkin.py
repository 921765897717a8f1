"""Check-in throughput and latency of one hub process on SQLite, against nginx.

N simulated agents (default 2,000) enroll with their own node keys, then
check in on an interval (default 15 s, ±10 % jitter, start times spread over
one interval) for a while, as real agents do. Latency is measured per
check-in. The same schedule is then replayed against nginx answering a
static JSON body on loopback: the floor set by this machine, the load
generator and HTTP itself. A closed-loop phase then measures the most
check-ins per second each can take.

    .venv/bin/python bench/checkin.py                  # 2,000 agents, 60 s
    .venv/bin/python bench/checkin.py --agents 5000    # the issue's goal
    .venv/bin/python bench/checkin.py --postgres --hubs 2 --agents 1000 --seconds 30

``--postgres`` measures the same schedule (and closed loop) a second time, with the hub on
PostgreSQL (``scripts/postgres.sh`` starts the server; a fresh database each run) and
``--hubs`` hub processes, behind nginx (round robin) when there are 2, and prints its
figures as ratios of the SQLite hub's in the same run. The agents enroll again there.

Goal (printed, not asserted): 5,000 agents at 15 s with p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    free_port,
    postgres_database,
    start_balancer,
    start_hubs,
    start_nginx,
    stop_process,
)

PASSWORD = "bench-root-password"
METRICS = {"c": 16, "l": 23.1, "m": 76.0, "mpf": 7954137088, "mpt": 34359738368,
           "mvf": 1776025600, "mvt": 18253611008, "in": {"s": 1.5, "s_a": 1.1, "s_t": -1.0},
           "out": {"s": 0.5, "s_a": 0.4, "s_t": -1.0}, "la": [1.2, 1.1, 0.9]}


def body(i: int) -> bytes:
    return json.dumps({"metrics": METRICS, "host_id": f"DE:A1:48:F1:{i // 256:02X}:{i % 256:02X}",
                       "code": f"render{i:05d}", "os": "linux", "username": "render",
                       "version": "0.1.0", "lanes": 16}).encode()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def enroll_all(url: str, count: int) -> list[str]:
    """Create one node per simulated agent and enroll it; returns the agents' tokens."""
    api = f"{url}/api/v1"
    sem = asyncio.Semaphore(8)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{api}/token", json={"username": "root", "password": PASSWORD}) as r:
            admin = {"Authorization": f"Bearer {(await r.json())['token']}"}

        async def one(i: int) -> str:
            async with sem:
                async with http.post(f"{api}/node", json={"name": f"sim{i:05d}"},
                                     headers=admin) as r:
                    key = (await r.json())["api_key"]
                async with http.post(f"{api}/agent/enroll", json={
                        "api_key": key, "machine_id": f"sim-machine-{i:08d}",
                        "code": f"render{i:05d}", "os": "linux"}) as r:
                    return str((await r.json())["token"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def open_loop(url: str, tokens: list[str], interval: float, duration: float
                    ) -> dict[str, Any]:
    """Every agent checks in once per interval (jittered) until the duration ends."""
    latencies: list[float] = []
    errors = 0
    target = f"{url}/api/v1/agent/checkin"
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    end = time.monotonic() + duration
    async with aiohttp.ClientSession(connector=connector) as http:
        async def agent(i: int, token: str) -> None:
            nonlocal errors
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            payload = body(i)
            await asyncio.sleep(min(random.uniform(0, interval), duration))
            while time.monotonic() < end:
                start = time.perf_counter()
                try:
                    async with http.post(target, data=payload, headers=headers) as r:
                        await r.read()
                        if r.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append((time.perf_counter() - start) * 1000)
                pause = interval * random.uniform(0.9, 1.1)
                await asyncio.sleep(min(pause, max(0.0, end - time.monotonic())))

        started = time.monotonic()
        await asyncio.gather(*(agent(i, t) for i, t in enumerate(tokens)))
        elapsed = time.monotonic() - started
    return {"checkins": len(latencies), "errors": errors, "per_second": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies, default=float("nan")),
            "mean_ms": statistics.fmean(latencies) if latencies else float("nan")}


async def closed_loop(url: str, tokens: list[str], workers: int, duration: float
                      ) -> dict[str, Any]:
    """``workers`` agents check in back to back: the most check-ins per second."""
    done = 0
    errors = 0
    latencies: list[float] = []
    target = f"{url}/api/v1/agent/checkin"
    end = time.monotonic() + duration
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def worker(w: int) -> None:
            nonlocal done, errors
            while time.monotonic() < end:
                i = random.randrange(len(tokens))
                start = time.perf_counter()
                async with http.post(target, data=body(i), headers={
                        "Authorization": f"Bearer {tokens[i]}",
                        "Content-Type": "application/json"}) as r:
                    await r.read()
                    errors += r.status != 200
                latencies.append((time.perf_counter() - start) * 1000)
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(workers)))
        elapsed = time.monotonic() - started
    return {"per_second": done / elapsed, "errors": errors, "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99)}


NGINX_ANSWER = json.dumps({"client_id": "x", "status": "online", "checkin_interval": 15.0,
                           "server_time": "2030-01-01T00:00:00Z"}, separators=(",", ":"))


def start_answering(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """nginx answering every POST to the check-in path with a fixed JSON body."""
    port = free_port()
    return start_nginx(tmp, port, f"""
    client_body_temp_path {tmp}/nginx-body;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{NGINX_ANSWER}';
        }}
    }}""", connections=16384), f"http://127.0.0.1:{port}"


def ferry_phase(tmp: Path, args: argparse.Namespace, uri: str | None = None, hubs: int = 1
                ) -> tuple[dict[str, Any], list[str]]:
    """Hub processes on ``uri`` (SQLite when None; nginx in front of several): enroll the
    agents, then the open and the closed loop. Returns the figures and the tokens."""
    section: dict[str, Any] = {"ip": "127.0.0.1", "port": 0, "checkin_interval": args.interval,
                               "offline_grace": 900, "logging": {"level": "WARNING"}}
    if uri is not None:
        section["uri"] = uri
    procs, infos = start_hubs(tmp, section, hubs, {"FERRY_ROOT_PASSWORD": PASSWORD})
    url = infos[0]["url"]
    try:
        if hubs > 1:
            balancer, url = start_balancer(tmp, [i["url"] for i in infos])
            procs.append(balancer)
        t0 = time.monotonic()
        tokens = asyncio.run(enroll_all(url, args.agents))
        out: dict[str, Any] = {"setup_seconds": round(time.monotonic() - t0, 1)}
        where = "SQLite" if uri is None else f"PostgreSQL, {hubs} hub process(es)"
        print(f"{where} at {url}: {len(tokens)} agents enrolled in {out['setup_seconds']} s "
              "(one argon2 hash and one verify each)", flush=True)
        out["open"] = asyncio.run(open_loop(url, tokens, args.interval, args.seconds))
        out["burst"] = asyncio.run(closed_loop(url, tokens, args.workers, args.burst_seconds))
    finally:
        for proc in reversed(procs):
            stop_process(proc)
    return out, tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=60.0, help="open-loop phase length")
    parser.add_argument("--burst-seconds", type=float, default=10.0, help="closed-loop length")
    parser.add_argument("--workers", type=int, default=64, help="closed-loop concurrency")
    parser.add_argument("--postgres", action="store_true",
                        help="also on PostgreSQL, as ratios of SQLite's figures")
    parser.add_argument("--hubs", type=int, choices=(1, 2), default=1,
                        help="hub processes on PostgreSQL (2: behind nginx)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-checkin-"))
    nginx = drop = None
    results: dict[str, Any] = {"agents": args.agents, "interval": args.interval}
    try:
        lite, tokens = ferry_phase(tmp / "sqlite", args)
        results.update(ferry=lite["open"], ferry_burst=lite["burst"],
                       setup_seconds=lite["setup_seconds"])
        if args.postgres:
            uri, drop = postgres_database()
            results["hubs"] = args.hubs
            results["postgres"], _ = ferry_phase(tmp / "postgres", args, uri, args.hubs)
        nginx, nginx_url = start_answering(tmp)
        results["nginx"] = asyncio.run(open_loop(nginx_url, tokens, args.interval, args.seconds))
        results["nginx_burst"] = asyncio.run(closed_loop(nginx_url, tokens, args.workers,
                                                          args.burst_seconds))
    finally:
        if nginx is not None:
            stop_process(nginx, sig=signal.SIGQUIT)
        if drop is not None:
            drop()
        shutil.rmtree(tmp, ignore_errors=True)

    f, n, fb, nb = (results[k] for k in ("ferry", "nginx", "ferry_burst", "nginx_burst"))
    rows = [("ferry hub", f, fb)]
    if args.postgres:
        pg = results["postgres"]
        rows.append((f"postgres x{args.hubs}", pg["open"], pg["burst"]))
    rows.append(("nginx static", n, nb))
    print(f"\n{args.agents} agents, {args.interval:g} s interval, {args.seconds:g} s:")
    print(f"{'':14}{'check-ins/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for name, r, _ in rows:
        print(f"{name:14}{r['per_second']:12.1f}{r['p50_ms']:9.2f}{r['p99_ms']:9.2f}"
              f"{r['max_ms']:9.1f}{r['errors']:8d}")
    print(f"\nclosed loop, {args.workers} concurrent, {args.burst_seconds:g} s:")
    for name, _, r in rows:
        print(f"{name:14}{r['per_second']:12.1f}{r['p50_ms']:9.2f}{r['p99_ms']:9.2f}"
              f"{'':9}{r['errors']:8d}")
    results["ratio_p99"] = f["p99_ms"] / n["p99_ms"]
    results["ratio_max_rate"] = fb["per_second"] / nb["per_second"]
    print(f"\nratio ferry/nginx p99 latency (open loop):   {results['ratio_p99']:.2f}")
    print(f"ratio ferry/nginx max check-ins/s (closed):  {results['ratio_max_rate']:.3f}")
    if args.postgres:
        pg = results["postgres"]
        results["pg_ratio_p99"] = pg["open"]["p99_ms"] / f["p99_ms"]
        results["pg_ratio_max_rate"] = pg["burst"]["per_second"] / fb["per_second"]
        where = "1 hub" if args.hubs == 1 else f"{args.hubs} hubs behind nginx"
        print(f"ratio PostgreSQL ({where}) / SQLite (1 hub), p99 latency:  "
              f"{results['pg_ratio_p99']:.2f}")
        print(f"ratio PostgreSQL ({where}) / SQLite (1 hub), max check-ins/s: "
              f"{results['pg_ratio_max_rate']:.2f}")
    needed = 5000 / 15
    print(f"goal: 5,000 agents at 15 s = {needed:.0f}/s with p99 < 50 ms -> this run: "
          f"{f['per_second']:.0f}/s at p99 {f['p99_ms']:.1f} ms; max {fb['per_second']:.0f}/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
