"""Docker runs through a hub and one agent, against plain ``docker run --rm`` in a shell loop.

One hub (SQLite) and one agent with a ``docker:`` section (``--slots``, 1 by
default: runs one after another, like the loop) in a collaboration that is
not encrypted, with one organization and its one node. N docker jobs (one run
each, for that organization) of ``ferry-test/busybox:1`` writing ``hi`` to
``/ferry/output/result`` are submitted back to back; Ferry's time is from the
first submit to the hub's ``finished`` stamp of the last job, over N. Right
before it, ``docker run --rm --network none`` of the same image runs ``echo
hi`` N times in a bash loop, over N. Both runs' containers are then read back
from the engine's events (create, start, die, destroy) to show where a run's
time goes. Every Ferry run must end done with the result ``hi\\n``.

    .venv/bin/python bench/docker_runs.py                 # 50 runs
    .venv/bin/python bench/docker_runs.py --runs 100 --rounds 3 --json out.json

The Docker engine and the image come from ``bash scripts/docker.sh`` (run here
when ``docker`` does not answer or the image is missing).

Goal (printed, not asserted): ferry/docker time per run at most 1.2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
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
    ok = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True,
                        check=False).returncode == 0 if shutil.which("docker") else False
    if ok:
        return
    print("docker does not answer or has no image; running `bash scripts/docker.sh`",
          file=sys.stderr)
    if subprocess.run(["bash", str(ROOT / "scripts" / "docker.sh")], check=False).returncode:
        sys.exit("no Docker engine with the test image: run `bash scripts/docker.sh` "
                 "(as root, or with sudo) and try again")


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).replace(tzinfo=UTC).timestamp()


def timelines(engine: docker.DockerClient, since: float, until: float,
              filters: dict[str, str]) -> list[dict[str, float]]:
    """Each container's create/start/die/destroy times in the window, in creation order."""
    seen: dict[str, dict[str, float]] = defaultdict(dict)
    for e in engine.events(since=int(since) - 1, until=int(until) + 2, decode=True,
                           filters={"type": "container", **filters}):
        at = e["timeNano"] / 1e9
        if since <= at <= until + 1 and e["Action"] in ("create", "start", "die", "destroy"):
            seen[e["id"]][e["Action"]] = at
    return sorted((t for t in seen.values() if len(t) == 4), key=lambda t: t["create"])


def phases(lines: list[dict[str, float]]) -> dict[str, float]:
    """Median ms of each step of a container's life, and between one's end and the next."""
    def med(values: list[float]) -> float:
        return 1000 * statistics.median(values) if values else float("nan")
    return {"create>start": med([t["start"] - t["create"] for t in lines]),
            "start>die": med([t["die"] - t["start"] for t in lines]),
            "die>destroy": med([t["destroy"] - t["die"] for t in lines]),
            "destroy>next create": med([b["create"] - a["destroy"]
                                        for a, b in zip(lines, lines[1:], strict=False)])}


def docker_loop(engine: docker.DockerClient, runs: int) -> dict[str, Any]:
    script = (f"for i in $(seq {runs}); do docker run --rm --network none {IMAGE} "
              "sh -c 'echo hi'; done")
    t0 = time.time()
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    t1 = time.time()
    if out.stdout != "hi\n" * runs:
        raise RuntimeError(f"the docker loop printed {out.stdout[:200]!r}")
    lines = timelines(engine, t0, t1, {"image": IMAGE})
    return {"seconds": t1 - t0, "ms_per_run": 1000 * (t1 - t0) / runs,
            "containers": len(lines), "phases_ms": phases(lines)}


def start_fleet(tmp: Path, slots: int) -> tuple[list[subprocess.Popen[bytes]], Session, str]:
    """A hub, an organization in a collaboration that is not encrypted, a researcher of it,
    its node, and that node's agent with docker runs on; returns the researcher's session."""
    hub, info = start_ferry("hub", tmp, {"ip": "127.0.0.1", "port": 0,
                                         "logging": {"level": "WARNING"}},
                            {"FERRY_ROOT_PASSWORD": PASSWORD})
    procs = [hub]
    try:
        url = info["url"]
        root = Session(url, username="root", password=PASSWORD)
        root.create("Organization", {"name": ORG})
        root.create("Collaboration", {"name": COLLAB, "encrypted": False,
                                      "organizations": [ORG]})
        root.create("User", {"username": "bench", "password": USER_PASSWORD,
                             "organization": ORG, "roles": ["researcher"],
                             "email": "bench@example.org"})
        key = root.create("Node", {"name": "bench node", "organization": ORG,
                                   "collaboration": COLLAB})["api_key"]
        agent, ainfo = start_ferry("agent", tmp, {
            "hub": url, "api_key": key, "transfer": False, "logging": {"level": "WARNING"},
            "docker": {"slots": slots, "images": {"names": [IMAGE]}}})
        procs.append(agent)
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(f"{ainfo['status_url']}/status.json", timeout=10) as r:
                if (json.load(r).get("docker") or {}).get("ready") and \
                        root.find("Client where type=5 AND status=online"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the agent's docker runs are not ready: "
                                   f"{(tmp / 'agent-bench.out').read_text()[-2000:]}")
            time.sleep(0.1)
        return procs, Session(url, username="bench", password=USER_PASSWORD), ainfo["agent_id"]
    except BaseException:
        for proc in reversed(procs):
            stop_process(proc)
        raise


