"""``ferry servers …`` as a user runs it: a real process, folders under tmp_path, a
real hub for ``check``. The OS keyring is never reached (keyring's null backend)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ferry.cli import build_parser
from tests.helpers import Hub, ferry, free_port, wait_for

pytestmark = pytest.mark.slow  # runs `ferry` processes


@pytest.fixture
def cli_env(env: dict[str, str]) -> dict[str, str]:
    # the null backend stores nothing, so tokens would go to the owner-only file
    return {**env, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}


@pytest.fixture
def db_file(cli_env: dict[str, str]) -> Path:
    return Path(cli_env["XDG_DATA_HOME"]) / "ferry" / "servers.json"


def servers(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return ferry("servers", *args, env=env, timeout=60)


def ok(env: dict[str, str], *args: str) -> str:
    result = servers(env, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(env: dict[str, str], *args: str, says: str) -> str:
    result = servers(env, *args)
    assert result.returncode != 0, result.stdout
    assert result.stderr.startswith("error: "), result.stderr
    assert says in result.stderr, result.stderr
    return result.stderr


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_servers_is_a_group_of_the_ferry_command() -> None:
    parser = build_parser()
    args = parser.parse_args(["servers", "add", "studio", "https://hub.example",
                              "--auth-url", "https://auth.example"])
    assert (args.group, args.verb, args.name, args.url, args.auth_url, args.protocol) == (
        "servers", "add", "studio", "https://hub.example", "https://auth.example", "ferry-v1")
    assert parser.parse_args(["servers", "list", "--system"]).system is True
    with pytest.raises(SystemExit):
        parser.parse_args(["servers", "list", "--system", "--file", "x.json"])


def test_list_shows_the_predefined_servers(cli_env: dict[str, str], db_file: Path) -> None:
    lines = ok(cli_env, "list").splitlines()
    assert lines[0].split() == ["NAME", "KIND", "STATUS", "APPLICATION", "URL", "PROTOCOL"]
    assert lines[1].split() == ["local", "predefined", "Never", "reached",
                                "http://127.0.0.1:7700", "ferry-v1"]
    assert db_file.exists()  # made at first use


def test_add_show_edit_remove(cli_env: dict[str, str], db_file: Path) -> None:
    out = ok(cli_env, "add", "Studio", "https://hub.studio.example:8443/",
             "--auth-url", "https://auth.studio.example")
    assert out == ("added server 'Studio': https://hub.studio.example:8443 (ferry-v1), "
                   "authentication at https://auth.studio.example\n")
    assert ok(cli_env, "list").splitlines()[2].split() == [
        "Studio", "user", "Never", "reached", "https://hub.studio.example:8443", "ferry-v1"]
    shown = {line[:15].strip(): line[16:] for line in ok(cli_env, "show", "studio").splitlines()}
    assert shown["name"] == "Studio" and shown["kind"] == "user"
    assert shown["status"] == "Never reached"
    assert shown["application"] == "https://hub.studio.example:8443 (ferry-v1)"
    assert shown["authentication"] == "https://auth.studio.example (ferry-v1)"
    assert shown["last success"] == "never" and shown["token"] == "none"
    assert shown["cache"] == "empty" and shown["database"] == str(db_file)

    out = ok(cli_env, "edit", "STUDIO", "--url", "https://new.studio.example", "--name", "studio")
    assert out.startswith("server 'studio': https://new.studio.example (ferry-v1)")
    assert "authentication at https://auth.studio.example" in out
    assert ok(cli_env, "remove", "studio") == "removed server 'studio'\n"
    assert [s["name"] for s in json.loads(db_file.read_text())["servers"]] == ["local"]


def test_show_never_prints_the_token(cli_env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "db" / "servers.json"
    ok(cli_env, "add", "--file", str(db), "hub", "https://hub.example")
    script = ("import sys\nfrom pathlib import Path\nfrom servers import ServersDB\n"
              "ServersDB(Path(sys.argv[1])).set_token('hub', 'very-secret-token')\n")
    subprocess.run([sys.executable, "-c", script, str(db)], env=cli_env, check=True,
                   capture_output=True)
    out = ok(cli_env, "show", "--file", str(db), "hub")
    assert "very-secret-token" not in out
    assert f"token           stored in the file {db.parent / 'servers-secrets.json'}" in out


@pytest.mark.parametrize(("args", "says"), [
    (("show", "ghost"), "no server named 'ghost'; known servers: local, mine"),
    (("remove", "ghost"), "no server named 'ghost'"),
    (("edit", "ghost", "--url", "https://a.example"), "no server named 'ghost'"),
    (("check", "ghost"), "no server named 'ghost'"),
    (("add", "other", "hub.example"), "invalid URL 'hub.example'"),
    (("add", "other", "https://a.example", "--auth-url", "ftp://a"), "invalid URL 'ftp://a'"),
    (("add", "other", "https://a.example", "--protocol", "resto-v1"),
     "unknown protocol 'resto-v1'"),
    (("add", "bad name", "https://a.example"), "invalid server name 'bad name'"),
    (("add", "MINE", "https://a.example"), "a server named 'mine' already exists"),
    (("add", "Local", "https://a.example"), "'Local' is the name of a predefined server"),
    (("edit", "local", "--url", "https://a.example"), "server 'local' is predefined: it cannot "
                                                      "be edited"),
    (("remove", "LOCAL",), "server 'local' is predefined: it cannot be removed"),
    (("edit", "mine", "--name", "local"), "is the name of a predefined server"),
    (("edit", "mine"), "nothing to change"),
])
def test_bad_input_is_refused_and_nothing_written(cli_env: dict[str, str], db_file: Path,
                                                  args: tuple[str, ...], says: str) -> None:
    ok(cli_env, "add", "mine", "https://mine.example")
    before = db_file.read_bytes()
    refused(cli_env, *args, says=says)
    assert db_file.read_bytes() == before


def test_a_reserved_name_is_refused(cli_env: dict[str, str], db_file: Path) -> None:
    ok(cli_env, "list")
    data = json.loads(db_file.read_text())
    data["reserved"] = ["demo"]
    db_file.write_text(json.dumps(data))
    refused(cli_env, "add", "Demo", "https://a.example", says="'Demo' is reserved")


def test_a_corrupt_database_is_reported_and_replaced(cli_env: dict[str, str],
                                                     db_file: Path) -> None:
    db_file.parent.mkdir(parents=True)
    db_file.write_text("{oops")
    result = servers(cli_env, "list")
    assert result.returncode == 0, result.stderr
    assert "local" in result.stdout and "warning: the servers database" in result.stderr
    assert "corrupt-" in result.stderr and "[" not in result.stdout.splitlines()[0]
    assert len(list(db_file.parent.glob("servers.json.corrupt-*"))) == 1


def test_check_an_unreachable_server(cli_env: dict[str, str]) -> None:
    ok(cli_env, "add", "nowhere", f"http://127.0.0.1:{free_port()}")
    result = servers(cli_env, "check", "nowhere", "--timeout", "2")
    assert result.returncode == 1
    assert "has never been reached" in result.stderr and "check the URL" in result.stderr
    assert "status: Never reached" in result.stderr


def test_check_a_running_hub_then_a_stopped_one(hub: Hub, cli_env: dict[str, str]) -> None:
    ok(cli_env, "add", "h1", hub.url)
    out = ok(cli_env, "check", "h1")
    assert out.startswith("server 'h1' is Running: ferry ") and "protocol ferry-v1" in out
    shown = ok(cli_env, "show", "h1")
    assert "status          Running" in shown
    # its age is whatever the clock says between check and show: any number of seconds
    assert re.search(r"^cache +version: \d+ s old", shown, re.MULTILINE), shown
    hub.kill()
    result = servers(cli_env, "check", "h1", "--timeout", "2")
    assert result.returncode == 1
    assert "is unavailable" in result.stderr and "it was reachable before" in result.stderr
    assert "status: Unavailable" in result.stderr
    assert "version: " in ok(cli_env, "show", "h1")  # the cached answer stays


def test_check_a_server_that_is_not_a_hub(cli_env: dict[str, str], tmp_path: Path) -> None:
    # a plain web server answers 404 with HTML: that is no answer of the protocol
    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                            "127.0.0.1", "--directory", str(tmp_path)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: listening(port), what="the web server")
        ok(cli_env, "add", "web", f"http://127.0.0.1:{port}")
        result = servers(cli_env, "check", "web", "--timeout", "2")
        assert result.returncode == 1
        assert "is this a Ferry hub?" in result.stderr
        assert "status: Never reached" in result.stderr
    finally:
        web.kill()
        web.wait()
