"""The bucket pool, in process: what every bucket ends with, whatever its kind, and what
heartbeat answers and the drain do to held buckets (a runner the test drives, a real
outbox)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from agent.buckets.pool import BucketPool
from agent.buckets.reports import Reporter
from agent.outbox import Outbox
from agent.state import AgentState
from protocol import BucketKind, HeartbeatResponse
from tests.agent.fakes import StepRunner, bucket


@pytest.fixture
def runner() -> StepRunner:
    return StepRunner()


@pytest.fixture
def pool(outbox: Outbox, runner: StepRunner, tmp_path: Path) -> BucketPool:
    return BucketPool([runner], Reporter(outbox, tmp_path / "logs"),
                      AgentState(name="test", hub="-", lanes=1))


async def reports(outbox: Outbox) -> dict[str, dict[str, object]]:
    """What the outbox holds, by key (the bodies decoded)."""
    return {item.key: msgspec.json.decode(item.body) for item in await outbox.take()}


async def ended(pool: BucketPool) -> None:
    """Until the pool holds no bucket (the limit only keeps a broken test from hanging)."""
    async with asyncio.timeout(5):
        await pool.idle.wait()


def heartbeat(**lists: list[str]) -> HeartbeatResponse:
    return HeartbeatResponse(lost=lists.get("lost", []), abort=lists.get("abort", []),
                             paused=lists.get("paused", []), heartbeat_interval=2.0)


async def test_a_bucket_ends_after_its_tasks_and_frees_its_kind(
        pool: BucketPool, runner: StepRunner, outbox: Outbox) -> None:
    freed = pool.freed(BucketKind.COMPUTE)
    pool.hold(bucket("b1"))
    assert (pool.state.busy, pool.idle.is_set(), pool.holding.is_set()) == (1, False, True)
    assert pool.free(BucketKind.COMPUTE).slots == 0  # the runner's one slot is held
    runner.step()
    runner.step()
    await ended(pool)
    assert (pool.state.busy, pool.idle.is_set(), freed.is_set()) == (0, True, True)
    sent = await reports(outbox)
    assert list(sent) == ["b1/b1-t1/end", "b1/b1-t2/end", "b1/end"]  # the bucket's end last
    assert sent["b1/end"]["kind"] == "bucket"


async def test_a_paused_bucket_hands_back_what_never_started(
        pool: BucketPool, runner: StepRunner, outbox: Outbox) -> None:
    pool.hold(bucket("b1", tasks=3))
    await runner.started()
    pool.apply(heartbeat(paused=["job-1"]))
    assert pool.heartbeat_interval == 2.0
    runner.step()  # the running task ends; no other starts
    await ended(pool)
    sent = await reports(outbox)
    assert sent["b1/b1-t1/end"]["event"] == "done"
    for task in ("b1-t2", "b1-t3"):
        assert sent[f"b1/{task}/end"]["event"] == "returned"
        assert sent[f"b1/{task}/end"]["message"] == "handed back unstarted (paused)"
    assert "b1/end" in sent


async def test_a_lost_bucket_is_stopped_and_reports_nothing(
        pool: BucketPool, runner: StepRunner, outbox: Outbox) -> None:
    pool.hold(bucket("b1"))
    await runner.started()
    pool.apply(heartbeat(lost=["b1", "someone-elses"]))
    assert runner.stopped == [("b1", "lease lost", None)]
    await ended(pool)
    assert await reports(outbox) == {}


async def test_an_abort_stops_the_running_task_and_marks_the_others(
        pool: BucketPool, runner: StepRunner) -> None:
    pool.hold(bucket("b1", tasks=3))
    pool.apply(heartbeat(abort=["b1-t1", "b1-t3", "not-ours"]))
    assert sorted(runner.stopped) == [("b1", "aborted at the hub", "b1-t1"),
                                      ("b1", "aborted at the hub", "b1-t3")]
    assert pool.held["b1"].aborted == {"b1-t1", "b1-t3"}
    assert pool.held["b1"].stopping is None  # the rest of the bucket goes on
    for _ in range(3):
        runner.step()
    await ended(pool)


async def test_a_runner_that_fails_hands_back_what_did_not_end(
        pool: BucketPool, runner: StepRunner, outbox: Outbox) -> None:
    pool.hold(bucket("b1", tasks=3))
    runner.step()
    runner.step("fail")
    await ended(pool)
    sent = await reports(outbox)
    assert sent["b1/b1-t1/end"]["event"] == "done"
    assert [sent[f"b1/{t}/end"]["message"] for t in ("b1-t2", "b1-t3")] == \
        ["handed back unstarted (the agent failed)"] * 2
    assert "b1/end" not in sent
    assert (pool.state.busy, pool.idle.is_set()) == (0, True)


async def test_a_bucket_whose_end_is_not_ours_reports_nothing_more(
        pool: BucketPool, runner: StepRunner, outbox: Outbox) -> None:
    runner.result = None  # as a docker run whose container runs on past the agent
    pool.hold(bucket("b1", tasks=1))
    runner.step()
    await ended(pool)
    assert list(await reports(outbox)) == ["b1/b1-t1/end"]


async def test_a_bucket_of_a_kind_not_run_here_is_not_held(pool: BucketPool) -> None:
    pool.hold(bucket("d1", kind=BucketKind.DOCKER))
    assert not pool.held and pool.idle.is_set()


async def test_the_drain_lets_tasks_end_until_its_deadline_then_stops_them(
        pool: BucketPool, runner: StepRunner, outbox: Outbox) -> None:
    pool.hold(bucket("b1", tasks=2))
    pool.hold(bucket("b2", tasks=1, lane="lane-2"))
    await runner.started(buckets=2)
    runner.step()  # b1's first task ends within the deadline
    await pool.drain(time.monotonic() + 0.2, asyncio.Event())
    assert [(b, reason) for b, reason, _ in runner.stopped] == \
        [("b2", "the agent is stopping")]  # b1 stopped by itself (drain: no second task)
    assert runner.closed and not pool.held
    sent = await reports(outbox)
    assert sent["b1/b1-t2/end"]["message"] == "handed back unstarted (draining)"
    assert {"b1/end", "b2/end"} <= set(sent)
    pool.hold(bucket("b3"))  # a claim answered as the agent stopped: not started
    assert not pool.held


async def test_a_bucket_that_comes_as_the_drain_begins_goes_back_unstarted(
        pool: BucketPool, runner: StepRunner, outbox: Outbox) -> None:
    pool.hold(bucket("b1", tasks=1))
    await runner.started()
    draining = asyncio.create_task(pool.drain(time.monotonic() + 5, asyncio.Event()))
    await asyncio.sleep(0)
    pool.hold(bucket("b2", tasks=2, lane="lane-2"))  # a claim's answer, late
    runner.step()
    await draining
    sent = await reports(outbox)
    assert [sent[f"b2/b2-t{n}/end"]["message"] for n in (1, 2)] == \
        ["handed back unstarted (draining)"] * 2
    assert "b2/end" in sent


async def test_handing_back_stops_every_held_bucket_once(
        pool: BucketPool, runner: StepRunner, outbox: Outbox) -> None:
    """A workstation that takes no work now (agent/availability.py, ``running: handback``)."""
    pool.hold(bucket("b1", tasks=3))
    await runner.started()
    assert pool.hand_back("user active (nimby)") == 1
    assert pool.hand_back("user active (nimby)") == 0  # already stopping: not again
    assert runner.stopped == [("b1", "user active (nimby)", None)]
    await ended(pool)
    sent = await reports(outbox)
    assert [sent[f"b1/b1-t{n}/end"]["message"] for n in (2, 3)] == \
        ["handed back unstarted (the agent takes no work now)"] * 2
    assert "b1/end" in sent


async def test_a_bucket_that_comes_once_work_stopped_goes_back_unstarted(
        pool: BucketPool, runner: StepRunner, outbox: Outbox) -> None:
    pool.hold(bucket("b1", tasks=2), unavailable=True)  # a claim asked for before
    await ended(pool)
    sent = await reports(outbox)
    assert [sent[f"b1/b1-t{n}/end"]["event"] for n in (1, 2)] == ["returned"] * 2
    assert runner.stopped == [] and "b1/end" in sent
