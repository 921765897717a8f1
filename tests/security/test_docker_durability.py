"""A finished Docker run's result survives the agent dying right after the run (issue 14,
finding 6): its end report is durable in the outbox before the container and the run's
saved work go, and the saved work stays until the hub has the report.

Real processes: a hub, an agent, the Docker engine. The test watches the engine's events
and SIGKILLs the agent the moment the run's container dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import msgspec
import pytest

from agent.buckets.base import Held
from agent.buckets.docker import DockerRunner
from agent.buckets.pool import BucketPool
from agent.buckets.reports import Reporter
from agent.config import DockerConfig, ImagesConfig
from agent.docker_runs import DockerRuns
from agent.orgkey import OrgKey
from agent.outbox import Outbox
from agent.state import AgentState
from hub import Session
from lanes import containers, docker_lane
from protocol import BucketWork, DockerWork, TaskWork
from tests.conftest import IMAGE
from tests.e2e.test_docker_jobs import (
    Federation,
    assert_no_containers_left,
    containers_of,
    make_federation,
)
from tests.helpers import Agent, Hub, wait_for

pytestmark = pytest.mark.one_round("the agent's durable end of a run")

ORG = "Amsterdam"
# kill the agent as the container dies (before the agent has read its end, mostly), and
# as it is removed (the agent has read it: its end report must be on disk by then)
ROUNDS = ("die", "destroy", "die")


class KillOnDie:
    """SIGKILLs ``agent`` as soon as the engine reports ``event`` (``die``: one of its
    containers ended; ``destroy``: one was removed); the events stream is open before the
    run starts, so none is missed."""

    def __init__(self, engine: docker.DockerClient, agent: Agent, event: str = "die") -> None:
        self.agent = agent
        self.died: list[str] = []  # run ids, in order
        self.killed = threading.Event()
        self._events = engine.events(decode=True, filters={
            "event": event, "label": f"ferry.agent={agent.info['agent_id']}"})
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        for event in self._events:
            run_id = event["Actor"]["Attributes"].get("ferry.run", "")
            if self.agent.proc is not None and self.agent.proc.poll() is None:
                self.agent.proc.kill()
                self.agent.proc.wait()
            self.died.append(run_id)
            self.killed.set()
            return

    def close(self) -> None:
        self._events.close()
        self._thread.join(10)


@pytest.fixture
def federation(engine: docker.DockerClient, hub: Hub, session: Session, start_agent: Any,
               tmp_path: Path) -> Iterator[Federation]:
    # not encrypted: the result the hub keeps is the very bytes the container wrote
    fed = make_federation(hub, session, start_agent, tmp_path, encrypted=False, orgs=(ORG,))
    yield fed
    assert_no_containers_left(engine, fed)


def work_files(agent: Agent) -> list[Path]:
    return sorted((agent.paths.data_dir / "docker" / "work").glob("*.json"))


def test_a_run_killed_as_its_container_dies_ends_done_with_its_result(
        federation: Federation, engine: docker.DockerClient) -> None:
    fed = federation
    agent = fed.agents[ORG]
    for n, event in enumerate(ROUNDS):
        watcher = KillOnDie(engine, agent, event)
        try:
            expected = f"round {n}: \u00e9t\u00e9 {time.time_ns()}"
            job = fed.submit({ORG: expected}, "cat /ferry/input/input > /ferry/output/result")
            assert watcher.killed.wait(60), "the run's container never died"
        finally:
            watcher.close()
        run_id = watcher.died[0]
        assert not agent.alive
        agent.start()
        assert fed.finished(job["id"])["status"] == "done", agent.log()[-4000:]
        run = fed.root.get("Task", fed.runs(job["id"])[ORG]["id"])
        assert run["id"] == run_id
        assert (run["status"], run["result"]) == ("done", expected), run
        assert run["attempts"] == 0, run  # the hub never took it back to run again
        starts = [e for e in engine.events(since=int(time.time()) - 300,
                                           until=int(time.time()) + 1, decode=True,
                                           filters={"label": f"ferry.run={run_id}",
                                                    "event": "start"})]
        assert len(starts) == 1, starts  # one container, started once
        wait_for(lambda r=run_id: not containers_of(engine, r), what="container removed")
        wait_for(lambda: not work_files(agent), what="work file removed")


# -- in process: the order of the durable steps, against the real engine, lane and outbox

@pytest.fixture
async def docker_work(engine: docker.DockerClient, tmp_path: Path
                      ) -> AsyncIterator[tuple[BucketPool, DockerRuns, Outbox]]:
    """A pool with a docker runner on real ``DockerRuns`` (real engine, lane, outbox) and
    no hub: reports stay in the outbox, acknowledged by the test."""
    agent_id = f"test-{uuid.uuid4().hex[:10]}"
    outbox = Outbox(tmp_path / "outbox.sqlite")
    await outbox.open()
    runs = DockerRuns(DockerConfig(images=ImagesConfig(names=[IMAGE]), cpus=0.5, memory="64m",
                                   pids=64), tmp_path / "docker", agent_id,
                      OrgKey(tmp_path / "organization-key.pem"), lambda: "http://hub.invalid")
    await asyncio.to_thread(runs.pins.enrolled, "collaboration", False)
    assert await runs.start() == []
    pool = BucketPool([DockerRunner(runs)], Reporter(outbox, tmp_path / "logs"),
                      AgentState(name="t", hub="-", lanes=0))
    try:
        yield pool, runs, outbox
    finally:
        await runs.close()
        await outbox.close()
        left = await asyncio.to_thread(engine.containers.list, all=True,
                                       filters={"label": f"ferry.agent={agent_id}"})
        for container in left:
            await asyncio.to_thread(container.remove, force=True)
        assert not left, f"containers left behind: {[c.name for c in left]}"


def docker_bucket(run_id: str, command: str) -> BucketWork:
    return BucketWork(id=f"bucket-{run_id}", job_id="job1", lane_id="", kind="docker", tasks=[
        TaskWork(id=run_id, uri="0", item="x", argv=[], attempt=1, docker=DockerWork(
            image=IMAGE, job_id="job1", organization="org", initiator="org",
            command=["sh", "-c", command], input="input")),
    ])


def queued(outbox: Outbox, key: str) -> bool:
    """Is the item committed to the outbox's file (seen from a connection of our own)?"""
    with contextlib.closing(sqlite3.connect(f"file:{outbox.path}?mode=ro", uri=True)) as db:
        return db.execute("SELECT 1 FROM outbox WHERE key = ?", (key,)).fetchone() is not None


