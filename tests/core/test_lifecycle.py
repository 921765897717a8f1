"""The service shape: the first stop request drains, the second forces; every wait has a deadline."""

from __future__ import annotations

import asyncio
import os
import signal

from core.lifecycle import Service


class Sleeper(Service):
    """A service whose shutdown drains one piece of work of a given length."""

    def __init__(self, work: float, drain_deadline: float) -> None:
        super().__init__(handle_signals=True)
        self.work = work
        self.drain_deadline = drain_deadline
        self.outcome = ""
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        async def job() -> None:
            try:
                await asyncio.sleep(self.work)
                self.outcome = "finished"
            except asyncio.CancelledError as exc:
                self.outcome = f"cancelled: {exc.args[0] if exc.args else ''}"
                raise

        self.task = asyncio.create_task(job())

    async def shutdown(self) -> None:
        assert self.task is not None
        await self.drain([self.task], self.drain_deadline, "drain deadline passed")


async def test_work_that_fits_the_deadline_finishes() -> None:
    service = Sleeper(work=0.2, drain_deadline=30)
    runner = asyncio.create_task(service.serve())
    await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)  # the first signal: drain
    await asyncio.wait_for(runner, 30)
    assert service.outcome == "finished"


async def test_work_past_the_deadline_is_cancelled_with_a_reason() -> None:
    service = Sleeper(work=60, drain_deadline=0.2)
    runner = asyncio.create_task(service.serve())
    await asyncio.sleep(0.05)
    service.request_stop()
    await asyncio.wait_for(runner, 30)
    assert service.outcome == "cancelled: drain deadline passed"


async def test_second_signal_forces() -> None:
    service = Sleeper(work=60, drain_deadline=60)
    runner = asyncio.create_task(service.serve())
    await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.sleep(0.2)
    assert not runner.done() and service.should_exit.is_set() and not service.force_exit
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.wait_for(runner, 30)
    assert service.force_exit
    assert service.outcome == "cancelled: forced stop"
    # handlers are removed again: the default SIGINT behaviour is back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
