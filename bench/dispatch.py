"""Dispatch throughput and latency: no-op tasks through a hub and one agent, against xargs.

One hub (SQLite) and one agent with 2 lanes run a job of N tasks that each
run ``true``; right before it, ``xargs -P2 -n1 true`` runs the same count.
The throughput ratio is tasks/s through Ferry (job created to the hub
knowing every task done: the job's ``finished`` stamp, read by polling at a
user's pace of 0.1 s) over tasks/s of xargs. This machine's speed drifts
from minute to minute, so the pair is run in several rounds and the median
ratio is reported; CPU time per task (ours: hub, agent and the tasks; xargs:
xargs and its children) is printed too, as it drifts less. Then single-task
jobs are submitted one after another to an idle agent, and the time from
creating the job to its task's process starting is measured (the agent's
clock and ours are the same machine's).

    .venv/bin/python bench/dispatch.py                 # 2,000 tasks
    .venv/bin/python bench/dispatch.py --tasks 5000 --bucket-size 100
    .venv/bin/python bench/dispatch.py --postgres --hubs 2 --rounds 3
    .venv/bin/python bench/dispatch.py --targets os:linux 'cores:>=1' 'ram:>1MB' '!tag:slow'

``--targets`` adds, in every round right after the plain job, the same job with those
compute targets (node filters the agent matches): both ratios against the round's xargs,
and the filtered one's as a part of the plain one's. ``--limit`` makes that job (with
``--targets``, or alone) hold a limit of max 4 and cap itself at ``max_lanes`` 4, twice the
agent's 2 lanes: they never hold the job back (with a max of 2, a claim for a lane just
freed could wait for the end report of the bucket that ran there, which still holds its
slot), so what it measures is the cost of counting and locking in every claim.

    .venv/bin/python bench/dispatch.py --targets os:linux '!tag:slow' --limit

``--postgres`` runs the same measurements twice in one run: first with the hub on SQLite
(the reference), then on PostgreSQL (``scripts/postgres.sh`` starts the server; a fresh
database each run) with ``--hubs`` hub processes; with 2, the agent and the script call
nginx in front of them (round robin), so a job created through one hub wakes a claim
waiting in the other. It prints PostgreSQL's figures as ratios of SQLite's: throughput
(each against xargs in its own rounds, which cancels the machine's drift) and the first
task's latency. CPU per task then includes the database server's processes.

Goals (printed, not asserted): at least 0.7 of xargs' throughput; the first
task running within 50 ms of job creation (p50).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    postgres_database,
    start_balancer,
    start_ferry,
    start_hubs,
    stop_process,
)
from hub import Session

PASSWORD = "bench-root-password"


def xargs_run(count: int) -> tuple[float, float]:
    """Seconds and CPU seconds of xargs running ``true`` ``count`` times, two at once."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(["xargs", "-P2", "-n1", "true"], input="\n".join(["x"] * count).encode(),
                   check=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL server process (the server's own and the backends)."""
    out = {}
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            out[proc.pid] = times.user + times.system
    return out


@dataclass
class Fleet:
    """The hubs (and nginx when there are several), one agent, and who measures them."""

    procs: list[subprocess.Popen[bytes]]  # in start order; stopped in reverse
    session: Session
    hubs: list[psutil.Process]
    agent: psutil.Process
    postgres: bool

    def cpu_seconds(self) -> dict[str, Any]:
        """CPU of the hubs, the agent, the agent's children already reaped (its tasks), and
        the database server's processes (by pid: they come and go)."""
        hubs = [p.cpu_times() for p in self.hubs]
        agent = self.agent.cpu_times()
        return {"hub": sum(h.user + h.system + h.children_user + h.children_system
                           for h in hubs),
                "agent": agent.user + agent.system,
                "tasks": agent.children_user + agent.children_system,
                "db": postgres_cpu() if self.postgres else {}}


def cpu_spent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    spent = {k: after[k] - before[k] for k in ("hub", "agent", "tasks")}
    spent["db"] = sum(v - before["db"].get(pid, 0.0) for pid, v in after["db"].items())
    return spent


def start_fleet(tmp: Path, uri: str | None, hubs: int) -> Fleet:
    """Hub processes on ``uri`` (SQLite when None), nginx in front when more than one, and
    one agent with 2 lanes, enrolled and online."""
    section: dict[str, Any] = {"ip": "127.0.0.1", "port": 0, "logging": {"level": "WARNING"}}
    if uri is not None:
        section["uri"] = uri
    procs, infos = start_hubs(tmp, section, hubs, {"FERRY_ROOT_PASSWORD": PASSWORD})
    hub_procs = [psutil.Process(p.pid) for p in procs]
    url = infos[0]["url"]
    if hubs > 1:
        balancer, url = start_balancer(tmp, [i["url"] for i in infos])
        procs.append(balancer)
    try:
        session = Session(url, username="root", password=PASSWORD)
        key = session.create("Node", {"name": "bench"})["api_key"]
        agent, _ = start_ferry("agent", tmp, {"hub": url, "api_key": key, "lanes": 2,
                                              "transfer_ip": "127.0.0.1",
                                              "logging": {"level": "WARNING"}})
        procs.append(agent)
        while not session.find("Client where type=5 AND status=online"):
            time.sleep(0.1)
    except BaseException:
        for proc in reversed(procs):
            stop_process(proc)
        raise
    return Fleet(procs, session, hub_procs, psutil.Process(agent.pid), uri is not None)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).replace(tzinfo=UTC).timestamp()


