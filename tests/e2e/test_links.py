"""Download links through a real hub and a real agent: ``ferry link`` prints the lines, and
curl (pinning the agent's key), wget and aria2c -x4 run as printed get the same bytes; an
interrupted curl download resumes with ``-C -``; an expired link and an altered one are
refused, saying why. The tools are Debian's packages (``.ci/run`` installs them); a test
that lacks one is skipped naming it."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from hub import Session
from tests.helpers import ROOT_PASSWORD, Agent, Hub, ferry, wait_for

MiB = 1 << 20
TOOLS = ("curl", "wget", "aria2c")


@pytest.fixture
def tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: apt-get install curl wget "
                    "aria2; .ci/run installs them)")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shell(line: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_ferry_link_downloads_resumes_and_expires(
        tools: None, hub: Hub, session: Session, node_key: Any, start_agent: Any,
        env: dict[str, str], tmp_path: Path) -> None:
    agent: Agent = start_agent(hub, node_key("fileserver")["api_key"], lanes=1)
    agent_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    root = tmp_path / "projects"
    source = root / "thefilm" / "latest edit.mov"
    source.parent.mkdir(parents=True)
    source.write_bytes(random.randbytes(12 * MiB + 321))
    session.create("Share", {"name": "projects", "client": agent_id, "path": str(root)})
    wait_for(lambda: agent.status()["transfer"]["shares"] == ["projects"], what="served")
    # a link that expires in a second, for the end of the test (30 s of clock skew forgiven)
    short = session.link("share=projects/thefilm/latest edit.mov", expires=1)
    made = time.monotonic()

    user = {**env, "FERRY_HUB": hub.url, "FERRY_USERNAME": "root",
            "FERRY_PASSWORD": ROOT_PASSWORD}
    printed = ferry("link", "share=projects/thefilm/latest edit.mov", "--expires", "2h",
                    env=user)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    url = lines[0]
    assert url.startswith("https://127.0.0.1:") and "?ticket=" in url
    assert "works until" in lines[2] and "(2 h)" in lines[2]
    commands = {line.split()[0]: line for line in lines if line.split()[:1] in
                (["curl"], ["wget"], ["aria2c"])}
    assert set(commands) == set(TOOLS), printed.stdout
    client = session.get("Client", agent_id)
    assert f"--pinnedpubkey {client['transfer']['pin']}" in commands["curl"]
    assert "-x4" in commands["aria2c"]

    for tool, line in commands.items():
        folder = tmp_path / tool
        folder.mkdir()
        done = shell(line, folder)
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        assert sha(folder / "latest edit.mov") == sha(source), tool

    # curl interrupted half-way, then resumed with -C -
    folder = tmp_path / "resumed"
    folder.mkdir()
    partial = folder / "latest edit.mov"
    slow = subprocess.Popen(["bash", "-c", f"exec {commands['curl']} --limit-rate 2M"],
                            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: partial.exists() and partial.stat().st_size >= MiB, what="curl started")
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    assert 0 < partial.stat().st_size < source.stat().st_size
    done = shell(commands["curl"].replace("curl ", "curl -C - ", 1), folder)
    assert done.returncode == 0, done.stderr
    assert sha(partial) == sha(source)

    # altered: another file's name in the URL, or a ticket that is not the hub's
    base, ticket = url.split("?ticket=")
    altered = ticket[:10] + ("B" if ticket[10] == "A" else "A") + ticket[11:]  # its payload
    pin = f"--pinnedpubkey '{client['transfer']['pin']}'"
    for bad, why in ((f"{base[:-4]}.mp4?ticket={ticket}", "ticket for another path"),
                     (f"{base}?ticket={altered}", "forged ticket")):
        done = shell(f"curl -sk {pin} -w '%{{http_code}}' -o body.json '{bad}'", tmp_path)
        assert done.stdout == "403", done
        assert why in json.loads((tmp_path / "body.json").read_text())["error"]["message"]

    # the short link, once it expired (and the clocks' skew with it)
    time.sleep(max(0.0, made + 1 + 30 + 1.5 - time.monotonic()))
    done = shell(f"curl -sk {pin} -w '%{{http_code}}' -o body.json '{short['url']}'", tmp_path)
    assert done.stdout == "403", done
    message = json.loads((tmp_path / "body.json").read_text())["error"]["message"]
    assert message.startswith("link refused: expired ticket"), message
    status = agent.status()["transfer"]
    assert status["refused"] == 3 and status["served_links"] >= 5
    assert "what=ticket who=127.0.0.1" in agent.log()


def test_ferry_link_says_what_is_wrong(hub: Hub, env: dict[str, str]) -> None:
    user = {**env, "FERRY_HUB": hub.url, "FERRY_USERNAME": "root",
            "FERRY_PASSWORD": ROOT_PASSWORD}
    done = ferry("link", "share=nothing/a.mov", env=user)
    assert done.returncode == 1 and "no share named 'nothing'" in done.stderr, done
    done = ferry("link", "share=nothing/a.mov", env={**user, "FERRY_PASSWORD": "wrong"})
    assert done.returncode == 1 and "401" in done.stderr, done
    no_password = {k: v for k, v in user.items() if k != "FERRY_PASSWORD"}
    done = ferry("link", "share=nothing/a.mov", env=no_password, input="")
    assert done.returncode == 1 and "set FERRY_PASSWORD" in done.stderr, done
