"""The kinds of job, found by ``protocol.BucketKind``: one kind per bucket kind, a new
job's kind decided once from its body, a stored job's from ``Job.kind``."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from hub.jobs.compute import COMPUTE
from hub.jobs.docker import DOCKER
from hub.jobs.registry import KINDS, kind_of, of
from hub.jobs.transfer import TRANSFER
from protocol import BucketKind

JOBS = Path(__file__).resolve().parents[2] / "hub" / "jobs"


def test_each_bucket_kind_has_one_kind_of_job() -> None:
    assert set(KINDS) == set(BucketKind)
    assert all(kind.kind == key for key, kind in KINDS.items())
    assert (KINDS[BucketKind.COMPUTE], KINDS[BucketKind.TRANSFER], KINDS[BucketKind.DOCKER]) \
        == (COMPUTE, TRANSFER, DOCKER)
    markers = [m for kind in KINDS.values() for m in kind.markers]
    assert len(markers) == len(set(markers))  # no key asks for two kinds


@pytest.mark.parametrize(("body", "kind"), [
    ({"compute": {"command": ["true"], "items": "1"}}, BucketKind.COMPUTE),
    ({"docker": {"image": "a"}, "collaboration": "c"}, BucketKind.DOCKER),
    ({"source": "share=a/b", "destination": "share=c/"}, BucketKind.TRANSFER),
    ({"destination": "lars@edit.com"}, BucketKind.TRANSFER),  # its source is then missing
    ({"source": "share=a/b"}, BucketKind.TRANSFER),
    # a body naming several is the first kind it names, in the order compute, docker,
    # transfer: its spec then refuses what does not belong
    ({"compute": {}, "docker": {}}, BucketKind.COMPUTE),
    ({"docker": {}, "source": "share=a/b"}, BucketKind.DOCKER),
    # nothing that names a kind: checked as a compute job, whose spec says what is missing
    ({}, BucketKind.COMPUTE),
    ({"code": "x"}, BucketKind.COMPUTE),
    (["compute"], BucketKind.COMPUTE),
    (None, BucketKind.COMPUTE),
])
def test_a_new_jobs_kind_is_decided_from_its_body(body: Any, kind: BucketKind) -> None:
    assert kind_of(body) == kind


def test_a_stored_jobs_kind_is_its_job_kind() -> None:
    assert of("compute") is COMPUTE and of("transfer") is TRANSFER and of("docker") is DOCKER
    with pytest.raises(ValueError):
        of("render")


def test_each_kind_shows_its_own_part_of_a_spec() -> None:
    assert COMPUTE.shown({"command": ["r"], "items": "1", "targets": [{"site": "s"}]}) == \
        {"compute": {"command": ["r"], "items": "1"}}
    made = {"command": ["r", "a"], "items": "1", "targets": [], "engine": "r", "args": {"x": "a"}}
    assert COMPUTE.shown(made) == {"compute": {"command": ["r", "a"], "items": "1"},
                                   "engine": "r", "args": {"x": "a"}}
    transfer = {"source_share": "s", "destination": "share=p/x/", "destination_share": "d"}
    assert TRANSFER.shown({"transfer": transfer, "targets": []}) == \
        {"transfer": transfer, "destination_path": "share=p/x/"}
    assert DOCKER.shown({"image": "a", "job_id": "j1"}) == \
        {"docker": {"image": "a"}, "job_id": "j1"}


def test_only_a_transfer_waits_for_where_its_files_land() -> None:
    pending = {"transfer": {"destination_share": None}, "targets": []}
    assert not TRANSFER.ready(pending)
    assert TRANSFER.ready({"transfer": {"destination_share": "d"}, "targets": []})
    assert COMPUTE.ready({"command": ["r"]}) and DOCKER.ready({"image": "a"})


def test_docker_runs_are_not_taken_from_the_job_queue() -> None:
    assert DOCKER.queued_for("org", "collab") is None
    assert COMPUTE.queued_for("org", "collab") is not None
    assert TRANSFER.queued_for("org", None) is not None


def test_job_logic_never_imports_the_api_or_the_entities() -> None:
    found = []
    for path in sorted(JOBS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names
                      if n.startswith(("hub.entities", "hub.api"))]
    assert found == []
