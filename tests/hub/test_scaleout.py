"""Two hub processes on one PostgreSQL database, behind nginx, serve one fleet.

Agents know one address, nginx's, which passes each request to either hub and skips one
that is down. A claim leases each task to exactly one agent whichever hub answers it, and
killing one hub mid-job loses nothing: the agents go on with the other.

Needs PostgreSQL (``postgres_url`` in conftest.py) and nginx (Debian's package): without
either the test is skipped with the reason, unless FERRY_REQUIRE_POSTGRES=1 (as in CI),
where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub import Session
from tests.helpers import ROOT_PASSWORD, Hub, ended, http, wait_for

pytestmark = pytest.mark.one_round("its hubs are on PostgreSQL in both rounds")

TASKS = 2000
KILL_AT = 1000  # tasks run when one hub is killed
GATED = 1500  # tasks above this item wait for the gate: the job is surely mid-way at the kill


@dataclass
class Balancer:
    """nginx in front of the hubs; ``url`` is what agents and users call."""

    url: str
    access_log: Path

    def answered(self, path: str, since: float = 0.0) -> Counter[str]:
        """How many requests for ``path`` that nginx received after ``since`` (epoch
        seconds) each hub answered, by its address."""
        seen: Counter[str] = Counter()
        for line in self.access_log.read_text().splitlines():
            ended, seconds, status, uri, upstreams = line.split(" ", 4)
            if uri.endswith(path) and status == "200" and \
                    float(ended) - float(seconds) > since:
                seen[upstreams.split(", ")[-1]] += 1  # the last one tried answered
        return seen


def nginx_config(prefix: Path, port: int, hubs: list[str]) -> str:
    """A plain reverse proxy; a hub that refuses connections is skipped (proxy_next_upstream)
    for fail_timeout. Claims long-poll up to 30 s: the read timeout is well above that."""
    servers = "\n".join(f"        server {h} max_fails=1 fail_timeout=10s;" for h in hubs)
    user = "user root;" if os.geteuid() == 0 else ""  # workers write to our own tmp folder
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind}_temp;"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
{temp}
    log_format hub '$msec $request_time $status $request_uri $upstream_addr';
    access_log {prefix}/access.log hub;
    upstream hubs {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://hubs;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_read_timeout 120s;
            proxy_send_timeout 120s;
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[Callable[[list[Hub]], Balancer]]:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                      else None)
    if nginx is None:
        why = "no nginx to balance the hubs (apt-get install nginx)"
        if os.environ.get("FERRY_REQUIRE_POSTGRES") == "1":
            pytest.fail(why)
        pytest.skip(why)
    procs: list[subprocess.Popen[bytes]] = []

    def start(hubs: list[Hub]) -> Balancer:
        import socket

        prefix = tmp_path / "nginx"
        prefix.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(prefix, port, [h.url.removeprefix("http://")
                                                    for h in hubs]))
        with open(prefix / "nginx.out", "wb") as out:
            procs.append(subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf),
                                           "-e", str(prefix / "error.log")],
                                          stdout=out, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            if procs[-1].poll() is not None:
                raise RuntimeError(f"nginx exited: {(prefix / 'error.log').read_text()}")
            try:
                return http("GET", f"{url}/api/v1/openapi.json", timeout=5)[0] == 200
            except OSError:
                return False

        wait_for(serving, what="nginx in front of the hubs")
        return Balancer(url, prefix / "access.log")

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)  # fast shutdown: long-polls need not finish
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_two_hubs_run_every_task_once_and_one_may_die(
        start_hub, postgres_url: str, balancer, start_agent, tmp_path: Path) -> None:
    settings = {"uri": postgres_url, "heartbeat_interval": 0.5, "lease_seconds": 10,
                "trusted_proxies": ["127.0.0.1"]}
    doomed, survivor = start_hub(**settings), start_hub(**settings)  # the first migrates
    lb = balancer([doomed, survivor])
    session = Session(lb.url, username="root", password=ROOT_PASSWORD)
    for n in range(4):
        start_agent(lb, session.create("Node", {"name": f"render{n}"})["api_key"], lanes=2)
    wait_for(lambda: len(session.find("Client where type=2 and status=online")) == 4,
             what="four agents online through nginx")

    ran, gate = tmp_path / "ran.txt", tmp_path / "gate"
    script = (f'if [ {{item}} -gt {GATED} ]; then while [ ! -e {gate} ]; do sleep 0.05; done; '
              f'fi; echo "{{item}} $FERRY_TASK_ID $FERRY_ATTEMPT" >> {ran}')
    job = session.create("Job", {"code": "scale-out", "compute": {
        "command": ["sh", "-c", script], "items": f"1-{TASKS}", "bucket_size": 10,
        "retries": 2}})

    def lines() -> list[str]:
        return ran.read_text().splitlines() if ran.exists() else []

    wait_for(lambda: len(lines()) >= KILL_AT, timeout=300, interval=0.05,
             what=f"{KILL_AT} tasks run")
    address = {hub: hub.url.removeprefix("http://") for hub in (doomed, survivor)}
    assert set(lb.answered("/agent/claim")) == set(address.values()), "both hubs served"
    doomed.proc.send_signal(signal.SIGKILL)  # no drain, no goodbye: the process is gone
    doomed.proc.wait(timeout=30)
    killed = time.time()
    assert not doomed.alive
    # the tasks above GATED cannot end before this: the job was mid-way at the kill
    gate.touch()

    done = wait_for(lambda: ended(session, job["id"]), timeout=600, interval=0.5,
                    what="the job to end with one hub left")
    assert done["status"] == "done" and done["counts"] == {"done": TASKS}, done

    # the tasks' own evidence: each item ran once, and by the task the hub knows for it
    runs = [line.split() for line in lines()]
    per_item = Counter(item for item, _task, _attempt in runs)
    assert per_item == Counter({str(n): 1 for n in range(1, TASKS + 1)}), \
        [item for item, n in per_item.items() if n != 1][:20]
    tasks = session.find(f"task WHERE job.id={job['id']}")
    assert len(tasks) == TASKS
    by_item = {t["item"]: t for t in tasks}
    assert {item: task_id for item, task_id, _ in runs} == {i: t["id"] for i, t in by_item.items()}
    for item, _task_id, attempt in runs:
        task = by_item[item]
        assert task["status"] == "done" and task["exit_code"] == 0, task
        # a lease whose claim answer died with the hub expired unrun (one attempt spent);
        # the run that happened is the one the hub recorded
        assert int(attempt) == task["attempts"] + 1, task
    assert len({t["source"]["client"] for t in tasks}) == 4  # every agent worked

    # the survivor served the rest, claims and reports alike
    for path in ("/agent/claim", "/agent/heartbeat", "/agent/report"):
        after = lb.answered(path, since=killed)
        assert set(after) == {address[survivor]}, (path, after)
    assert survivor.alive
