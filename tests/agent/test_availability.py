"""The availability loop in a real agent, against the in-process fake hub: a schedule
closed by its clock file is judged before the first check-in and claim, so the agent
never claims, and every check-in says why; the window opening is checked in and the work
runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import ScheduleConfig
from agent.fakehub import FakeHub
from protocol import routes
from tests.agent.test_loops import KEY, PY, config, running

CLOSED = "outside schedule (next window tue 19:00)"


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    async with FakeHub(api_keys={KEY}) as fake:
        yield fake


async def test_a_closed_schedule_claims_nothing_and_says_why(hub: FakeHub,
                                                             tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    clock.write_text("2026-12-08T08:00:00")
    bucket = hub.lease([PY, "-c", "print('ran')"])
    schedule = ScheduleConfig(windows=["mon-fri 19:00-07:00"], clock=str(clock))
    async with running(config(hub, schedule=schedule), tmp_path / "data") as agent:
        await hub.wait_for(lambda: len(hub.checkins) >= 3)
        assert {body.status_reason for _, body in hub.checkins} == {CLOSED}
        assert hub.calls(routes.CLAIM) == 0 and hub.bucket_reports(bucket) == []
        assert agent.state.as_json()["status_reason"] == CLOSED
        clock.write_text("2026-12-08T19:00:00")
        await hub.wait_for(lambda: hub.checkins[-1][1].status_reason is None)
        await hub.wait_for(lambda: hub.bucket_reports(bucket) != [])
    assert hub.task_events(bucket)[bucket.tasks[0].id][-1] == "done"