def ferry_run(fleet: Fleet, count: int, bucket_size: int, targets: list[str] | None = None,
              limited: bool = False) -> dict[str, Any]:
    session = fleet.session
    cpu_before = fleet.cpu_seconds()
    created = time.time()
    started = time.perf_counter()
    job = session.create("Job", {"code": "bench", "compute": {
        "command": ["true"], "items": f"1-{count}", "bucket_size": bucket_size, "retries": 0,
        "clients": targets or []}, **({"limits": ["bench"], "max_lanes": 4} if limited else {})})
    while True:  # a user's pace: polling faster would load the hub it measures
        time.sleep(0.1)
        state = session.get("Job", job["id"])
        if state["status"] in ("done", "failed", "aborted"):
            break
    # the hub stamps `finished` when the last report arrives: that is the end
    seconds = epoch(state["finished"]) - created
    waited = time.perf_counter() - started
    tasks = session.find(f"task WHERE job.id={job['id']}")
    done = sum(t["status"] == "done" for t in tasks)
    last = max(epoch(t["finished"]) for t in tasks if t["finished"])
    return {"seconds": seconds, "waited": waited, "done": done, "status": state["status"],
            "executed_seconds": last - created,
            "cpu": cpu_spent(cpu_before, fleet.cpu_seconds())}


def first_task_latency(session: Session, runs: int) -> list[float]:
    """Milliseconds from creating a one-task job to its process starting (the task's
    ``started``, stamped by the agent just before it spawns the process)."""
    out = []
    for _ in range(runs):
        time.sleep(0.2)  # the agent is idle again, waiting in a claim
        created = time.time()
        job = session.create("Job", {"compute": {"command": ["true"], "items": "1"}})
        while (task := session.find_one(f"task WHERE job.id={job['id']}"))["started"] is None:
            time.sleep(0.02)
        out.append((epoch(task["started"]) - created) * 1000)
    return out


