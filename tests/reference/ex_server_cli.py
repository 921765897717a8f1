"""The examples of server-cli.rst (docs/REFERENCE.md says what each shows)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core import config as configfile
from core.errors import ApiError
from hub.config import HubConfig
from tests.helpers import db_query, ferry, wait_for
from tests.reference.conftest import Ref
from tests.reference.examples import DATA, example

VERBS = ("new", "start", "stop", "files", "attach", "list", "shell", "import", "version")


def no_root_password(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "FERRY_ROOT_PASSWORD"}


def attached(ref: Ref, *args: str, env: dict[str, str] | None = None,
             ) -> tuple[subprocess.Popen[str], Path]:
    """``ferry hub start … --attach`` in this terminal; the process and where it writes."""
    out = ref.tmp / f"attached-{len(list(ref.tmp.glob('attached-*')))}.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "ferry", "hub", "start", *args,
                                 "--attach"], stdout=sink, stderr=subprocess.STDOUT,
                                text=True, env=env or ref.env)
    return proc, out


def stop(proc: subprocess.Popen[str], *args: str, env: dict[str, str]) -> str:
    """``ferry hub stop …`` while this test reaps the attached hub (the stop waits for its
    process to be gone, and an exited child of ours stays until we reap it)."""
    stopping = subprocess.Popen([sys.executable, "-m", "ferry", "hub", "stop", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)
    assert proc.wait(timeout=60) == 0
    said, _ = stopping.communicate(timeout=60)
    assert stopping.returncode == 0, said
    return said


def served(proc: subprocess.Popen[str], out: Path) -> str:
    def up() -> str | None:
        assert proc.poll() is None, out.read_text()
        text = out.read_text()
        return text if "Ctrl-C stops it" in text else None
    return wait_for(up, what="the hub serving")


@example("server-cli: --help")
def cli_help(ref: Ref) -> None:
    result = ferry("hub", "--help", env=ref.env)  # vserver --help
    assert result.returncode == 0
    for verb in VERBS:
        assert re.search(rf"^    {verb} ", result.stdout, re.M), verb


@example("server-cli: quick start (new, start --attach, stop)")
def cli_quick_start(ref: Ref) -> None:
    env = no_root_password(ref.env)
    made = ferry("hub", "new", "--name", "quick", "--user", "--port", "0", "--no-input",
                 env=env)  # vserver new: on no terminal, flags instead of the menu
    assert made.returncode == 0, made.stderr
    proc, out = attached(ref, "--name", "quick", "--user", env=env)
    try:
        text = served(proc, out)
        # Differs: no root/root; a random root password, shown once
        password = re.search(r"root password: (\S+)", text).group(1)  # type: ignore[union-attr]
        url = re.search(r"url:\s+(http://\S+)/api/v1", text).group(1)  # type: ignore[union-attr]
        from hub import Session

        assert Session(url, username="root", password=password).user["username"] == "root"
        with pytest.raises(ApiError):
            Session(url, username="root", password="root").login()
        assert "stopped" in stop(proc, "--name", "quick", "--user", env=env)
    finally:
        proc.kill()


@example("server-cli: available commands")
def cli_commands(ref: Ref) -> None:
    this = ("--name", ref.hub.name, "--user", "--config", str(ref.hub.config_file))
    files = ferry("hub", "files", *this, env=ref.env)
    assert str(ref.hub.config_file) in files.stdout and "ref.log" in files.stdout
    listed = ferry("hub", "list", env=ref.env)
    assert listed.returncode == 0, listed.stderr
    version = ferry("hub", "version", *this, env=ref.env)
    assert "protocol ferry-v1" in version.stdout, version.stdout
    shell_ = ferry("hub", "shell", *this, "-c", "print(len(db.Site.get()))", env=ref.env)
    assert shell_.returncode == 0 and shell_.stdout.strip().isdigit(), shell_.stderr


@example("server-cli: configuration file structure (the example file)")
def cli_config_file(ref: Ref) -> None:
    printed = (DATA / "server-config.yaml").read_text()
    # addresses adapted: this machine only, any free port
    adapted = printed.replace("ip: 0.0.0.0", "ip: 127.0.0.1").replace("port: 5000", "port: 0")
    test = ref.tmp / "test.yaml"
    test.write_text(adapted)
    refused = ferry("hub", "start", "--config", str(test), "--user", env=ref.env)
    # Differs: the example's 17-character jwt_secret_key is refused, saying why and how
    assert refused.returncode == 2
    assert "at key 'environments.test.jwt_secret_key'" in refused.stderr
    assert "at least 32" in refused.stderr and "secrets.token_hex(32)" in refused.stderr
    test.write_text(adapted.replace("super-secret-key!", "a-long-secret-key-" + "k" * 20))
    proc, out = attached(ref, "--config", str(test), "--user")
    try:
        text = served(proc, out)
        # the example loads; vpn_server is accepted and said to be unused
        assert "warning:" in text and "'environments.test.vpn_server' is accepted and not " \
            "used" in text
        assert "hub 'test' running" in text  # named after its file
        log = Path(ref.env["XDG_STATE_HOME"]) / "ferry" / "log" / "hub" / "test.log"
        assert log.exists()  # logging.file: test.log
        data = Path(ref.env["XDG_DATA_HOME"]) / "ferry" / "hub" / "test"
        assert (data / "test.sqlite").exists()  # uri: sqlite:///test.sqlite
        stop(proc, "--config", str(test), "--user", env=ref.env)
    finally:
        proc.kill()


@example("server-cli: configuration wizard (new --user)")
def cli_wizard(ref: Ref) -> None:
    made = ferry("hub", "new", "--user", "--name", "wizard", "--no-input", env=ref.env)
    assert made.returncode == 0, made.stderr
    # the Ubuntu user folder of the table, with ferry for vantage6 and hub for server
    path = Path(ref.env["XDG_CONFIG_HOME"]) / "ferry" / "hub" / "wizard.yaml"
    assert path.exists() and str(path) in made.stdout
    section = yaml.safe_load(path.read_text())["application"]
    assert HubConfig is not None and configfile.load(path, HubConfig).config.port == \
        section["port"]


@example("server-cli: update configuration (files)")
def cli_files(ref: Ref) -> None:
    files = ferry("hub", "files", "--user", "--name", ref.hub.name, "--config",
                  str(ref.hub.config_file), env=ref.env)
    assert files.returncode == 0 and str(ref.hub.config_file) in files.stdout


@example("server-cli: batch import")
def cli_batch_import(ref: Ref) -> None:
    made = ferry("hub", "new", "--name", "batch", "--user", "--port", "0", "--no-input",
                 env=ref.env)
    assert made.returncode == 0, made.stderr
    # vserver import /path/to/file.yaml, with the example file as printed, on a hub that
    # was never started
    result = ferry("hub", "import", str(DATA / "batch-import.yaml"), "--name", "batch",
                   "--user", env=ref.env)
    assert result.returncode == 0, result.stderr
    assert "this hub had never started: made user root" in result.stdout
    assert "created 23, updated 0" in result.stdout
    database = Path(ref.env["XDG_DATA_HOME"]) / "ferry" / "hub" / "batch" / "hub.sqlite"
    users = dict(db_query(database, "SELECT username, role FROM users"))
    assert {"admin", "frank@iknl.nl", "melle@iknl.nl", "stan"} <= set(users)
    # Differs: imported users are not superusers (the warning): the least-privilege role
    assert {users[u] for u in ("admin", "frank@iknl.nl", "stan")} == {"viewer"}
    again = ferry("hub", "import", str(DATA / "batch-import.yaml"), "--name", "batch",
                  "--user", env=ref.env)
    assert "nothing changed" in again.stdout


@example("server-cli: logging (files, attach)")
def cli_logging(ref: Ref) -> None:
    this = ("--name", ref.hub.name, "--user", "--config", str(ref.hub.config_file))
    files = ferry("hub", "files", *this, env=ref.env)
    log = next(line.split()[-1] for line in files.stdout.splitlines() if "log" in line.lower()
               and line.strip().endswith(".log"))
    proc = subprocess.Popen([sys.executable, "-m", "ferry", "hub", "attach", *this],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ref.env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the log's last lines come first
        assert first.strip(), first
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert Path(log).exists()
