"""Checking a /metrics page the way Prometheus's own tool does: ``promtool check metrics``.

Debian's ``prometheus`` package has it (``.ci/run`` installs it). Without it a test that
needs it is skipped naming the package, or fails when FERRY_REQUIRE_DOCKER=1 (CI, where
every tool the suite needs is installed), as the Docker tests do.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        why = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("FERRY_REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return path


def check_metrics(page: bytes) -> None:
    """``promtool check metrics`` passes ``page``: exit 0 and no complaint (it exits 0 on
    lint warnings too, and prints them)."""
    done = subprocess.run([promtool(), "check", "metrics"], input=page, capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def samples(page: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text-format page, by name and labels (sorted)."""
    text = page.decode() if isinstance(page, bytes) else page
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(page: bytes | str, name: str, **labels: str) -> float:
    return samples(page)[(name, tuple(sorted(labels.items())))]