def measure(fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of xargs then Ferry, then the first task's latency."""
    ferry_run(fleet, 50, args.bucket_size)  # warm up: imports, first claims
    if args.limit:
        fleet.session.create("Limit", {"name": "bench", "max": 4})
    second = bool(args.targets or args.limit)
    rounds = []
    for _ in range(args.rounds):
        x_seconds, x_cpu = xargs_run(args.tasks)
        run = ferry_run(fleet, args.tasks, args.bucket_size)
        rounds.append({"xargs_seconds": x_seconds, "xargs_cpu": x_cpu, "ferry": run,
                       "ratio": x_seconds / run["seconds"]})
        if second:
            filtered = ferry_run(fleet, args.tasks, args.bucket_size, args.targets, args.limit)
            rounds[-1].update(filtered=filtered,
                              filtered_ratio=x_seconds / filtered["seconds"])
    latency = first_task_latency(fleet.session, args.latency_runs)
    filtered_ratio = statistics.median(r["filtered_ratio"] for r in rounds) \
        if second else None
    return {"rounds": rounds, "latency_ms": latency, "filtered_ratio": filtered_ratio,
            "ratio": statistics.median(r["ratio"] for r in rounds),
            "tasks_per_second": statistics.median(args.tasks / r["ferry"]["seconds"]
                                                  for r in rounds),
            "latency_p50_ms": statistics.median(latency)}


def measured(tmp: Path, args: argparse.Namespace, uri: str | None, hubs: int
             ) -> dict[str, Any]:
    fleet = start_fleet(tmp, uri, hubs)
    try:
        return measure(fleet, args)
    finally:
        for proc in reversed(fleet.procs):
            stop_process(proc)


def print_rounds(title: str, result: dict[str, Any], tasks: int) -> None:
    print(title)
    db = any(r["ferry"]["cpu"]["db"] for r in result["rounds"])
    cpu_head = "cpu ms/task: hub+agent+tasks" + ("+db" if db else "")
    print(f"{'round':>5}  {'xargs s':>8} {'tasks/s':>8} {'cpu ms/task':>11}   "
          f"{'ferry s':>8} {'tasks/s':>8} {cpu_head:>36} {'last ended s':>12}   ratio")
    for n, r in enumerate(result["rounds"], 1):
        f = r["ferry"]
        per = {k: 1000 * v / tasks for k, v in f["cpu"].items()}
        split = (f"{sum(per.values()):.3f} = {per['hub']:.2f}+{per['agent']:.2f}+"
                 f"{per['tasks']:.2f}" + (f"+{per['db']:.2f}" if db else ""))
        print(f"{n:>5}  {r['xargs_seconds']:8.2f} {tasks / r['xargs_seconds']:8.0f} "
              f"{1000 * r['xargs_cpu'] / tasks:11.3f}   {f['seconds']:8.2f} "
              f"{tasks / f['seconds']:8.0f} {split:>36} "
              f"{f['executed_seconds']:12.2f}   {r['ratio']:.2f}")
    latency = result["latency_ms"]
    print(f"throughput ratio ferry/xargs: {result['ratio']:.2f} (median of "
          f"{len(result['rounds'])}; goal >= 0.7)")
    if result["filtered_ratio"] is not None:
        each = ", ".join(f"{r['filtered']['seconds']:.2f} s" for r in result["rounds"])
        print(f"with targets/limit: ferry/xargs {result['filtered_ratio']:.2f} (rounds: {each}); "
              f"{result['filtered_ratio'] / result['ratio']:.2f} of the plain ratio "
              "(goal >= 0.9)")
    print(f"job created -> first task running: p50 {result['latency_p50_ms']:.1f} ms, "
          f"min {min(latency):.1f}, max {max(latency):.1f} over {len(latency)} jobs "
          "(goal p50 <= 50 ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--bucket-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--postgres", action="store_true",
                        help="also on PostgreSQL, as ratios of SQLite's figures")
    parser.add_argument("--hubs", type=int, choices=(1, 2), default=1,
                        help="hub processes on PostgreSQL (2: behind nginx)")
    parser.add_argument("--targets", nargs="+", metavar="T",
                        help="also run each round's job with these compute targets")
    parser.add_argument("--limit", action="store_true",
                        help="that job (or, without --targets, the same job) holds a limit "
                        "and max_lanes that never hold it back")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-dispatch-"))
    results: dict[str, Any] = {"tasks": args.tasks, "bucket_size": args.bucket_size}
    drop = None
    try:
        results["sqlite"] = measured(tmp / "sqlite", args, None, 1)
        if args.postgres:
            uri, drop = postgres_database()
            results["hubs"] = args.hubs
            results["postgres"] = measured(tmp / "postgres", args, uri, args.hubs)
    finally:
        if drop is not None:
            drop()
        shutil.rmtree(tmp, ignore_errors=True)

    heading = (f"{args.tasks} tasks of `true`, 2 in parallel (ferry: 1 agent, 2 lanes, "
               f"buckets of {args.bucket_size})")
    print_rounds(f"{heading}, one hub on SQLite:", results["sqlite"], args.tasks)
    if args.postgres:
        pg, lite = results["postgres"], results["sqlite"]
        where = "one hub" if args.hubs == 1 else f"{args.hubs} hubs behind nginx"
        print()
        print_rounds(f"{heading}, {where} on PostgreSQL:", pg, args.tasks)
        results["pg_throughput_ratio"] = pg["ratio"] / lite["ratio"]
        results["pg_latency_ratio"] = pg["latency_p50_ms"] / lite["latency_p50_ms"]
        print(f"\nPostgreSQL ({where}) / SQLite (one hub): throughput "
              f"{results['pg_throughput_ratio']:.2f} (each against xargs in its own rounds; "
              f"{pg['tasks_per_second']:.0f} against {lite['tasks_per_second']:.0f} tasks/s), "
              f"first task p50 latency {results['pg_latency_ratio']:.2f} "
              f"({pg['latency_p50_ms']:.1f} against {lite['latency_p50_ms']:.1f} ms)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
