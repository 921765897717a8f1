"""The claim and heartbeat loops with runners the test drives, against the in-process fake
hub (agent/fakehub.py) through a real ``HubClient``; and the compute runner on lanes that
run nothing. The whole agent against the fake hub is test_loops.py."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.buckets.claim import ClaimLoop
from agent.buckets.compute import ComputeRunner
from agent.buckets.heartbeat import HeartbeatLoop
from agent.buckets.pool import BucketPool
from agent.buckets.reports import Reporter
from agent.fakehub import FakeHub
from agent.hubclient import HubClient
from agent.outbox import Outbox
from agent.state import AgentState
from lanes.accounting import CgroupTree
from protocol import BucketKind, EnrollRequest, Progress
from tests.agent.fakes import QuietLane, StepRunner, bucket

KEY = "node-key-0123456789"


@pytest.fixture
async def fake() -> AsyncIterator[FakeHub]:
    async with FakeHub(api_keys={KEY}, heartbeat_interval=0.05) as hub:
        yield hub


@pytest.fixture
async def hub(fake: FakeHub) -> AsyncIterator[HubClient]:
    client = HubClient(fake.url, lambda: EnrollRequest(api_key=KEY, machine_id="machine-1",
                                                       code="host", lanes=0),
                       retry_max_delay=0.05, request_timeout=5.0)
    yield client
    await client.close()


def online() -> AgentState:
    state = AgentState(name="test", hub="-", lanes=2)
    state.status = "online"
    return state


@contextlib.asynccontextmanager
async def looping(loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
                  ) -> AsyncIterator[asyncio.Event]:
    """Run ``loop`` until the block ends (then it is asked to stop, and must)."""
    stop = asyncio.Event()
    task = asyncio.create_task(loop(stop))
    try:
        yield stop
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task


async def until(check: Callable[[], object], what: str) -> None:
    """Wait for ``check``; the limit only keeps a broken test from hanging."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_each_runner_claims_only_what_it_has_free(
        fake: FakeHub, hub: HubClient, outbox: Outbox, tmp_path: Path) -> None:
    transfers = StepRunner(BucketKind.TRANSFER, slots=2)
    docker = StepRunner(BucketKind.DOCKER, slots=0)  # no free slot: it claims nothing
    pool = BucketPool([transfers, docker], Reporter(outbox, tmp_path / "logs"), online())
    moves = [fake.lease(["-"], kind=BucketKind.TRANSFER) for _ in range(3)]
    run = fake.lease(["-"], kind=BucketKind.DOCKER)
    async with looping(ClaimLoop(hub, pool, pool.state).run):
        await until(lambda: len(pool.held) == 2, "two transfers held")
        assert sorted(pool.held) == sorted(b.id for b in moves[:2])
        assert pool.heartbeat_interval == 0.05  # the hub's word, with the claim
        await asyncio.sleep(0.1)
        assert moves[2].id not in fake.leased and run.id not in fake.leased
        transfers.step()  # a transfer ends, its slot comes free: the third is claimed
        await until(lambda: moves[2].id in pool.held, "the third transfer held")
        assert run.id not in fake.leased
        for _ in range(2):
            transfers.step()
        await until(lambda: not pool.held, "every transfer ended")


async def test_a_disabled_agent_claims_nothing(fake: FakeHub, hub: HubClient,
                                               outbox: Outbox, tmp_path: Path) -> None:
    pool = BucketPool([StepRunner(BucketKind.TRANSFER)], Reporter(outbox, tmp_path / "logs"),
                      AgentState(name="test", hub="-", lanes=0))  # status: starting
    leased = fake.lease(["-"], kind=BucketKind.TRANSFER)
    async with looping(ClaimLoop(hub, pool, pool.state).run):
        await asyncio.sleep(0.1)
    assert leased.id not in fake.leased and not pool.held


async def test_heartbeats_renew_held_buckets_and_carry_aborts_back(
        fake: FakeHub, hub: HubClient, outbox: Outbox, tmp_path: Path) -> None:
    runner = StepRunner(BucketKind.TRANSFER)
    pool = BucketPool([runner], Reporter(outbox, tmp_path / "logs"), online())
    moving = {"x": Progress(done=1, size=2)}
    async with looping(ClaimLoop(hub, pool, pool.state).run):
        work = fake.lease(["-"], kind=BucketKind.TRANSFER)
        await until(lambda: work.id in pool.held, "the bucket held")
    heard: dict[str, int] = {}
    beats = HeartbeatLoop(hub, pool, progress=lambda: moving, output=lambda: {"x": "out"},
                          speed_limits=heard.update)
    async with looping(beats.run) as stop:
        fake.speed_limits = {work.job_id: 20_000_000, "another job": 5}
        await until(lambda: heard == {work.job_id: 20_000_000}, "the job's speed limit")
        task = work.tasks[0].id
        fake.abort(task)
        await until(lambda: runner.stopped, "the abort")
        assert runner.stopped == [(work.id, "aborted at the hub", task)]
        _, sent = fake.heartbeats[0]
        assert (sent.buckets, sent.progress, sent.logs) == ([work.id], moving, {"x": "out"})
        stop.set()  # the loop goes on while a bucket is held...
        count = len(fake.heartbeats)
        await until(lambda: len(fake.heartbeats) > count, "a heartbeat after the stop")
        runner.step()  # ...and ends once its last bucket has ended


@pytest.fixture
def cgroups() -> Iterator[CgroupTree]:
    tree = CgroupTree(f"test-{uuid.uuid4().hex[:10]}")
    yield tree
    tree.close()


async def test_the_compute_runner_runs_a_bucket_on_its_lane(
        outbox: Outbox, tmp_path: Path, cgroups: CgroupTree) -> None:
    lanes: dict[str, QuietLane] = {}

    def make_lane(name: str) -> QuietLane:
        lanes[name] = QuietLane(name)
        return lanes[name]

    compute = ComputeRunner(cgroups, "agent-1", make_lane)
    compute.set_lanes(["lane-1", "lane-2"])
    compute.set_lanes(["lane-1"])  # an enrollment again: the lanes stay
    pool = BucketPool([compute], Reporter(outbox, tmp_path / "logs"), online())
    assert pool.free(BucketKind.COMPUTE).lanes == ["lane-1", "lane-2"]
    work = bucket("b1", tasks=2, lane="lane-2")
    pool.hold(work)
    assert pool.free(BucketKind.COMPUTE).lanes == ["lane-1"]  # held: busy before it runs
    compute.stop(pool.held["b1"], "aborted at the hub", "b1-t1")
    assert lanes["lane-2"].aborted == [("b1-t1", "aborted at the hub")]
    await until(lambda: not pool.held, "the bucket's end")
    sent = {i.key: msgspec.json.decode(i.body) for i in await outbox.take()}
    assert [k for k in sent if k.endswith("/end")] == ["b1/b1-t1/end", "b1/b1-t2/end", "b1/end"]
    assert sent["b1/b1-t1/end"]["log_tail"] == "ok\n"
    # a tail that says it all: the log is not kept for an upload, and its folder goes
    assert not (tmp_path / "logs" / work.job_id).exists()
    pool.hold(bucket("b2", lane="lane-9"))  # a lane this agent does not have
    await until(lambda: not pool.held, "the bucket dropped")
    assert not any(i.key.startswith("b2/") for i in await outbox.take())
    await compute.close()
    assert all(lane.closed for lane in lanes.values())
