"""Docker runs through a hub and one agent, against plain ``docker run --rm`` in a shell loop.

One hub (SQLite) and one agent with a ``docker:`` section (``--slots``, 1 by
default: one run at a time, like the loop), the node of the one organization
of a collaboration that is not encrypted. N docker jobs (one run each) of
``ferry-test/busybox:1`` writing ``hi`` to ``/ferry/output/result`` are
submitted back to back: from the first submit to the hub's ``finished`` stamp
of the last job, over N. Right before, ``docker run --rm --network none`` of
the image runs ``echo hi`` N times in a bash loop, over N. The engine's events
(each container's create, start, die, destroy) show where a run's time goes.
Every Ferry run must end done with the result ``hi\\n``.

    .venv/bin/python bench/docker_runs.py                 # 50 runs
    .venv/bin/python bench/docker_runs.py --runs 100 --rounds 3 --json out.json

``bash scripts/docker.sh`` makes the engine and the image (run here when
``docker`` does not answer or has no image). Goal (printed, not asserted):
ferry/docker time per run at most 1.2.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
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
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import start_ferry, stop_process
from hub import Session

PASSWORD = "bench-root-password"
USER_PASSWORD = "a-long-Bench-passphrase-7"
IMAGE = "ferry-test/busybox:1"
ORG = "Bench"
COLLAB = "bench"
ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.2


def ensure_docker() -> None:
    """The engine answers and has the image; else ``scripts/docker.sh`` makes them."""
    if shutil.which("docker") and subprocess.run(["docker", "image", "inspect", IMAGE],
                                                 capture_output=True, check=False).returncode == 0:
        return
    print("no docker or no image; running `bash scripts/docker.sh`", file=sys.stderr)
    if subprocess.run(["bash", str(ROOT / "scripts" / "docker.sh")], check=False).returncode:
        sys.exit("no Docker engine with the test image: run `bash scripts/docker.sh` "
                 "(as root, or with sudo) and try again")


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).replace(tzinfo=UTC).timestamp()


class Events:
    """The engine's container events, followed live from now until ``stop`` (replaying them
    with ``since`` returns only the engine's last few hundred)."""

    def __init__(self, filters: dict[str, str]) -> None:
        self.client = docker.from_env()
        self.stream = self.client.events(decode=True, filters={"type": "container", **filters})
        self.events: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream closed under it
            self.events.extend(self.stream)  # one by one, as they come

    def stop(self, skip: str = "") -> list[dict[str, Any]]:
        """Each container's create/start/die/destroy times and Ferry's run id (its label)."""
        time.sleep(0.5)  # the last container's destroy event on its way
        self.stream.close()
        self.thread.join(5)
        self.client.close()
        seen: dict[str, dict[str, Any]] = defaultdict(dict)
        for e in self.events:
            attributes = e["Actor"]["Attributes"]
            if e["Action"] in ("create", "start", "die", "destroy") and not (
                    skip and attributes.get("name", "").startswith(skip)):
                seen[e["id"]][e["Action"]] = e["timeNano"] / 1e9
                seen[e["id"]]["run"] = attributes.get("ferry.run", "")
        return sorted((t for t in seen.values() if len(t) == 5), key=lambda t: t["create"])


def phases(lines: list[dict[str, Any]]) -> dict[str, float]:
    """Mean ms of a container's steps and from one's end to the next (they add up, serially)."""
    def mean(values: list[float]) -> float:
        return 1000 * statistics.fmean(values) if values else float("nan")
    return {"create>start": mean([t["start"] - t["create"] for t in lines]),
            "start>die": mean([t["die"] - t["start"] for t in lines]),
            "die>destroy": mean([t["destroy"] - t["die"] for t in lines]),
            "destroy>next create": mean([b["create"] - a["destroy"]
                                         for a, b in itertools.pairwise(lines)])}


def docker_loop(runs: int) -> dict[str, Any]:
    script = (f"for i in $(seq {runs}); do docker run --rm --network none {IMAGE} "
              "sh -c 'echo hi'; done")
    events = Events({"image": IMAGE})
    t0 = time.time()
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    t1 = time.time()
    lines = events.stop(skip="ferry-")  # not the containers of Ferry's tests, if any run
    if out.stdout != "hi\n" * runs:
        raise RuntimeError(f"the docker loop printed {out.stdout[:200]!r}")
    return {"seconds": t1 - t0, "ms_per_run": 1000 * (t1 - t0) / runs,
            "containers": len(lines), "phases_ms": phases(lines)}


def start_fleet(tmp: Path, slots: int) -> tuple[list[subprocess.Popen[bytes]], Session, str]:
    """A hub, an organization in a collaboration that is not encrypted, a researcher of it,
    its node, and that node's agent with docker runs on; returns the researcher's session."""
    quiet = {"logging": {"level": "WARNING"}}
    hub, info = start_ferry("hub", tmp, {"ip": "127.0.0.1", "port": 0, **quiet},
                            {"FERRY_ROOT_PASSWORD": PASSWORD})
    procs = [hub]
    try:
        url = info["url"]
        root = Session(url, username="root", password=PASSWORD)
        root.create("Organization", {"name": ORG})
        root.create("Collaboration", {"name": COLLAB, "encrypted": False, "organizations": [ORG]})
        root.create("User", {"username": "bench", "password": USER_PASSWORD,
                             "organization": ORG, "roles": ["researcher"],
                             "email": "bench@example.org"})
        key = root.create("Node", {"name": "bench node", "organization": ORG,
                                   "collaboration": COLLAB})["api_key"]
        agent, ainfo = start_ferry("agent", tmp, {"hub": url, "api_key": key, "transfer": False,
                                                  "docker": {"slots": slots, "images": {
                                                      "names": [IMAGE]}}, **quiet})
        procs.append(agent)
        for _ in range(600):  # its docker runs ready, and the hub knows it online
            with urllib.request.urlopen(f"{ainfo['status_url']}/status.json", timeout=10) as r:
                if (json.load(r).get("docker") or {}).get("ready") and \
                        root.find("Client where type=5 AND status=online"):
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("the agent's docker runs are not ready within 60 s")
        return procs, Session(url, username="bench", password=USER_PASSWORD), ainfo["agent_id"]
    except BaseException:
        for proc in reversed(procs):
            stop_process(proc)
        raise


