"""core.tasks.Supervisor: named tasks, one failure hook, close within a deadline, twice."""

from __future__ import annotations

import asyncio

import pytest

from core.tasks import Supervisor, SupervisorClosed


async def test_failure_reaches_the_hook_with_the_task_name() -> None:
    seen: list[tuple[str, str]] = []
    tasks = Supervisor("test", on_failure=lambda name, exc: seen.append((name, str(exc))))

    async def broken() -> None:
        raise RuntimeError("disk on fire")

    tasks.spawn(broken(), name="writer")
    await asyncio.sleep(0.01)
    assert seen == [("writer", "disk on fire")]
    assert len(tasks) == 0  # an ended task is forgotten


async def test_close_cancels_and_waits_and_is_safe_twice() -> None:
    tasks = Supervisor("test")
    stopped: list[str] = []

    async def loop(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(name)

    tasks.spawn(loop("a"), name="a")
    tasks.spawn(loop("b"), name="b")
    await asyncio.sleep(0)
    assert tasks.names == ["a", "b"]
    await asyncio.gather(tasks.close(deadline=5), tasks.close(deadline=5))
    await tasks.close()
    assert sorted(stopped) == ["a", "b"]
    assert len(tasks) == 0
    with pytest.raises(SupervisorClosed, match="late"):
        tasks.spawn(asyncio.sleep(0), name="late")


async def test_close_gives_up_on_a_task_that_will_not_stop() -> None:
    tasks = Supervisor("test")
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # refuses to stop

    task = tasks.spawn(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    await tasks.close(deadline=0.05)
    assert not task.done()  # close returned at its deadline, the task is still there
    release.set()
    await task


async def test_cancelling_the_closer_still_cancels_children_and_propagates() -> None:
    tasks = Supervisor("test")
    child_cancelled = asyncio.Event()
    gate = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            child_cancelled.set()
            await gate.wait()  # takes its time to clean up
            raise

    tasks.spawn(slow_to_stop(), name="slow")
    await asyncio.sleep(0)
    closer = asyncio.create_task(tasks.close(deadline=30))
    await child_cancelled.wait()
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer  # the closer's own cancellation is not swallowed
    gate.set()
    await asyncio.sleep(0.01)
    assert len(tasks) == 0
