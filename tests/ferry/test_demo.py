"""``ferry demo`` runs on its own and exits 0."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ferry

pytestmark = pytest.mark.slow  # runs `ferry` processes


def test_demo(env: dict[str, str]) -> None:
    result = ferry("demo", env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "online" in result.stdout
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
