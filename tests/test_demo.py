"""``ferry demo`` runs on its own and exits 0."""

from __future__ import annotations

from tests.helpers import ferry


def test_demo(env: dict[str, str]) -> None:
    result = ferry("demo", env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "online" in result.stdout
    assert "the hub now shows it offline" in result.stdout
    assert "CORES" in result.stdout and "HOST_ID" in result.stdout
    assert "compute lane" in result.stdout
    assert "100%  200/200 done" in result.stdout
    assert "20 buckets" in result.stdout and "job done with {'done': 200}" in result.stdout
    assert "transfer done: the folder became 201 tasks, one per file" in result.stdout
    assert "identical to the source" in result.stdout
    assert "MB/s" in result.stdout