def ferry_runs(session: Session, agent_id: str, runs: int, code: str) -> dict[str, Any]:
    body = {"code": code, "collaboration": COLLAB, "docker": {
        "image": IMAGE, "command": ["sh", "-c", "echo hi > /ferry/output/result"],
        "organizations": [{"organization": ORG, "input": "x"}]}}
    events = Events({"label": f"ferry.agent={agent_id}"})
    t0 = time.time()
    ids = [session.create("Job", body)["id"] for _ in range(runs)]
    submitted = time.time() - t0
    active = f"Job where code={code} AND status!=done AND status!=failed AND status!=aborted"
    while session.find(active):  # a user's pace: 0.1 s between looks
        time.sleep(0.1)
    lines = events.stop()
    jobs = {j["id"]: j for j in session.find(f"Job where code={code}")}
    tasks = [(i, t) for i in ids for t in session.find(
        f"Task where job.id={i}", attributes=["status", "result", "message"])]
    bad = [(t["status"], t.get("result"), t.get("message")) for _, t in tasks
           if t["status"] != "done" or t.get("result") != "hi\n"]
    if set(jobs) != set(ids) or len(tasks) != runs or bad or \
            any(j["status"] != "done" for j in jobs.values()):
        raise RuntimeError(f"{len(jobs)}/{runs} jobs, {len(tasks)} runs; not done with "
                           f"'hi\\n': {len(bad)}, e.g. {bad[:3]}")
    end = max(epoch(j["finished"]) for j in jobs.values())
    out: dict[str, Any] = {"seconds": end - t0, "ms_per_run": 1000 * (end - t0) / runs,
                           "submit_seconds": submitted, "containers": len(lines),
                           "phases_ms": phases(lines)}
    by_run = {c["run"]: c for c in lines}
    if set(by_run) == {t["id"] for _, t in tasks}:  # the agent's stamps and the hub's
        steps = out["phases_ms"]
        steps["run started>create"] = 1000 * statistics.fmean(
            by_run[t["id"]]["create"] - epoch(t["started"]) for _, t in tasks)
        steps["destroy>job finished"] = 1000 * statistics.fmean(  # the report; off the path
            epoch(jobs[j]["finished"]) - by_run[t["id"]]["destroy"] for j, t in tasks)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--slots", type=int, default=1, help="the agent's docker slots")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of loop then ferry")
    parser.add_argument("--warmup", type=int, default=3, help="runs of each before timing")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    ensure_docker()
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-docker-"))
    results: dict[str, Any] = {"runs": args.runs, "slots": args.slots, "image": IMAGE,
                               "load_average": os.getloadavg(), "rounds": []}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs, session, agent_id = start_fleet(tmp, args.slots)
        if args.warmup:
            docker_loop(args.warmup)
            ferry_runs(session, agent_id, args.warmup, "warmup")
        for n in range(args.rounds):
            base = docker_loop(args.runs)
            ours = ferry_runs(session, agent_id, args.runs, f"round{n}")
            results["rounds"].append({"docker": base, "ferry": ours,
                                      "ratio": ours["ms_per_run"] / base["ms_per_run"]})
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{args.runs} runs of {IMAGE} `echo hi` (ferry: 1 hub on SQLite, 1 agent, "
          f"{args.slots} docker slot(s); docker: `docker run --rm --network none` in a bash loop; "
          f"load average before: {results['load_average'][0]:.2f})")
    print(f"{'round':>5} {'docker s':>9} {'ms/run':>7}   {'ferry s':>8} {'ms/run':>7}   ratio")
    for n, r in enumerate(results["rounds"], 1):
        d, f = r["docker"], r["ferry"]
        print(f"{n:>5} {d['seconds']:9.2f} {d['ms_per_run']:7.1f}   {f['seconds']:8.2f} "
              f"{f['ms_per_run']:7.1f}   {r['ratio']:.2f}")
    last = results["rounds"][-1]
    print(f"mean ms per container step, last round (engine events{', runs overlapping' * (args.slots > 1)}"
          f"; ferry submitted its {args.runs} jobs in {last['ferry']['submit_seconds']:.2f} s):")
    for step, f in last["ferry"]["phases_ms"].items():
        d = last["docker"]["phases_ms"].get(step)
        print(f"  {step:22} docker {'-' if d is None else f'{d:.1f}':>7}   ferry {f:7.1f}")
    results["ratio"] = statistics.median(r["ratio"] for r in results["rounds"])
    print(f"ratio ferry/docker time per run: {results['ratio']:.2f} (median of "
          f"{len(results['rounds'])}; goal <= {GOAL}: "
          f"{'met' if results['ratio'] <= GOAL else 'not met'})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