async def test_the_end_report_is_on_disk_before_the_container_goes(
        docker_work: tuple[BucketPool, DockerRuns, Outbox], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    pool, runs, outbox = docker_work
    bucket = docker_bucket("r1", "printf 'the result' > /ferry/output/result")
    key = f"{bucket.id}/r1/end"
    seen: list[tuple[str, bool, list[str]]] = []  # at each removal: the report, the work files
    real_remove = docker_lane.remove

    def remove(container: Any) -> None:
        seen.append((container.labels["ferry.run"], queued(outbox, key),
                     sorted(p.name for p in (runs.base / "work").iterdir())))
        real_remove(container)

    monkeypatch.setattr(docker_lane, "remove", remove)
    monkeypatch.setattr(containers, "remove", remove)
    assert await pool.runners[bucket.kind].run(Held(bucket), pool.reporter) == 1
    assert seen == [("r1", True, ["r1.json.reported"])]
    [item] = [i for i in await outbox.take() if i.key == key]
    report = msgspec.json.decode(item.body)
    assert (report["event"], report["result"]) == ("done", "the result")
    assert not runs.lane.run_folder("r1").exists()  # type: ignore[union-attr]
    # the work file waits for the hub's answer for the report
    await asyncio.sleep(0.2)
    assert (runs.base / "work" / "r1.json.reported").exists()
    await outbox.ack([item.id])
    await until(lambda: not any((runs.base / "work").iterdir()), "work file removed")


async def test_a_restart_keeps_reported_runs_until_the_hub_has_them_and_forgets_the_others(
        docker_work: tuple[BucketPool, DockerRuns, Outbox]) -> None:
    pool, runs, outbox = docker_work
    folder = runs.base / "work"
    reported, lost = docker_bucket("r2", "true"), docker_bucket("r3", "true")
    # what an agent killed after step 3 leaves (report queued, container gone), and one
    # whose container someone removed while the agent was down (never reported)
    (folder / "r2.json.reported").write_bytes(msgspec.json.encode(reported))
    (folder / "r3.json").write_bytes(msgspec.json.encode(lost))
    pool.reporter.task(reported, reported.tasks[0], "done", time.time())
    await outbox.flush()
    await runs.close()  # the agent stops; a new one starts
    again = DockerRuns(runs.config, runs.base, runs.agent_id, runs.org_key, runs.hub_url)
    runner = DockerRunner(again)
    try:
        kept = await again.start()
        assert [(b.id, a) for b, a in kept] == [(reported.id, None)]
        assert runner.adopt(kept, pool) == [reported.id]  # its lease is kept...
        assert sorted(p.name for p in folder.iterdir()) == ["r2.json.reported"]
        await asyncio.sleep(0.2)
        assert (folder / "r2.json.reported").exists()  # ...until the hub has the report
        await outbox.ack([i.id for i in await outbox.take()])
        await until(lambda: not any(folder.iterdir()), "work file removed")
    finally:
        await again.close()


async def until(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Wait for ``check``; the limit only keeps a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)
