"""``ferry demo`` runs on its own and exits 0."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import ferry

pytestmark = pytest.mark.slow  # runs `ferry` processes


def test_demo(env: dict[str, str]) -> None:
    result = ferry("demo", env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "online" in result.stdout
    assert "dashboard at http://127.0.0.1:" in result.stdout
    assert "the hub now shows it offline" in result.stdout
    assert "CORES" in result.stdout and "HOST_ID" in result.stdout
    assert "compute lane" in result.stdout
    assert "100%  200/200 done" in result.stdout
    assert "20 buckets" in result.stdout and "job done with {'done': 200}" in result.stdout
    assert "transfer done: one task moved the folder: a folder of 201 files" in result.stdout
    assert "identical to the source" in result.stdout
    assert "MB/s" in result.stdout
    # the federated part: CI has a Docker engine (FERRY_REQUIRE_DOCKER=1)
    if os.environ.get("FERRY_REQUIRE_DOCKER") == "1" or "federated part skipped" not in \
            result.stdout:
        assert "federated job done: 12 values at three organizations, mean 47.6" in \
            result.stdout
        assert result.stdout.count("sealed: ") == 3


def test_demo_says_it_skipped_the_federated_part_without_docker(env: dict[str, str],
                                                                tmp_path: Path) -> None:
    result = ferry("demo", env={**env, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"},
                   timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "federated part skipped: no Docker engine reachable" in result.stdout
    assert "transfer done" in result.stdout


def test_demo_keep_leaves_the_hub_up_for_the_commands_until_ctrl_c(env: dict[str, str],
                                                                   tmp_path: Path) -> None:
    import importlib.util
    import re
    import signal
    import subprocess
    import sys
    import textwrap
    import urllib.request

    env = {**env, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    with subprocess.Popen([sys.executable, "-m", "ferry", "demo", "--keep"], env=env,
                          stdout=subprocess.PIPE, text=True) as demo:
        assert demo.stdout is not None
        lines: list[str] = []
        try:
            for line in demo.stdout:
                lines.append(line)
                if line.startswith("press Ctrl-C"):
                    break
            said = "".join(lines)
            found = re.search(r"dashboard  (http://\S+)/   \(user root, password (\S+)\)", said)
            assert found, said
            url, password = found.groups()
            login = ferry("login", url, "--username", "root", "--password-stdin", env=env,
                          input=password + "\n")
            assert login.returncode == 0, login.stderr
            listing = ferry("client", "ls", "type!=5", env=env)
            assert listing.returncode == 0 and " online " in listing.stdout, listing
            with urllib.request.urlopen(url + "/", timeout=10) as page:  # the dashboard
                assert page.status == 200 and b"<html" in page.read().lower()
            # accsyn's own client, with the three lines the demo printed
            snippet = said[said.index("  import accsyn_api"):said.index("press Ctrl-C")]
            if importlib.util.find_spec("accsyn_api") is not None:
                ran = subprocess.run([sys.executable, "-c", textwrap.dedent(snippet)], env=env,
                                     capture_output=True, text=True, timeout=60, check=False)
                assert ran.returncode == 0 and "'status': 'online'" in ran.stdout, ran
        finally:
            demo.send_signal(signal.SIGINT)
        rest = demo.stdout.read()
        assert demo.wait(timeout=60) == 0, said + rest
    kept = re.search(r"the demo's folder is kept: (\S+)", rest)
    assert kept and Path(kept.group(1)).is_dir()
    shutil.rmtree(kept.group(1))
