"""The agent's loops against the in-process fake hub (agent/fakehub.py): check-in, claim,
heartbeat, outbox, failover and drain, with real lanes (tasks are real processes) and no hub
process or database. What needs a real hub (dispatch, leases expiring, permissions) is in the
end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog.testing

from agent.config import AgentConfig
from agent.daemon import Agent
from agent.fakehub import FakeHub
from agent.outbox import Outbox
from protocol import routes
from protocol.work import BucketReport

KEY = "node-key-0123456789"
PY = sys.executable


def config(*hubs: FakeHub, **overrides: Any) -> AgentConfig:
    section: dict[str, Any] = {
        "hub": [hub.url for hub in hubs] if len(hubs) > 1 else hubs[0].url,
        "api_key": KEY, "lanes": 2, "transfer": False, "retry_max_delay": 0.2,
        "request_timeout": 5.0, "failback_interval": 0.5, "drain_timeout": 20.0,
        "logging": {"level": "WARNING"}}
    section.update(overrides)
    return AgentConfig(**section)


@contextlib.asynccontextmanager
async def running(cfg: AgentConfig, data: Path) -> AsyncIterator[Agent]:
    agent = Agent(cfg, "fast", data, handle_signals=False)
    serving = asyncio.create_task(agent.serve())
    try:
        yield agent
    finally:
        agent.request_stop()
        await asyncio.wait_for(serving, 30)


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    async with FakeHub(api_keys={KEY}) as fake:
        yield fake


async def test_enrolls_checks_in_with_metrics_and_says_goodbye(hub: FakeHub,
                                                              tmp_path: Path) -> None:
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: len(hub.checkins) >= 2)
    (client_id, first), = [c for c in hub.checkins[:1]]
    assert client_id in hub.enrolled
    assert hub.enrolled[client_id].request.lanes == 2
    assert first.metrics.c >= 1 and first.metrics.mpt > 0
    assert hub.calls(routes.GOODBYE) == 1  # a stopping agent goes offline at once


async def test_a_bucket_runs_in_order_and_is_reported_with_its_timing(hub: FakeHub,
                                                                     tmp_path: Path) -> None:
    bucket = hub.lease([PY, "-c", "print('one')"], [PY, "-c", "raise SystemExit(3)"])
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: hub.bucket_reports(bucket) != [])
    first, second = (t.id for t in bucket.tasks)
    # a task that ends before its start report leaves goes as its end alone
    events = hub.task_events(bucket)
    assert (events[first][-1], events[second][-1]) == ("done", "failed")
    assert "one" in hub.task_report(first, "done").log_tail
    assert hub.task_report(second, "failed").exit_code == 3
    timing: BucketReport = hub.bucket_reports(bucket)[0]
    assert timing.started <= timing.ended


async def test_reports_survive_a_failing_hub_and_are_applied_once(hub: FakeHub,
                                                                  tmp_path: Path) -> None:
    hub.fail(routes.REPORT, status=503, times=3, retry_after=0.05)
    bucket = hub.lease([PY, "-c", "pass"])
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: hub.bucket_reports(bucket) != [])
    assert hub.calls(routes.REPORT) >= 4  # three refused, then through
    (task,) = bucket.tasks
    assert hub.task_events(bucket)[task.id][-1] == "done"
    assert len({r.key for r in hub.reports.values()}) == len(hub.reports)  # none twice


async def test_a_heartbeat_abort_kills_the_running_task(hub: FakeHub, tmp_path: Path) -> None:
    bucket = hub.lease([PY, "-c", "import time; time.sleep(60)"], [PY, "-c", "pass"])
    running_task, after = (t.id for t in bucket.tasks)
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: running_task in hub.task_events(bucket))
        hub.abort(running_task)
        await hub.wait_for(lambda: hub.bucket_reports(bucket) != [])
    events = hub.task_events(bucket)
    assert events[running_task] == ["started", "aborted"]
    assert events[after][-1] == "done"  # the bucket goes on with the next task


async def test_a_revoked_token_makes_the_agent_enroll_again(hub: FakeHub,
                                                            tmp_path: Path) -> None:
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: len(hub.checkins) >= 1)
        (client_id,) = hub.enrolled
        first_token = hub.enrolled[client_id].token
        hub.revoke(client_id)
        await hub.wait_for(lambda: hub.enrolled[client_id].token != first_token
                           and len(hub.checkins) >= 3)
    assert hub.calls(routes.ENROLL) == 2


async def test_fails_over_to_the_second_hub_and_back(tmp_path: Path) -> None:
    async with FakeHub(api_keys={KEY}) as first, FakeHub(api_keys={KEY}) as second:
        port = int(first.url.rsplit(":", 1)[1])
        async with running(config(first, second), tmp_path):
            await first.wait_for(lambda: len(first.checkins) >= 1)
            await first.stop()  # the first hub goes down
            await second.wait_for(lambda: len(second.checkins) >= 1)
            bucket = second.lease([PY, "-c", "pass"])
            await second.wait_for(lambda: second.bucket_reports(bucket) != [])
            await first.start(port)  # back on the same address
            seen = len(first.checkins)
            await first.wait_for(lambda: len(first.checkins) > seen)
        assert second.calls(routes.ENROLL) == 1


async def test_a_drain_finishes_running_work_and_hands_back_the_rest(hub: FakeHub,
                                                                     tmp_path: Path) -> None:
    agent = Agent(config(hub, lanes=1), "fast", tmp_path, handle_signals=False)
    serving = asyncio.create_task(agent.serve())
    busy = hub.lease([PY, "-c", "import time; time.sleep(1.5)"])
    await hub.wait_for(lambda: busy.tasks[0].id in hub.task_events(busy))
    waiting = hub.lease([PY, "-c", "pass"])  # queued: no free lane to claim it
    agent.request_stop()
    await asyncio.wait_for(serving, 30)
    assert hub.task_events(busy)[busy.tasks[0].id][-1] == "done"
    assert hub.task_events(waiting) == {}
    assert [body.reason for _, body in hub.resets][-1:] == ["stopped"]


async def test_bad_answers_from_the_hub_are_retried_not_fatal(hub: FakeHub,
                                                              tmp_path: Path) -> None:
    calls = {"n": 0}
    honest = hub.handlers["checkin"]

    def garbled(body: Any, caller: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            return {"client_id": 42}  # not a check-in answer
        return honest(body, caller)

    hub.handlers["checkin"] = garbled
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: len(hub.checkins) >= 1 and calls["n"] >= 3)


async def test_a_long_log_is_uploaded_whole(hub: FakeHub, tmp_path: Path) -> None:
    bucket = hub.lease([PY, "-c", "print('x' * 10000)"])
    (task,) = bucket.tasks
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: task.id in hub.logs)
    assert hub.logs[task.id].strip() == b"x" * 10000
    assert len(hub.task_report(task.id, "done").log_tail) <= 4096 + 1


async def test_a_running_tasks_output_rides_on_the_heartbeats(hub: FakeHub,
                                                              tmp_path: Path) -> None:
    """While a compute task runs, what its log gained since the last heartbeat rides on the
    next one (the hub's log_tail follows it live: ``ferry task log --follow``), in order,
    each piece once, whole characters only; its end report carries the tail as before."""
    script = ("import sys, time\n"
              "for n in range(6):\n"
              "    sys.stdout.write(f'line {n} \u00e9t\u00e9\\n'); sys.stdout.flush()\n"
              "    time.sleep(0.15)\n"
              "time.sleep(0.5)\n")
    bucket = hub.lease([PY, "-c", script])
    (task,) = bucket.tasks
    async with running(config(hub), tmp_path):
        await hub.wait_for(lambda: hub.bucket_reports(bucket) != [])
    pieces = [body.logs[task.id] for _, body in hub.heartbeats if task.id in body.logs]
    expected = "".join(f"line {n} \u00e9t\u00e9\n" for n in range(6))
    assert len(pieces) >= 2, "the output came in more than one heartbeat"
    assert "".join(pieces) == expected
    assert hub.task_report(task.id, "done").log_tail == expected


def test_a_character_cut_by_the_read_waits_for_the_next_heartbeat() -> None:
    from agent.buckets.compute import _whole

    text = "a\u00e9\u20ac\U0001f600".encode()  # 1, 2, 3 and 4 bytes
    for cut in range(len(text) + 1):
        whole = _whole(text[:cut])
        assert text[:whole].decode() == text[:cut].decode("utf-8", "ignore"), cut


async def test_a_report_no_hub_takes_any_more_is_dropped_not_fatal(hub: FakeHub,
                                                                   tmp_path: Path) -> None:
    """An outbox written by an agent from before may hold a kind of report that is gone
    (a request's small files, ``"kind": "files"``): it is dropped with an error, and
    what was queued beside it, and after it, is sent."""
    box = Outbox(tmp_path / "outbox.sqlite")
    await box.open()
    box.add("report", "b0/files/0", msgspec.json.encode({
        "kind": "files", "key": "b0/files/0", "bucket_id": "b0", "at": "2026-12-01T00:00:00Z",
        "started": "2026-12-01T00:00:00Z", "files": [{"task_id": "t0", "size": 1}]}))
    box.add("report", "b0/end", msgspec.json.encode(BucketReport(
        key="b0/end", bucket_id="b0", started="2026-12-01T00:00:00Z",
        ended="2026-12-01T00:00:01Z")))
    await box.close()
    with structlog.testing.capture_logs() as logs:
        async with running(config(hub), tmp_path):
            await hub.wait_for(lambda: "b0/end" in hub.reports)
            bucket = hub.lease([PY, "-c", "pass"])
            await hub.wait_for(lambda: hub.bucket_reports(bucket) != [])
    assert "b0/files/0" not in hub.reports
    assert [e["key"] for e in logs if e["log_level"] == "error"] == ["b0/files/0"]