def ferry_runs(session: Session, engine: docker.DockerClient, agent_id: str, runs: int,
               code: str) -> dict[str, Any]:
    body = {"code": code, "collaboration": COLLAB, "docker": {
        "image": IMAGE, "command": ["sh", "-c", "echo hi > /ferry/output/result"],
        "organizations": [{"organization": ORG, "input": "x"}]}}
    t0 = time.time()
    ids = [session.create("Job", body)["id"] for _ in range(runs)]
    submitted = time.time() - t0
    while session.find(f"Job where code={code}"):  # a user's pace: 0.1 s between looks
        time.sleep(0.1)
    waited = time.time()
    jobs = {j["id"]: j for j in session.find(f"Job where code={code}", finished=True)}
    tasks = [t for i in ids for t in session.find(f"Task where job.id={i}")]
    bad = [(t["status"], t.get("result"), t.get("message")) for t in tasks
           if t["status"] != "done" or t.get("result") != "hi\n"]
    if set(jobs) != set(ids) or len(tasks) != runs or bad:
        raise RuntimeError(f"{len(jobs)}/{runs} jobs, {len(tasks)} runs; not done with "
                           f"'hi\\n': {len(bad)}, e.g. {bad[:3]}")
    if any(j["status"] != "done" for j in jobs.values()):
        raise RuntimeError(f"jobs not done: {[j['status'] for j in jobs.values()]}")
    end = max(epoch(j["finished"]) for j in jobs.values())
    lines = timelines(engine, t0, waited, {"label": f"ferry.agent={agent_id}"})
    started = sorted(epoch(t["started"]) for t in tasks)
    out: dict[str, Any] = {"seconds": end - t0, "ms_per_run": 1000 * (end - t0) / runs,
                           "submit_seconds": submitted, "containers": len(lines),
                           "phases_ms": phases(lines)}
    if len(lines) == runs:  # the agent's "started" stamp, then its container's create
        out["phases_ms"]["run started>create"] = 1000 * statistics.median(
            c["create"] - s for s, c in zip(started, lines, strict=True))
        out["phases_ms"]["destroy>hub finished"] = 1000 * statistics.median(
            epoch(t["finished"]) - c["destroy"] for t, c in zip(
                sorted(tasks, key=lambda t: epoch(t["started"])), lines, strict=True))
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
    engine = docker.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-docker-"))
    results: dict[str, Any] = {"runs": args.runs, "slots": args.slots, "image": IMAGE,
                               "rounds": []}
    try:
        procs, session, agent_id = start_fleet(tmp, args.slots)
        try:
            if args.warmup:
                docker_loop(engine, args.warmup)
                ferry_runs(session, engine, agent_id, args.warmup, "warmup")
            for n in range(args.rounds):
                base = docker_loop(engine, args.runs)
                ours = ferry_runs(session, engine, agent_id, args.runs, f"round{n}")
                results["rounds"].append({"docker": base, "ferry": ours,
                                          "ratio": ours["ms_per_run"] / base["ms_per_run"]})
        finally:
            for proc in reversed(procs):
                stop_process(proc)
    finally:
        engine.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{args.runs} runs of {IMAGE} `echo hi` (ferry: 1 hub on SQLite, 1 agent, "
          f"{args.slots} docker slot(s); docker: `docker run --rm --network none` in a bash loop)")
    print(f"{'round':>5} {'docker s':>9} {'ms/run':>7}   {'ferry s':>8} {'ms/run':>7}   ratio")
    for n, r in enumerate(results["rounds"], 1):
        d, f = r["docker"], r["ferry"]
        print(f"{n:>5} {d['seconds']:9.2f} {d['ms_per_run']:7.1f}   {f['seconds']:8.2f} "
              f"{f['ms_per_run']:7.1f}   {r['ratio']:.2f}")
    last = results["rounds"][-1]
    print(f"median ms per container step, last round (engine events; ferry submitted its "
          f"{args.runs} jobs in {last['ferry']['submit_seconds']:.2f} s):")
    steps = dict.fromkeys([*last["docker"]["phases_ms"], *last["ferry"]["phases_ms"]])
    for step in steps:
        d, f = (last[k]["phases_ms"].get(step) for k in ("docker", "ferry"))
        print(f"  {step:22} docker {'-' if d is None else f'{d:7.1f}':>7}   "
              f"ferry {'-' if f is None else f'{f:7.1f}':>7}")
    results["ratio"] = statistics.median(r["ratio"] for r in results["rounds"])
    verdict = "met" if results["ratio"] <= GOAL else "not met"
    print(f"ratio ferry/docker time per run: {results['ratio']:.2f} (median of "
          f"{len(results['rounds'])}; goal <= {GOAL}: {verdict})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
