"""The agent's /metrics on its status port, against the in-process fake hub
(agent/fakehub.py): what it shows after real runs, a failover, promtool's check, bad
requests, and that an agent nobody scrapes never loads prometheus_client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp

from agent.fakehub import FakeHub
from protocol import routes
from tests.agent.test_loops import KEY, PY, config, running
from tests.promtool import check_metrics, value


async def scrape(url: str, **headers: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics",
                                                          headers=headers) as answer:
        return answer.status, answer.headers.get("Content-Type", ""), await answer.read()


async def test_runs_lanes_outbox_and_checkins_show_on_the_agents_metrics(
        tmp_path: Path) -> None:
    async with FakeHub(api_keys={KEY}) as hub:
        bucket = hub.lease([PY, "-c", "print('one')"], [PY, "-c", "raise SystemExit(3)"])
        async with running(config(hub), tmp_path) as agent:
            await hub.wait_for(lambda: hub.bucket_reports(bucket) != [])
            await hub.wait_for(lambda: agent.state.checkins >= 1)
            status, content_type, page = await scrape(agent.status_server.url)
    assert status == 200 and content_type.startswith("text/plain")
    check_metrics(page)
    assert value(page, "ferry_agent_tasks_run_total") == 2
    assert value(page, "ferry_agent_tasks_failed_total") == 1
    assert value(page, "ferry_agent_lanes") == 2
    assert value(page, "ferry_agent_lanes_busy") == 0  # the bucket ended before the scrape
    assert value(page, "ferry_agent_buckets_held", kind="compute") == 0
    assert value(page, "ferry_agent_checkins_total") >= 1
    assert value(page, "ferry_agent_last_checkin_age_seconds") >= 0
    assert value(page, "ferry_agent_hub_failovers_total") == 0
    # the bucket's end report was acknowledged before the scrape: nothing is owed
    assert value(page, "ferry_agent_outbox_items") == 0
    assert value(page, "ferry_agent_outbox_oldest_age_seconds") == 0
    assert b"ferry_agent_transfer_" not in page  # transfer: false: no transfer service here
    assert value(page, "process_resident_memory_bytes") > 0


async def test_a_held_bucket_and_an_unsent_report_show_while_they_last(
        tmp_path: Path) -> None:
    async with FakeHub(api_keys={KEY}) as hub:
        hub.fail(routes.REPORT, status=503, times=1_000_000)  # the hub takes no report
        bucket = hub.lease([PY, "-c", "import time; time.sleep(60)"])
        (task,) = bucket.tasks
        async with running(config(hub, drain_timeout=1.0), tmp_path) as agent:
            await hub.wait_for(lambda: hub.calls(routes.REPORT) >= 1)  # the start is owed
            _, _, page = await scrape(agent.status_server.url)
            hub.abort(task.id)
            await hub.wait_for(lambda: agent.parts is not None and not agent.parts.pool.held)
            _, _, after = await scrape(agent.status_server.url)
    assert value(page, "ferry_agent_lanes_busy") == 1
    assert value(page, "ferry_agent_buckets_held", kind="compute") == 1
    assert value(page, "ferry_agent_outbox_items") >= 1
    # the run's end and the bucket's end are owed now, on disk with their time
    assert value(after, "ferry_agent_outbox_items") >= 2
    assert value(after, "ferry_agent_outbox_oldest_age_seconds") >= 0
    assert value(after, "ferry_agent_tasks_run_total") == 1
    assert value(after, "ferry_agent_lanes_busy") == 0


async def test_a_failover_is_counted(tmp_path: Path) -> None:
    async with FakeHub(api_keys={KEY}) as first, FakeHub(api_keys={KEY}) as second, \
            running(config(first, second), tmp_path) as agent:
        await first.wait_for(lambda: len(first.checkins) >= 1)
        await first.stop()
        await second.wait_for(lambda: len(second.checkins) >= 1)
        _, _, page = await scrape(agent.status_server.url)
    assert value(page, "ferry_agent_hub_failovers_total") == 1


async def test_bad_requests_to_metrics_are_told_why_and_the_page_stays(tmp_path: Path) -> None:
    async with FakeHub(api_keys={KEY}) as hub, running(config(hub), tmp_path) as agent:
        await hub.wait_for(lambda: len(hub.checkins) >= 1)  # it serves its status by then
        url = agent.status_server.url + "/metrics"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=b"x") as answer:
                assert answer.status == 405
                assert (await answer.json())["error"]["message"] == \
                    "method POST is not allowed on /metrics"
            async with http.get(url, headers={"Accept": "application/json"}) as answer:
                assert answer.status == 406
                assert "text/plain" in (await answer.json())["error"]["message"]
            async with http.get(url, headers={
                    "Accept": "application/openmetrics-text; version=1.0.0"}) as answer:
                assert answer.status == 200
                assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
                assert (await answer.text()).rstrip().endswith("# EOF")
            async with http.get(url) as answer:  # and it serves on
                assert answer.status == 200


def test_an_agent_nobody_scrapes_never_loads_prometheus_client() -> None:
    code = ("import sys, agent.daemon, agent.status, agent.assemble; "
            "sys.exit('prometheus_client' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
