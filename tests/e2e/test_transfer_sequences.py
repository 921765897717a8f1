"""Frame sequences and speed limits end to end (issue 19): a real hub and two real
agents. A sequence with gaps moves the frames there and the job lists the ones missing
(or fails naming them, when it says so); a job's speed limit, the agent's and the hub's
meet at the agent that moves the bytes, and a limit changed while the job runs reaches
that agent's streams (its status shows the limit in force for the job)."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from hub import Session
from hub.session import ApiError
from tests.conftest import Sites
from tests.ferry.test_operator import run
from tests.helpers import ROOT_PASSWORD, Hub, db_rows, ended, wait_for
from transports.chunks import MiB

HUB_LIMIT = 40_000_000  # the hub's transfer_speed_limit
AGENT_LIMIT = 30_000_000  # the pulling agent's transfer_speed_limit


@pytest.fixture
def hub(start_hub) -> Hub:
    return start_hub(heartbeat_interval=0.5, lease_seconds=10, transfer_speed_limit="40MB/s")


@pytest.fixture
def limited(hub: Hub, session: Session, node_key, start_agent, tmp_path: Path) -> Sites:
    """Two sites; the agent that pulls (it serves the destination) has a speed limit."""
    source_agent = start_agent(hub, node_key("storage-a")["api_key"], lanes=1)
    dest_agent = start_agent(hub, node_key("storage-b")["api_key"], lanes=1,
                             transfer_speed_limit="30MB/s")
    roots = []
    for agent, name in ((source_agent, "projects"), (dest_agent, "backup")):
        client = wait_for(lambda agent=agent: agent.status()["client_id"], what="enrolled")
        root = tmp_path / name
        root.mkdir()
        session.create("Share", {"name": name, "client": client, "path": str(root)})
        wait_for(lambda agent=agent, name=name: agent.status()["transfer"]["shares"] == [name],
                 what=f"{name} served")
        roots.append(root)
    return Sites(roots[0], roots[1], source_agent, dest_agent)


def refused(session: Session, body: dict[str, Any], field: str, needle: str) -> None:
    with pytest.raises(ApiError) as info:
        session.create("Job", body)
    assert info.value.status == 422, body
    assert info.value.details.get("field") == field, (body, info.value)
    assert needle in info.value.message, (body, info.value)


def test_a_sequence_with_gaps_lists_or_fails_on_its_missing_frames(
        hub: Hub, session: Session, limited: Sites, env: dict[str, str]) -> None:
    run(env, "login", hub.url, "--username", "root", "--password-stdin",
        stdin=ROOT_PASSWORD + "\n")
    shot = limited.projects / "plates" / "shot010"
    frames = [f for f in range(1001, 1021) if f not in (1004, 1011, 1012)]
    for f in frames:
        (shot / f"shot010_{f:04}.exr").parent.mkdir(parents=True, exist_ok=True)
        (shot / f"shot010_{f:04}.exr").write_bytes(random.randbytes(5000 + f))
    (shot / "shot010_1001.exr.tmp").write_bytes(b"not a frame")
    (shot / "notes.txt").write_text("not a frame")

    job = session.create("Job", {"source": "share=projects/plates/shot010/shot010_####.exr",
                                 "frames": "1001-1022", "destination": "share=backup/in/"})
    assert job["transfer"]["sequence"] == {"pattern": "shot010_####.exr",
                                           "frames": "1001-1022", "missing_frames": "list"}
    assert job["speed_limit"] == HUB_LIMIT  # the hub's default: the job named none
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="sequence job")
    assert done["status"] == "done", session.find(f"task WHERE job.id={job['id']}")
    assert done["frames_missing"] == "1004, 1011-1012, 1021-1022"
    assert sorted(p.name for p in (limited.backup / "in").iterdir()) == \
        [f"shot010_{f:04}.exr" for f in frames]
    for f in frames:
        name = f"shot010_{f:04}.exr"
        assert (limited.backup / "in" / name).read_bytes() == (shot / name).read_bytes()

    shown = run(env, "job", "show", job["id"])
    assert re.search(r"^missing frames\s+1004, 1011-1012, 1021-1022$", shown, re.M), shown
    assert re.search(r"^speed limit\s+40MB/s$", shown, re.M), shown

    # ferry cp, %04d, told that missing frames fail: it fails naming them, nothing lands
    said = run(env, "cp", "share=projects/plates/shot010/shot010_%04d.exr",
               "share=backup/strict/", "--missing-frames", "fail")
    strict = session.get("Job", said.splitlines()[0])
    failed = wait_for(lambda: ended(session, strict["id"]), timeout=60, what="strict job")
    assert failed["status"] == "failed" and failed["frames_missing"] == "1004, 1011-1012"
    task = session.find(f"task WHERE job.id={strict['id']}")[0]
    assert task["attempts"] == 3  # retried as any failure is (the frames may come)
    assert "3 frames of 'plates/shot010/shot010_%04d.exr' are missing: 1004, 1011-1012" in \
        task["message"]
    assert not (limited.backup / "strict").exists()

    before = db_rows(hub.database)["jobs"]
    source = "share=projects/plates/shot010/shot010_####.exr"
    dest = "share=backup/in/"
    for extra, field, needle in (
        ({"frames": "001-100"}, "frames", "padded to 3 digits, the pattern to 4"),
        ({"frames": "1100-1001"}, "frames", "ends before it starts"),
        ({"frames": "1001-1010,1005"}, "frames", "without overlap"),
        ({"frames": "all"}, "frames", "not a frame"),
        ({"source": "share=projects/plates/shot010/shot010_##_%04d.exr"}, "source", "mixes"),
        ({"source": "share=projects/plates/sh_####/a_##.exr"}, "source", "not in a folder's"),
        ({"source": "share=projects/plates/a.exr", "frames": "1-2"}, "frames", "no sequence"),
        ({"missing_frames": "ignore"}, "missing_frames", "Invalid enum value"),
        ({"speed_limit": "fast"}, "speed_limit", "expected bytes a second"),
        ({"speed_limit": "50Mb/s"}, "speed_limit", "a rate like '50MB/s'"),
        ({"speed_limit": 0}, "speed_limit", "above 0"),
    ):
        refused(session, {"source": source, "destination": dest, **extra}, field, needle)
    assert db_rows(hub.database)["jobs"] == before


def test_speed_limits_per_job_per_agent_per_hub_and_changed_while_running(
        hub: Hub, session: Session, limited: Sites, env: dict[str, str]) -> None:
    run(env, "login", hub.url, "--username", "root", "--password-stdin",
        stdin=ROOT_PASSWORD + "\n")
    with open(limited.projects / "feature.mov", "wb") as fh:
        for _ in range(3):
            fh.write(random.randbytes(16 * MiB))
    job = session.create("Job", {"source": "share=projects/feature.mov",
                                 "destination": "share=backup/", "speed_limit": "1MB/s"})
    assert job["speed_limit"] == 1_000_000
    agent = limited.dest_agent

    def in_force() -> int | None:
        return agent.status()["transfer"]["speed_limits"].get(job["id"])  # type: ignore[no-any-return]

    assert agent.status()["transfer"]["speed_limit"] == AGENT_LIMIT
    # the job's own limit is the lowest: the agent moves its bytes at it
    wait_for(lambda: in_force() == 1_000_000, what="the job's limit at the agent")
    # changed while it runs (ferry job set): the agent follows at its next heartbeat
    assert run(env, "job", "set", job["id"], "--speed-limit", "2MB/s").endswith(
        "speed limit 2MB/s\n")
    assert session.get("Job", job["id"])["speed_limit"] == 2_000_000
    wait_for(lambda: in_force() == 2_000_000, what="the new limit at the agent")
    assert session.get("Job", job["id"])["status"] == "running"
    # asked for more than the hub allows: the hub's limit is stored, and the agent's own,
    # lower still, is the one in force
    changed = session.update("Job", job["id"], {"speed_limit": "500MB/s"})
    assert changed["speed_limit"] == HUB_LIMIT
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="the job")
    assert done["status"] == "done"
    assert (limited.backup / "feature.mov").stat().st_size == 48 * MiB
    assert in_force() is None  # the job's rate went with it

    with pytest.raises(ApiError) as info:  # bad input: nothing changed
        session.update("Job", job["id"], {"speed_limit": "quick"})
    assert (info.value.status, info.value.details.get("field")) == (422, "speed_limit")
    assert session.get("Job", job["id"])["speed_limit"] == HUB_LIMIT
    cleared = session.update("Job", job["id"], {"speed_limit": None})
    assert cleared["speed_limit"] == HUB_LIMIT  # none of its own: the hub's default
