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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import start_ferry, stop_process
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


def cpu_seconds(procs: list[psutil.Process]) -> dict[str, float]:
    """CPU of the hub, the agent, and the agent's children already reaped (its tasks)."""
    hub, agent = (p.cpu_times() for p in procs)
    return {"hub": hub.user + hub.system + hub.children_user + hub.children_system,
            "agent": agent.user + agent.system,
            "tasks": agent.children_user + agent.children_system}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).replace(tzinfo=UTC).timestamp()


def ferry_run(session: Session, count: int, bucket_size: int,
              procs: list[psutil.Process]) -> dict[str, Any]:
    cpu_before = cpu_seconds(procs)
    created = time.time()
    started = time.perf_counter()
    job = session.create("Job", {"code": "bench", "compute": {
        "command": ["true"], "items": f"1-{count}", "bucket_size": bucket_size, "retries": 0}})
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
            "cpu": {k: v - cpu_before[k] for k, v in cpu_seconds(procs).items()}}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--bucket-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-dispatch-"))
    procs = []
    results: dict[str, Any] = {"tasks": args.tasks, "bucket_size": args.bucket_size}
    try:
        hub, info = start_ferry("hub", tmp, {"ip": "127.0.0.1", "port": 0,
                                             "logging": {"level": "WARNING"}},
                                {"FERRY_ROOT_PASSWORD": PASSWORD})
        procs.append(hub)
        session = Session(info["url"], username="root", password=PASSWORD)
        key = session.create("Node", {"name": "bench"})["api_key"]
        agent, _ = start_ferry("agent", tmp, {"hub": info["url"], "api_key": key, "lanes": 2,
                                              "transfer_ip": "127.0.0.1",
                                              "logging": {"level": "WARNING"}})
        procs.append(agent)
        measured = [psutil.Process(hub.pid), psutil.Process(agent.pid)]
        while not session.find("Client where type=5 AND status=online"):
            time.sleep(0.1)
        ferry_run(session, 50, args.bucket_size, measured)  # warm up: imports, first claims
        rounds = []
        for _ in range(args.rounds):
            x_seconds, x_cpu = xargs_run(args.tasks)
            run = ferry_run(session, args.tasks, args.bucket_size, measured)
            rounds.append({"xargs_seconds": x_seconds, "xargs_cpu": x_cpu, "ferry": run,
                           "ratio": x_seconds / run["seconds"]})
        results["rounds"] = rounds
        results["latency_ms"] = first_task_latency(session, args.latency_runs)
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    latency = results["latency_ms"]
    results["ratio"] = statistics.median(r["ratio"] for r in rounds)
    results["latency_p50_ms"] = statistics.median(latency)
    print(f"{args.tasks} tasks of `true`, 2 in parallel (ferry: 1 agent, 2 lanes, "
          f"buckets of {args.bucket_size}):")
    print(f"{'round':>5}  {'xargs s':>8} {'tasks/s':>8} {'cpu ms/task':>11}   "
          f"{'ferry s':>8} {'tasks/s':>8} {'cpu ms/task: hub+agent+tasks':>30} "
          f"{'last ended s':>12}   ratio")
    for n, r in enumerate(rounds, 1):
        f = r["ferry"]
        per = {k: 1000 * v / args.tasks for k, v in f["cpu"].items()}
        split = (f"{sum(per.values()):.3f} = {per['hub']:.2f}+{per['agent']:.2f}+"
                 f"{per['tasks']:.2f}")
        print(f"{n:>5}  {r['xargs_seconds']:8.2f} {args.tasks / r['xargs_seconds']:8.0f} "
              f"{1000 * r['xargs_cpu'] / args.tasks:11.3f}   {f['seconds']:8.2f} "
              f"{args.tasks / f['seconds']:8.0f} {split:>30} "
              f"{f['executed_seconds']:12.2f}   {r['ratio']:.2f}")
    print(f"throughput ratio ferry/xargs: {results['ratio']:.2f} (median of {len(rounds)}; "
          "goal >= 0.7)")
    print(f"job created -> first task running: p50 {results['latency_p50_ms']:.1f} ms, "
          f"min {min(latency):.1f}, max {max(latency):.1f} over {len(latency)} jobs "
          "(goal p50 <= 50 ms)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
