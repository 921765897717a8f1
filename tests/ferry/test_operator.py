"""The operator's command line against a real hub and a real agent: ``ferry login``, ``client``,
``job``, ``task``, ``cp`` and ``logout``, as a user types them, with their errors and exit
codes (0 ok, 1 the thing failed, 2 usage, 3 not logged in or refused)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hub import Session
from tests.helpers import ROOT_PASSWORD, Agent, Hub, ferry, wait_for

pytestmark = pytest.mark.one_round("the command line's own behaviour: the hub's storage is "
                                   "tested on both databases elsewhere")

PASSWORD = "a viewer's password 1"


def run(env: dict[str, str], *args: str, stdin: str | None = None, code: int = 0
        ) -> str:
    result = ferry(*args, env=env, input=stdin)
    assert result.returncode == code, (args, result.returncode, result.stdout, result.stderr)
    return result.stdout if code == 0 else result.stderr


def test_an_operator_runs_the_farm_from_the_command_line(
        start_hub: Callable[..., Hub], start_agent: Callable[..., Agent], env: dict[str, str],
        tmp_path: Path) -> None:
    hub = start_hub(heartbeat_interval=0.5)  # a followed log moves on at each heartbeat
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    agent = start_agent(hub, session.create("Node", {"name": "render01"})["api_key"], lanes=2)
    wait_for(lambda: session.find("Client WHERE type=5"), what="the agent's lanes")
    # not logged in yet: every command says so, exit 3
    assert "not logged in" in run(env, "client", "ls", code=3)
    # a wrong password is refused, exit 3, and keeps nothing
    assert "refused" in run(env, "login", hub.url, "--username", "root", "--password-stdin",
                            stdin="wrong\n", code=3)
    assert "not logged in" in run(env, "job", "ls", code=3)
    said = run(env, "login", hub.url, "--username", "root", "--password-stdin",
               stdin=ROOT_PASSWORD + "\n")
    assert said.startswith("logged in to 127.0.0.1-") and "as root" in said

    # the farm
    code = session.get("Client", agent.status()["client_id"])["code"]
    listing = run(env, "client", "ls")
    header = listing.splitlines()[0].split()
    assert header == ["CODE", "TYPE", "STATUS", "CPU", "MEMORY", "LOAD", "LANES", "CHECKIN",
                      "VERSION"]
    row = next(line for line in listing.splitlines() if line.startswith(code + " "))
    assert "online" in row and " 0/2 " in row and "%" in row
    assert code in run(env, "client", "ls", "type!=5")
    lanes = run(env, "client", "ls", "type=5").splitlines()[2:]
    assert sorted(line.split()[0] for line in lanes) == [f"{code}:1", f"{code}:2"]
    assert all(" idle " in line for line in lanes)
    clients = json.loads(run(env, "client", "ls", "type!=5", "--json"))
    assert [c["code"] for c in clients] == [code]
    shown = run(env, "client", "show", code)
    assert re.search(r"^status\s+online$", shown, re.M) and "lanes (2)" in shown
    assert json.loads(run(env, "client", "show", clients[0]["id"], "--json"))["code"] == code
    error = run(env, "client", "ls", "type!=5 AND status=", code=2)
    assert error.startswith("error: bad query:") and "position" in error
    assert "no client 'nosuch'" in run(env, "client", "show", "nosuch", code=2)
    assert "now disabled" in run(env, "client", "disable", code)
    assert session.find_one(f"Client WHERE code={code}")["status"] == "disabled"
    assert "already disabled" in run(env, "client", "disable", code, code=1)
    assert "now online" in run(env, "client", "enable", code)

    # a compute job, from submit to its logs
    session.create("Queue", {"name": "comp", "priority": 700})
    out = run(env, "job", "submit", "--name", "shot010", "--items", "1-6", "--bucket", "3",
              "--env", "SHOT=010", "--priority", "700", "--queue", "comp", "--watch", "--",
              "sh", "-c", "echo frame {item} of $SHOT")
    job_id = out.splitlines()[0]
    assert "100%" in out and "done" in out.splitlines()[-1]
    job = session.get("Job", job_id)
    assert (job["code"], job["status"], job["priority"]) == ("shot010", "done", 700)
    listing = run(env, "job", "ls", f"id={job_id}")
    assert "shot010" in listing and "100%" in listing  # done jobs stay in the active list
    assert re.search(r"\bQUEUE\b", listing) and " comp " in listing
    shown = run(env, "job", "show", job_id)
    assert re.search(r"^tasks\s+6 done$", shown, re.M) and "buckets (2)" in shown
    assert " 1-3 " in shown and " 4-6 " in shown
    assert json.loads(run(env, "job", "show", job_id, "--json"))["counts"] == {"done": 6}
    tasks = json.loads(run(env, "task", "ls", job_id, "--json"))
    assert sorted(t["item"] for t in tasks) == ["1", "2", "3", "4", "5", "6"]
    table = run(env, "task", "ls", job_id)
    assert table.splitlines()[0].split()[:4] == ["ID", "ITEM", "STATUS", "ATTEMPTS"]
    task = next(t for t in tasks if t["item"] == "4")
    assert run(env, "task", "log", task["id"]) == "frame 4 of 010\n"
    assert run(env, "task", "log", task["id"], "--follow") == "frame 4 of 010\n"
    assert run(env, "job", "watch", job_id).rstrip().endswith("done")
    # a log followed while its task runs: every line, once, in order
    slow = run(env, "job", "submit", "--", "sh", "-c",
               "for n in 1 2 3 4 5 6 7 8; do echo step $n; sleep 0.5; done").strip()
    running = wait_for(lambda: session.find_one(
        f"Task WHERE job.id={slow} AND status=executing"), what="the task to run")
    with subprocess.Popen([sys.executable, "-m", "ferry", "task", "log", running["id"],
                           "--follow"], stdout=subprocess.PIPE, text=True, env=env) as follow:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "step 1\n"
        assert session.get("Task", running["id"])["status"] == "executing", "seen live"
        rest = follow.stdout.read()
    assert follow.returncode == 0
    assert "step 1\n" + rest == "".join(f"step {n}\n" for n in range(1, 9))

    # a job that waits for others: show names them with their statuses
    held = run(env, "job", "submit", "--paused", "--after", job_id, "--after-items", slow,
               "--after-failed", "wait", "--", "true").strip()
    assert re.search(rf"^after\s+{job_id} \(done\), items of {slow} \(\w+\); if one "
                     r"fails: wait$", run(env, "job", "show", held), re.M)
    assert "no job 'nosuch' to wait for" in run(env, "job", "submit", "--after", "nosuch",
                                                "--", "true", code=2)
    run(env, "job", "abort", held)

    # pause, resume, abort; a failed job's watch exits 1
    paused = run(env, "job", "submit", "--items", "1-4", "--paused", "--", "sleep", "30")
    paused_id = paused.strip()
    assert session.get("Job", paused_id)["status"] == "paused"
    resumed = run(env, "job", "resume", paused_id)  # the agent may take it at once
    assert re.search(r"^resumed job \S+ \(.*\): now (waiting|running)$", resumed.strip()), resumed
    assert "now paused" in run(env, "job", "pause", paused_id)
    assert "now aborted" in run(env, "job", "abort", paused_id)
    watched = ferry("job", "watch", paused_id, env=env)
    assert watched.returncode == 1 and watched.stdout.rstrip().endswith("aborted")
    failing = ferry("job", "submit", "--watch", "--", "sh", "-c", "exit 3", env=env)
    assert failing.returncode == 1 and failing.stdout.rstrip().endswith("failed")
    assert session.get("Job", failing.stdout.splitlines()[0])["status"] == "failed"

    # errors, one line each, with their codes
    assert "no Job with id 'nosuch'" in run(env, "job", "show", "nosuch", code=1)
    assert "no command" in run(env, "job", "submit", "--items", "1-2", code=2)
    assert "no queue 'nope'" in run(env, "job", "submit", "--queue", "nope", "--", "true",
                                    code=2)
    assert "items" in run(env, "job", "submit", "--items", "5-1", "--", "true", code=2)
    assert run(env, "job", "submit", "--bucket", "x", "--", "true", code=2)  # argparse
    assert "not NAME=VALUE" in run(env, "job", "submit", "--env", "X", "--", "true", code=2)

    # a copy between shares
    source, backup = tmp_path / "projects", tmp_path / "backup"
    (source / "shot010").mkdir(parents=True)
    backup.mkdir()
    (source / "shot010" / "edit.mov").write_bytes(b"x" * 3_000_000)
    for name, path in (("projects", source), ("backup", backup)):
        session.create("Share", {"name": name, "client": clients[0]["id"], "path": str(path)})
    out = run(env, "cp", "share=projects/shot010", "share=backup/", "--watch")
    assert "MB/s" in out and out.splitlines()[-1].endswith("done"), out
    assert (backup / "shot010" / "edit.mov").read_bytes() == b"x" * 3_000_000

    # logging out forgets the token: the next command is refused, exit 3
    assert "logged out of 127.0.0.1-" in run(env, "logout")
    assert "not logged in" in run(env, "job", "ls", code=3)


def test_a_viewer_is_refused_what_its_rules_do_not_allow(
        hub: Hub, session: Session, env: dict[str, str]) -> None:
    org = session.create("Organization", {"name": "Studio"})["id"]
    session.create("User", {"username": "vic", "password": PASSWORD, "organization": org,
                            "roles": ["viewer"]})
    job = session.create("Job", {"compute": {"command": ["true"], "items": "1"},
                                 "status": "paused"})
    run(env, "login", hub.url, "--username", "vic", "--password-stdin", stdin=PASSWORD + "\n")
    # root's job is another organization's: not even seen
    assert job["id"] not in run(env, "job", "ls")
    error = run(env, "job", "abort", job["id"], code=3)
    assert error.startswith("error: refused:"), error
    assert session.get("Job", job["id"])["status"] == "paused", "nothing changed"
    error = run(env, "job", "submit", "--", "true", code=3)
    assert error.startswith("error: refused:")
    assert session.find("Job") == [session.get("Job", job["id"])], "nothing was created"
    # a stored token the hub no longer takes: refused, exit 3, with what to do
    servers = Path(env["XDG_DATA_HOME"]) / "ferry"
    secrets = next(servers.rglob("*secrets*.json"))
    secrets.write_text(re.sub(r'"ey[^"]+"', '"not-a-token"', secrets.read_text()))
    assert "log in" in run(env, "job", "ls", code=3)


def test_login_needs_a_password_and_a_known_hub(hub: Hub, env: dict[str, str]) -> None:
    env = {**env, "FERRY_PASSWORD": ""}
    del env["FERRY_PASSWORD"]
    assert "no username" in run(env, "login", hub.url, code=2)
    assert "no password" in run(env, "login", hub.url, "--username", "root", code=2)
    assert "unknown hub 'nosuch'" in run(env, "login", "nosuch", "--username", "root", code=2)
    assert "cannot reach hub" in run(env, "login", "http://127.0.0.1:9", "--username", "root",
                                     "--password-stdin", stdin="x\n", code=1)
    # a failed login leaves no server behind it
    assert "127.0.0.1-9" not in run(env, "servers", "list")


def test_limits_from_the_command_line(hub: Hub, session: Session, env: dict[str, str]) -> None:
    org = session.create("Organization", {"name": "Studio"})["id"]
    for name, role in (("ada", "organization admin"), ("vic", "viewer")):
        session.create("User", {"username": name, "password": PASSWORD, "organization": org,
                                "roles": [role]})
    run(env, "login", hub.url, "--username", "ada", "--password-stdin", stdin=PASSWORD + "\n")
    assert run(env, "limit", "set", "nuke", "4").strip() == "nuke: max 4 (new)"
    assert run(env, "limit", "set", "nuke", "2").strip() == "nuke: max 2 (0 in use)"
    run(env, "limit", "set", "arnold", "10")
    listing = run(env, "limit", "ls").splitlines()
    assert listing[0].split() == ["NAME", "IN", "USE", "MAX", "MODIFIED"]
    assert [line.split()[:3] for line in listing[2:]] == [["nuke", "0", "2"],
                                                          ["arnold", "0", "10"]]
    assert [x["name"] for x in json.loads(run(env, "limit", "ls", "max>5", "--json"))] == \
        ["arnold"]
    job_id = run(env, "job", "submit", "--limit", "nuke", "--limit", "arnold", "--max-lanes",
                 "3", "--paused", "--", "true").strip()
    shown = run(env, "job", "show", job_id)
    assert re.search(r"^limits\s+arnold, nuke$", shown, re.M), shown
    assert re.search(r"^max lanes\s+3$", shown, re.M), shown

    # errors: usage (2) for bad input, refused (3) for a role without the rule
    assert "MAX must be 0 or more" in run(env, "limit", "set", "nuke", "-1", code=2)
    assert "no limit 'nope'" in run(env, "job", "submit", "--limit", "nope", "--", "true",
                                    code=2)
    assert "max_lanes" in run(env, "job", "submit", "--max-lanes", "0", "--", "true", code=2)
    run(env, "login", hub.url, "--username", "vic", "--password-stdin", stdin=PASSWORD + "\n")
    assert "nuke" in run(env, "limit", "ls")  # a viewer sees them
    assert run(env, "limit", "set", "nuke", "100", code=3).startswith("error: refused:")
    assert run(env, "limit", "set", "mine", "1", code=3).startswith("error: refused:")
    assert [(x["name"], x["max"]) for x in session.find("Limit")] == [("nuke", 2),
                                                                     ("arnold", 10)]
