"""A frame sequence and speed limits through a real endpoint, in process (issue 19): the
agent picks the frames from its folder's listing, lists the gaps, fails naming them when
the job says so, and every byte it moves is taken from the job's and the agent's rates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.moving import Mover
from agent.sequence import FramesMissing
from protocol import TransferWork
from tests.transports.test_transfer_endpoint import Served, random_file, serve
from transports.chunks import MiB


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    it = await serve(tmp_path)
    yield it
    await it.endpoint.stop()


def sequence_work(served: Served, dest: Path, **extra: object) -> TransferWork:
    return TransferWork(url=served.url, fingerprint=served.fingerprint or "", share="sh1",
                        path="plates/shot010", ticket=served.ticket("plates/shot010", tree=True),
                        dest_share="d", dest_path="in", into_folder=False, dest_root=str(dest),
                        sequence="shot010_####.exr", **extra)  # type: ignore[arg-type]


async def test_a_sequence_moves_its_frames_and_lists_the_gaps(served: Served,
                                                              tmp_path: Path) -> None:
    folder = served.root / "plates" / "shot010"
    frames = [f for f in range(1001, 1011) if f not in (1003, 1007, 1008)]
    for f in frames:
        random_file(folder / f"shot010_{f:04}.exr", 3000 + f if f != 1009 else 2 * MiB)
    for decoy in ("shot010_0999.exr.tmp", "shot020_1001.exr", "sub/shot010_1001.exr",
                  "shot010_101.exr"):
        random_file(folder / decoy, 100)
    dest = tmp_path / "dest"
    mover = Mover(dict)
    moved = await mover.run_task("t1", sequence_work(served, dest, frames="1001-1012"),
                                 job="j1")
    assert moved.missing_frames == "1003, 1007-1008, 1011-1012"
    assert moved.summary.startswith("a folder of 7 files")
    assert sorted(p.name for p in (dest / "in").iterdir()) == \
        [f"shot010_{f:04}.exr" for f in frames]
    for f in frames:
        name = f"shot010_{f:04}.exr"
        assert (dest / "in" / name).read_bytes() == (folder / name).read_bytes()

    # without a range: the frames there, and the gaps between the first and the last
    moved = await mover.run_task("t2", sequence_work(served, tmp_path / "d2"), job="j2")
    assert moved.missing_frames == "1003, 1007-1008"

    # missing frames fail the job that says so, before a byte moves
    with pytest.raises(FramesMissing, match=r"3 frames of 'plates/shot010/shot010_####.exr' "
                       r"are missing: 1003, 1007-1008"):
        await mover.run_task("t3", sequence_work(served, tmp_path / "d3",
                                                 missing_frames="fail"), job="j3")
    assert not (tmp_path / "d3").exists()
    with pytest.raises(FramesMissing, match="no frame of"):
        await mover.run_task("t4", sequence_work(served, tmp_path / "d4", frames="1-5"))


async def test_a_pushed_sequence_sends_its_frames_only(served: Served, tmp_path: Path
                                                       ) -> None:
    """Pushing (a source behind NAT): the agent picks the frames on its own disk."""
    source = tmp_path / "local"
    for f in (1, 2, 4):
        random_file(source / "shot010" / f"shot010_{f:04}.exr", 1000 + f)
    random_file(source / "shot010" / "shot010_0003.exr.partial", 10)
    random_file(source / "shot010" / "deeper" / "shot010_0003.exr", 10)
    work = TransferWork(url=served.url, fingerprint=served.fingerprint or "", share="sh1",
                        path="shot010", ticket=served.ticket("in", "write", tree=True),
                        dest_share="d", dest_path="in", into_folder=False, direction="push",
                        source_root=str(source), sequence="shot010_%04d.exr", frames="1-4")
    moved = await Mover(dict).run_task("t1", work, job="j1")
    assert moved.missing_frames == "3"
    assert sorted(p.name for p in (served.root / "in").iterdir()) == \
        ["shot010_0001.exr", "shot010_0002.exr", "shot010_0004.exr"]


async def test_a_jobs_streams_take_every_byte_from_its_rate_and_the_agents(
        served: Served, tmp_path: Path) -> None:
    """The limiter's own accounting: what moved was taken from the job's rate and the
    agent's; the hub's new word changes the job's rate in place while it runs."""
    source = random_file(served.root / "big.mov", 8 * MiB)
    mover = Mover(dict, speed_limit=400 * MiB)
    work = TransferWork(url=served.url, fingerprint=served.fingerprint or "", share="sh1",
                        path="big.mov", ticket=served.ticket("big.mov"), dest_share="d",
                        dest_path="big.mov", into_folder=False,
                        dest_root=str(tmp_path / "dest"), speed_limit=2 * MiB, streams=4)
    running = asyncio.create_task(mover.run_task("t1", work, job="j1"))
    await asyncio.sleep(0)  # it starts: its job's rate is there before its first request
    assert mover.speed_limits() == {"j1": 2 * MiB}  # the job's: lower than the agent's
    job_rate = mover._job_rates["j1"][0]
    mover.set_speed_limits({"j1": 200 * MiB, "other": 5})  # the heartbeat's answer
    assert job_rate.rate == 200 * MiB and mover.speed_limits() == {"j1": 200 * MiB}
    mover.set_speed_limits({"j1": 0})  # lifted: the agent's own applies
    assert mover.speed_limits() == {"j1": 400 * MiB}
    moved = await running
    assert moved.size == 8 * MiB and moved.missing_frames is None
    assert (tmp_path / "dest" / "big.mov").read_bytes() == source.read_bytes()
    assert job_rate.taken == mover.agent_rate.taken == 8 * MiB
    assert mover.speed_limits() == {}  # the job's rate went with its last transfer
