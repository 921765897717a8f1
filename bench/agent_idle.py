"""Idle cost of one Ferry agent, next to a standard tool's idle daemon.

Starts a real hub and one enrolled agent on loopback (all state in a temporary folder),
waits for the agent's first check-in plus a short warm-up, then samples for ``--seconds``
(default 60) the agent process, an idle ``rsync --daemon`` (the baseline) and a bare asyncio
Python process (the "python floor"), all over the same window.  Reported per process: resident
memory (RSS, MiB, at the end and the peak of one-second samples) and CPU as a percentage of one
core, i.e. (user + system CPU seconds spent in the window) / wall seconds * 100.  The hub is not
measured.  Goals are printed, never asserted; the exit status is 0 whatever the numbers.

Run from the project root:

    .venv/bin/python bench/agent_idle.py --seconds 60 [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from hub import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ensure, free_port, isolated_env, start_ferry, stop_process

PASSWORD = "bench-root-password-0123"
MIB = 1024 * 1024
GOAL_RSS_MB = 60.0
GOAL_CPU_PCT = 0.5
WARMUP_S = 5.0


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Runner:
    """Starts processes with their output in ``workdir`` and stops them all on close."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.out", "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    env=isolated_env(self.workdir))
        self.procs.append(proc)
        return proc

    def ferry(self, kind: str, name: str, section: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        proc, info = start_ferry(kind, self.workdir, section, {"FERRY_ROOT_PASSWORD": PASSWORD},
                                 name=name)
        self.procs.append(proc)
        return proc.pid, info

    def close(self) -> None:
        """Newest first: the agent says goodbye to a hub that still listens."""
        for proc in reversed(self.procs):
            stop_process(proc, timeout=10)


def agent_status(status_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{status_url}/status.json", timeout=5) as resp:
        return json.load(resp)  # type: ignore[no-any-return]


def start_rsync(runner: Runner, tmp: Path) -> int:
    ensure("rsync", "rsync")
    port, module = free_port(), tmp / "rsync-module"
    module.mkdir()
    conf = tmp / "rsyncd.conf"
    conf.write_text(f"port = {port}\naddress = 127.0.0.1\npid file = {tmp / 'rsyncd.pid'}\n"
                    f"log file = {tmp / 'rsyncd.log'}\nuse chroot = no\n\n"
                    f"[bench]\n    path = {module}\n    read only = yes\n")
    proc = runner.start("rsync", ["rsync", "--daemon", "--no-detach", f"--config={conf}"])
    wait_for(lambda: proc.poll() is not None or port_open(port), "rsync daemon to listen")
    if proc.poll() is not None:
        raise RuntimeError(f"rsync daemon exited with {proc.returncode}")
    return proc.pid


def measure(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """Sample every process once a second over one shared window."""
    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    peak = dict.fromkeys(procs, 0)
    cpu0 = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        time.sleep(min(1.0, end - now))
        for name, p in procs.items():
            peak[name] = max(peak[name], p.memory_info().rss)
    wall = time.monotonic() - start
    results = {}
    for name, p in procs.items():
        rss = p.memory_info().rss
        cpu = sum(p.cpu_times()[:2]) - cpu0[name]
        results[name] = {"pid": p.pid, "rss_end_mb": rss / MIB, "rss_peak_mb": max(peak[name], rss) / MIB,
                         "cpu_seconds": cpu, "cpu_pct": cpu / wall * 100, "wall_seconds": wall}
    return results


def report(results: dict[str, dict[str, float]], notes: list[str]) -> dict[str, Any]:
    print(f"\n{'process':<14}{'pid':>8}{'RSS end MiB':>13}{'RSS peak MiB':>14}{'CPU s':>8}"
          f"{'CPU % of 1 core':>17}")
    for name, r in results.items():
        print(f"{name:<14}{r['pid']:>8}{r['rss_end_mb']:>13.1f}{r['rss_peak_mb']:>14.1f}"
              f"{r['cpu_seconds']:>8.2f}{r['cpu_pct']:>17.3f}")
    agent, rsync = results["ferry agent"], results["rsync daemon"]
    rss_ratio = agent["rss_end_mb"] / rsync["rss_end_mb"]
    print(f"\nagent/rsync RSS ratio: {rss_ratio:.2f}")
    cpu_ratio: float | None = None
    if rsync["cpu_seconds"] > 0:
        cpu_ratio = agent["cpu_pct"] / rsync["cpu_pct"]
        print(f"agent/rsync CPU ratio: {cpu_ratio:.2f}")
    else:
        print(f"agent/rsync CPU ratio: n/a (rsync used 0 CPU in the window; "
              f"agent {agent['cpu_pct']:.3f} % vs rsync {rsync['cpu_pct']:.3f} %)")
    rss_met = agent["rss_end_mb"] < GOAL_RSS_MB and agent["rss_peak_mb"] < GOAL_RSS_MB
    cpu_met = agent["cpu_pct"] < GOAL_CPU_PCT
    print(f"goal: RSS < {GOAL_RSS_MB:.0f} MB, CPU < {GOAL_CPU_PCT} % of one core")
    print(f"  RSS: {'met' if rss_met else 'NOT met'} (peak {agent['rss_peak_mb']:.1f} MiB); "
          f"CPU: {'met' if cpu_met else 'NOT met'} ({agent['cpu_pct']:.3f} %)")
    notes.append(f"CPU time resolution is one clock tick ({1000 / os.sysconf('SC_CLK_TCK'):.0f} ms), "
                 "so 0.000 % means less than one tick in the window")
    for note in notes:
        print(f"note: {note}")
    return {"processes": results, "rss_ratio": rss_ratio, "cpu_ratio": cpu_ratio,
            "goals": {"rss_mb": GOAL_RSS_MB, "cpu_pct": GOAL_CPU_PCT, "rss_met": rss_met,
                      "cpu_met": cpu_met}, "notes": notes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the idle window")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ferry-idle-"))
    runner = Runner(tmp)
    try:
        _, hub = runner.ferry("hub", "benchhub", {"ip": "127.0.0.1", "port": 0, "checkin_interval": 15})
        key = Session(hub["url"], username="root", password=PASSWORD).create(
            "Node", {"name": "idle-bench"})["api_key"]
        agent_pid, agent = runner.ferry("agent", "benchagent", {
            "hub": hub["url"], "api_key": key, "transfer_ip": "127.0.0.1"})
        wait_for(lambda: agent_status(agent["status_url"]).get("checkins", 0) >= 1,
                 "the agent's first check-in")
        pids = {"ferry agent": agent_pid, "rsync daemon": start_rsync(runner, tmp),
                "python floor": runner.start("floor", [
                    sys.executable, "-c", "import asyncio; asyncio.run(asyncio.sleep(1e9))"]).pid}
        time.sleep(WARMUP_S)
        before = agent_status(agent["status_url"])
        print(f"agent online (status {before.get('status')!r}, {before.get('checkins')} check-ins); "
              f"measuring for {args.seconds:g} s ...", flush=True)
        results = measure(pids, args.seconds)
        after = agent_status(agent["status_url"])
        notes = [f"agent check-ins during window: {after['checkins'] - before['checkins']} "
                 f"(hub checkin_interval 15 s), status {after.get('status')!r} at the end"]
        if children := psutil.Process(agent_pid).children(recursive=True):
            notes.append(f"agent has {len(children)} child process(es), not counted")
        data = report(results, notes)
        data["seconds"] = args.seconds
        if args.json:
            args.json.write_text(json.dumps(data, indent=2) + "\n")
    finally:
        runner.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
