"""The hub's background tasks belong to supervisors: each part starts its tasks, stops
them when it closes, and a closer that is itself cancelled stays cancelled (a shutdown
whose own deadline passed must not carry on as if nothing happened)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from hub.checkins import CheckinWriter
from hub.errors import ShuttingDown
from hub.jobs.dispatch import Dispatcher
from hub.storage.db import Database
from hub.storage.models import utcnow
from hub.wakeup import WorkSignal

# a PostgreSQL nobody listens on: the channel keeps trying to connect until it is closed
NOWHERE = "postgresql://ferry:ferry@127.0.0.1:1/ferry"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database("sqlite:///hub.sqlite", tmp_path)
    await database.migrate()
    yield database
    await database.close()


async def cancelled_while_closing(close: Callable[[], Awaitable[None]]) -> None:
    """Start ``close``, let it begin stopping its tasks, then cancel it: the cancellation
    must come out of it."""
    closer = asyncio.ensure_future(close())
    await asyncio.sleep(0)  # it has told its tasks to stop and waits for them
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer


async def test_the_work_channel_stops_and_keeps_its_closers_cancellation() -> None:
    work = WorkSignal(NOWHERE)
    work.start()
    await asyncio.sleep(0.05)
    assert work._channel is not None and work._channel._tasks.names == ["work-channel"]
    await cancelled_while_closing(work.close)
    await work.close()  # twice: nothing left to stop
    assert len(work._channel._tasks) == 0


async def test_the_dispatcher_stops_its_sweeper_and_keeps_its_closers_cancellation(
        db: Database) -> None:
    dispatcher = Dispatcher(db, WorkSignal(), lease=60, heartbeat=10, wait_max=30)
    await dispatcher.start()
    assert dispatcher._tasks.names == ["lease-sweeper"]
    await cancelled_while_closing(dispatcher.close)
    await dispatcher.close()
    assert len(dispatcher._tasks) == 0


async def test_a_closing_dispatcher_answers_waiting_claims_at_once(db: Database) -> None:
    dispatcher = Dispatcher(db, WorkSignal(), lease=60, heartbeat=10, wait_max=30)
    await dispatcher.start()
    claim = asyncio.ensure_future(dispatcher.claim("nobody", [], wait=30, slots=1))
    await asyncio.sleep(0.1)
    assert not claim.done()
    await dispatcher.close()
    assert await asyncio.wait_for(claim, timeout=5) == []


async def test_the_checkin_writer_stops_and_keeps_its_closers_cancellation(
        db: Database) -> None:
    writer = CheckinWriter(db)
    writer.start()
    assert writer._tasks.names == ["checkin-writer"]
    await cancelled_while_closing(writer.close)
    assert len(writer._tasks) == 0
    with pytest.raises(ShuttingDown):
        await writer.record("c", utcnow(), {}, None, "127.0.0.1", None, None, None, None)


async def test_a_writer_that_dies_tells_its_owner(db: Database) -> None:
    died: list[str] = []
    writer = CheckinWriter(db, on_failure=lambda name, exc: died.append(f"{name}: {exc}"))

    async def broken(_batch: object) -> None:
        raise RuntimeError("disk on fire")

    writer._settle = broken  # type: ignore[method-assign]
    writer.start()
    pending = asyncio.ensure_future(writer.record("c", utcnow(), {}, None, "127.0.0.1", None,
                                                  None, None, None))
    await asyncio.sleep(0.1)
    assert died == ["checkin-writer: disk on fire"]
    pending.cancel()
    await writer.close(deadline=0.1)
