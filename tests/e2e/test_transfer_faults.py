"""Faults at the job level, between two real agent processes: bytes damaged and a
connection cut in flight, and a destination disk that fills up."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub import Session
from tests.conftest import Sites
from tests.helpers import Hub, ended, free_port, small_tmpfs, wait_for
from tests.proxy import ThreadedProxy
from transports.chunks import MiB


@pytest.fixture
def hub(start_hub) -> Hub:
    return start_hub(heartbeat_interval=0.5, lease_seconds=10)




def test_damage_and_a_cut_in_flight_are_survived(hub: Hub, session: Session, node_key,
                                                 start_agent, tmp_path: Path) -> None:
    # the source agent's peers reach it through a relay that flips one byte of one
    # stream and cuts another: TLS (and, below it, each chunk's BLAKE3) refuses the
    # damaged bytes, and the chunks are fetched again
    port = free_port()
    relay = ThreadedProxy(port, flip_at=3 * MiB, cut_at=5 * MiB)
    public = relay.start()
    try:
        source = start_agent(hub, node_key("storage-a")["api_key"], lanes=1,
                             transfer_port=port, transfer_public_port=public)
        dest = start_agent(hub, node_key("storage-b")["api_key"], lanes=1)
        a = wait_for(lambda: source.status()["client_id"], what="a enrolled")
        b = wait_for(lambda: dest.status()["client_id"], what="b enrolled")
        assert session.get("Client", a)["transfer"]["url"].endswith(f":{public}")
        projects, backup = tmp_path / "projects", tmp_path / "backup"
        projects.mkdir()
        backup.mkdir()
        session.create("Share", {"name": "projects", "client": a, "path": str(projects)})
        session.create("Share", {"name": "backup", "client": b, "path": str(backup)})
        wait_for(lambda: dest.status()["transfer"]["shares"] == ["backup"], what="b's share")
        film = random.randbytes(40 * MiB + 3)
        (projects / "film.mov").write_bytes(film)

        job = session.create("Job", {"source": "share=projects/film.mov",
                                     "destination": "share=backup/", "retries": 0})
        done = wait_for(lambda: ended(session, job["id"]), timeout=120, what="transfer")
        task = session.find_one(f"task WHERE job.id={job['id']}", attributes=["attempts", "log_tail"])
        assert done["status"] == "done", task
        assert relay.pending_faults == [], "both faults happened"
        assert (backup / "film.mov").read_bytes() == film
        assert task["attempts"] == 0, "mended within the run, not by running it again"
        assert "requests made again" in task["log_tail"], task["log_tail"]
    finally:
        relay.stop()


@pytest.fixture
def tiny_share_folder(two_sites: Sites) -> Iterator[Path]:
    with small_tmpfs(two_sites.backup / "tiny", "4m") as mount:
        yield mount


def test_a_full_destination_disk_fails_clearly_and_leaves_nothing(
        session: Session, two_sites: Sites, tiny_share_folder: Path) -> None:
    projects = two_sites.projects
    (projects / "big.mov").write_bytes(random.randbytes(16 * MiB))
    job = session.create("Job", {"source": "share=projects/big.mov",
                                 "destination": "share=backup/tiny/", "retries": 0})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="big file job")
    task = session.find_one(f"task WHERE job.id={job['id']}")
    assert done["status"] == "failed", task
    assert "destination disk full" in task["message"], task["message"]
    assert "16777216 bytes are needed" in task["message"], task["message"]
    assert list(tiny_share_folder.iterdir()) == []

    # many small files: the disk fills while they land, not at a preallocation
    for n in range(40):
        (projects / "plates" / f"p{n:03}.dpx").parent.mkdir(exist_ok=True)
        (projects / "plates" / f"p{n:03}.dpx").write_bytes(random.randbytes(200 * 1024))
    job = session.create("Job", {"source": "share=projects/plates",
                                 "destination": "share=backup/tiny/", "retries": 0})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="plates job")
    assert done["status"] == "failed"
    failed = session.find(f"task WHERE job.id={job['id']} AND status=failed")
    assert failed and all("destination disk full" in t["message"] for t in failed), failed
    for path in tiny_share_folder.rglob("*"):  # what landed is whole; nothing half-written
        if path.is_file():
            assert not path.name.startswith("."), f"temporary file left: {path}"
            assert path.read_bytes() == (projects / "plates" / path.name).read_bytes()
