"""The ``ferry hub`` and ``ferry agent`` verbs, run as a user runs them."""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from hub import Session
from tests.helpers import ROOT_PASSWORD, ferry, wait_for

pytestmark = pytest.mark.slow  # runs `ferry` processes


def config_dir(env: dict[str, str], kind: str) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "ferry" / kind


def test_hub_and_agent_lifecycle(env: dict[str, str]) -> None:
    made = ferry("hub", "new", "--name", "h1", "--port", "0", "--user", "--no-input", env=env)
    assert made.returncode == 0, made.stderr
    hub_config = config_dir(env, "hub") / "h1.yaml"
    assert yaml.safe_load(hub_config.read_text())["application"]["port"] == 0

    started = ferry("hub", "start", "--name", "h1", "--user", env=env)
    assert started.returncode == 0, started.stderr
    assert re.search(r"hub 'h1' started \(pid \d+\)", started.stdout)
    url = re.search(r"url:\s+(http://\S+)/api/v1", started.stdout).group(1)  # type: ignore[union-attr]

    listed = ferry("hub", "list", env=env)
    assert re.search(r"h1\s+user\s+running \(pid \d+\)\s+" + re.escape(url), listed.stdout)
    files = ferry("hub", "files", "--user", env=env)  # the only hub: no --name needed
    assert str(hub_config) in files.stdout and "h1.log" in files.stdout
    version = ferry("hub", "version", "--name", "h1", "--user", env=env)
    assert "ferry 0.1.0" in version.stdout and "protocol ferry-v1" in version.stdout
    again = ferry("hub", "start", "--name", "h1", "--user", env=env)
    assert again.returncode == 1 and "already running" in again.stderr

    session = Session(url, username="root", password=ROOT_PASSWORD)
    key = session.create("Node", {"name": "render01"})["api_key"]
    made = ferry("agent", "new", "--name", "a1", "--hub", url, "--api-key", key, "--lanes", "2",
                 "--user", "--no-input", env=env)
    assert made.returncode == 0, made.stderr
    agent_config = config_dir(env, "agent") / "a1.yaml"
    assert stat.S_IMODE(agent_config.stat().st_mode) == 0o600  # it holds the key
    started = ferry("agent", "start", "--name", "a1", "--user", env=env)
    assert started.returncode == 0, started.stderr
    assert "status.json" in started.stdout
    client = wait_for(lambda: session.find_one("Client where status=online"), what="online")
    assert ferry("agent", "list", env=env).stdout.count("running") == 1

    stopped = ferry("agent", "stop", "--name", "a1", "--user", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert session.get("Client", client["id"])["status"] == "offline"
    assert "agent stopped" in (Path(env["XDG_STATE_HOME"]) / "ferry/log/agent/a1.log").read_text()
    not_running = ferry("agent", "stop", "--name", "a1", "--user", env=env)
    assert not_running.returncode == 1 and "not running" in not_running.stderr

    assert ferry("hub", "stop", "--name", "h1", "--user", env=env).returncode == 0
    assert "stopped" in ferry("hub", "list", env=env).stdout


def test_stop_force_kills_and_a_new_start_works(env: dict[str, str]) -> None:
    assert ferry("hub", "new", "--name", "h1", "--port", "0", "--user", "--no-input",
                 env=env).returncode == 0
    first = ferry("hub", "start", "--user", env=env)
    pid = int(re.search(r"pid (\d+)", first.stdout).group(1))  # type: ignore[union-attr]
    killed = ferry("hub", "stop", "--force", "--user", env=env)
    assert killed.returncode == 0 and "killed" in killed.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    second = ferry("hub", "start", "--user", env=env)
    assert second.returncode == 0, second.stderr
    assert ferry("hub", "stop", "--user", env=env).returncode == 0


def test_attach_follows_the_log(env: dict[str, str]) -> None:
    assert ferry("hub", "new", "--name", "h1", "--port", "0", "--user", "--no-input",
                 env=env).returncode == 0
    assert ferry("hub", "start", "--user", env=env).returncode == 0
    follower = subprocess.Popen([sys.executable, "-m", "ferry", "hub", "attach", "--user"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                text=True)
    try:
        assert follower.stdout is not None
        line = wait_for(lambda: (out := follower.stdout.readline()) and "hub serving" in out
                        and out, what="log line")  # type: ignore[union-attr]
        assert "INFO" in line
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        ferry("hub", "stop", "--user", env=env)


def test_bad_flags_are_named_and_write_nothing(env: dict[str, str]) -> None:
    cases = [
        (["hub", "new", "--name", "bad/name", "--no-input", "--user"], 2, "invalid --name"),
        (["hub", "new", "--name", "h2", "--port", "99999", "--no-input", "--user"], 2, "--port"),
        (["hub", "new", "--name", "h2", "--port", "x", "--no-input", "--user"], 2,
         "invalid int value"),
        (["agent", "new", "--name", "a2", "--hub", "ftp://x", "--api-key", "k1234567",
          "--no-input", "--user"], 2, "application.hub"),
        (["agent", "new", "--name", "a3", "--no-input", "--user"], 2, "missing value: hub URL"),
        (["agent", "new", "--name", "a4", "--hub", "http://h:1", "--api-key", "k1234567",
          "--lanes", "-1", "--no-input", "--user"], 2, "--lanes"),
        (["hub", "start", "--name", "nope", "--user"], 2, "config file not found"),
        (["hub", "stop", "--user"], 1, "no hub is configured"),
        (["hub", "frobnicate"], 2, "invalid choice"),
        (["hub", "start", "--user", "--system"], 2, "not allowed with argument"),
    ]
    for args, code, needle in cases:
        result = ferry(*args, env=env)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert needle in result.stderr, (args, result.stderr)
    for kind in ("hub", "agent"):
        folder = config_dir(env, kind)
        assert not folder.exists() or list(folder.iterdir()) == []


def test_existing_config_is_kept_and_broken_config_is_named(env: dict[str, str],
                                                             tmp_path: Path) -> None:
    assert ferry("hub", "new", "--name", "h1", "--port", "0", "--user", "--no-input",
                 env=env).returncode == 0
    path = config_dir(env, "hub") / "h1.yaml"
    before = path.read_text()
    again = ferry("hub", "new", "--name", "h1", "--port", "1", "--user", "--no-input", env=env)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert path.read_text() == before

    broken = tmp_path / "broken.yaml"
    broken.write_text("application:\n  port: 0\n  colour: red\n")
    result = ferry("hub", "start", "--config", str(broken), "--user", env=env)
    assert result.returncode == 2
    assert "unknown key" in result.stderr and "application.colour" in result.stderr
    assert str(broken) in result.stderr
    assert "running" not in ferry("hub", "list", env=env).stdout


def test_start_failure_is_reported(env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert ferry("hub", "new", "--name", "h1", "--port", str(port), "--user", "--no-input",
                     env=env).returncode == 0
        result = ferry("hub", "start", "--user", env=env)
    assert result.returncode == 1
    assert "exited with code 2 while starting" in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_new_asks_on_a_terminal(env: dict[str, str]) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ferry", "agent", "new", "--user"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    answers = [("name of the new agent", "ws7"), ("hub URL", "http://127.0.0.1:7799"),
               ("node API key", "fk_typed_at_the_prompt")]
    transcript = ""
    try:
        for prompt, answer in answers:
            deadline = time.monotonic() + 30
            while prompt not in transcript and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    transcript += os.read(master, 1024).decode(errors="replace")
            assert prompt in transcript, transcript
            os.write(master, (answer + "\n").encode())
        assert proc.wait(timeout=30) == 0, transcript
    finally:
        os.close(master)
    section = yaml.safe_load((config_dir(env, "agent") / "ws7.yaml").read_text())["application"]
    assert section["hub"] == "http://127.0.0.1:7799"
    assert section["api_key"] == "fk_typed_at_the_prompt"
    assert "fk_typed_at_the_prompt" not in transcript  # the key is not echoed


def test_background_start_prints_the_new_root_password_once(env: dict[str, str]) -> None:
    del env["FERRY_ROOT_PASSWORD"]
    assert ferry("hub", "new", "--name", "h1", "--port", "0", "--user", "--no-input",
                 env=env).returncode == 0
    first = ferry("hub", "start", "--user", env=env)
    assert first.returncode == 0, first.stderr
    password = re.search(r"root password: (\S+)", first.stdout).group(1)  # type: ignore[union-attr]
    url = re.search(r"url:\s+(http://\S+)/api/v1", first.stdout).group(1)  # type: ignore[union-attr]
    assert Session(url, username="root", password=password).user["username"] == "root"
    output = (Path(env["XDG_STATE_HOME"]) / "ferry/log/hub/h1.out").read_text()
    assert password not in output  # the background child's output file never holds it
    assert ferry("hub", "stop", "--user", env=env).returncode == 0
    again = ferry("hub", "start", "--user", env=env)
    assert again.returncode == 0 and "root password" not in again.stdout
    assert ferry("hub", "stop", "--user", env=env).returncode == 0


def test_a_reader_that_goes_away_is_no_error(env: dict[str, str], tmp_path: Path) -> None:
    """``ferry hub files … | head -1``: once the reader has had enough, ferry stops
    quietly, as Unix tools do (no "Broken pipe", no traceback at exit)."""
    made = ferry("hub", "new", "--name", "h1", "--port", "0", "--user", "--no-input", env=env)
    assert made.returncode == 0, made.stderr
    errors = tmp_path / "stderr"
    for reader in ("head -1", "true"):  # `true` reads nothing: the pipe is gone at once
        piped = subprocess.run(
            ["bash", "-c", f'"$0" -m ferry hub files --name h1 --user 2>"$1" | {reader}; '
             'echo "${PIPESTATUS[0]}"', sys.executable, str(errors)],
            capture_output=True, text=True, env=env, timeout=60, check=False)
        assert errors.read_text() == "", (reader, errors.read_text())
        status = piped.stdout.splitlines()[-1]
        assert status in ("0", "141"), (reader, piped.stdout)  # 141: 128 + SIGPIPE
    assert status == "141"  # with `true`, the pipe was gone before ferry wrote


def test_another_broken_pipe_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A pipe other than standard output breaking (a hub's connection, say) is not the
    reader going away: it is said, and the command fails."""
    from ferry.commands import run

    def talks_to_a_dead_peer(_: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    assert run(talks_to_a_dead_peer, argparse.Namespace()) == 1
    assert capsys.readouterr().err == "error: Broken pipe\n"


def test_new_with_a_config_file_takes_its_name(env: dict[str, str], tmp_path: Path) -> None:
    """``ferry hub new --config X.yaml``: the file's name is the instance's, as for every
    other verb (server-cli.rst: a config outside the default folders is named by
    ``--config`` every time)."""
    path = tmp_path / "studio-hub.yaml"
    made = ferry("hub", "new", "--config", str(path), "--port", "0", "--user", "--no-input",
                 env=env)
    assert made.returncode == 0, made.stderr
    assert f"created hub 'studio-hub' (user level): {path}" in made.stdout
    assert "ferry hub start --name studio-hub" in made.stdout
    assert f"--config {path}" in made.stdout
    files = ferry("hub", "files", "--config", str(path), "--user", env=env)
    assert files.returncode == 0 and "studio-hub" in files.stdout, files.stderr
    bad = ferry("hub", "new", "--config", str(tmp_path / "no good name!.yaml"), "--user",
                "--no-input", env=env)
    assert bad.returncode == 2 and "invalid --name 'no good name!'" in bad.stderr
