"""Fixtures: isolated folders, real hub and agent processes, a logged-in Session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import psutil
import pytest

from hub import Session
from lanes.accounting import CgroupTree
from lanes.kill import marked
from tests.helpers import ROOT_PASSWORD, Agent, Hub, isolated_env, wait_for

HUB_DEFAULTS: dict[str, Any] = {
    "ip": "127.0.0.1",
    "port": 0,
    "checkin_interval": 0.5,
    "offline_grace": 3,
    "logging": {"level": "DEBUG", "use_console": True},
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """User folders under tmp_path, for this process and the ones it starts."""
    values = isolated_env(tmp_path / "env")
    for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "HOME",
                "FERRY_ROOT_PASSWORD", "PYTHON_KEYRING_BACKEND"):
        monkeypatch.setenv(key, values[key])
    for key in ("FERRY_HUB", "FERRY_USERNAME", "FERRY_PASSWORD", "FERRY_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    return values


# FERRY_TEST_DB=postgresql runs every test's hubs on PostgreSQL (a database of each
# test's own on FERRY_POSTGRES_URL's server) instead of SQLite: .ci/run runs the suite both ways
ON_POSTGRES = os.environ.get("FERRY_TEST_DB") == "postgresql"


# fixtures that start hub or agent processes: a test using one is "slow" (`-m "not slow"`
# runs the fast ones alone: units, and the agent's loops against the in-process fake hub)
PROCESSES = {"start_hub", "start_agent"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that start processes ``slow``. Then, in the PostgreSQL round, only the
    tests whose hubs keep their data in a database of the round run again: those that start
    hubs through ``start_hub`` (``hub``, ``session`` and the fixtures built on them), ask
    for ``postgres_url``, or are marked
    ``hub_database`` (hubs of their own that honour FERRY_TEST_DB). The others (lanes,
    transports, the servers database, service units, the CLI's and the demo's own hubs)
    would run exactly as in the SQLite round, and are skipped saying so; so are those
    marked ``one_round`` (what they test is the agent's, or their hubs are on PostgreSQL
    in both rounds), to keep CI's two rounds within their time."""
    for item in items:
        if PROCESSES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    if not ON_POSTGRES:
        return
    again = {"start_hub", "postgres_url"}
    skip = pytest.mark.skip(reason="uses no hub database of the round: it runs in the SQLite "
                            "round only")
    for item in items:
        once = item.get_closest_marker("one_round")
        if once is not None:  # its hubs' storage is not what it tests (the reason says what)
            item.add_marker(pytest.mark.skip(reason=f"{once.args[0]}: it runs in the SQLite "
                                             "round only"))
        elif not (again & set(getattr(item, "fixturenames", ()))
                  or item.get_closest_marker("hub_database")):
            item.add_marker(skip)


@pytest.fixture
def start_hub(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Hub]]:
    started: list[Hub] = []
    names = count(1)
    with contextlib.ExitStack() as databases:
        def start(**overrides: Any) -> Hub:
            section = {**HUB_DEFAULTS, **overrides}
            if ON_POSTGRES and "uri" not in overrides:
                section["uri"] = databases.enter_context(postgres_database())
            hub = Hub("hub", f"h{next(names)}", tmp_path, section, env)
            hub.start()
            started.append(hub)
            return hub

        try:
            yield start
        finally:
            for hub in started:
                hub.kill()


@pytest.fixture
def hub(start_hub: Callable[..., Hub]) -> Hub:
    return start_hub()


@pytest.fixture
def session(hub: Hub) -> Session:
    return Session(hub.url, username="root", password=ROOT_PASSWORD)


@pytest.fixture
def start_agent(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Agent]]:
    started: list[Agent] = []
    names = count(1)

    def start(hub: Hub, api_key: str, /, **overrides: Any) -> Agent:
        section = {"hub": hub.url, "api_key": api_key, "retry_max_delay": 0.5,
                   "transfer_ip": "127.0.0.1", "logging": {"level": "DEBUG"}, **overrides}
        agent = Agent("agent", f"a{next(names)}", tmp_path, section, env)
        agent.start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()
        # a killed agent leaves its tasks running; they carry its id
        agent_id = agent.info.get("agent_id", "-")
        for proc in marked("FERRY_AGENT_ID", agent_id):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        cgroups = CgroupTree(agent_id)  # and the cgroup folder it could not remove
        cgroups.kill_all()
        cgroups.close()


IMAGE = "ferry-test/busybox:1"  # scripts/docker.sh builds it


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """The Docker engine with the test image; a skip naming why when there is none (a
    failure when FERRY_REQUIRE_DOCKER=1, as in CI)."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
        client.images.get(IMAGE)
    except Exception as exc:
        why = f"no Docker engine with the image {IMAGE} ({exc}); run `bash scripts/docker.sh`"
        if os.environ.get("FERRY_REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    yield client
    client.close()


@pytest.fixture
def node_key(session: Session) -> Callable[[str], dict[str, Any]]:
    def make(name: str) -> dict[str, Any]:
        return session.create("Node", {"name": name})  # type: ignore[no-any-return]

    return make


POSTGRES_URL = "postgresql://ferry:ferry@127.0.0.1:5432/postgres"  # scripts/postgres.sh


async def _postgres_admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own (FERRY_POSTGRES_URL names the server),
    dropped afterwards. No server: skipped, or failed when FERRY_REQUIRE_POSTGRES=1."""
    with postgres_database() as url:
        yield url


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    base = os.environ.get("FERRY_POSTGRES_URL", POSTGRES_URL)
    try:
        asyncio.run(_postgres_admin(base, "select 1"))
    except Exception as exc:  # any failure means: no server to test on
        why = f"no PostgreSQL at {base} ({type(exc).__name__}: {exc}); " \
              "bash scripts/postgres.sh starts one"
        if os.environ.get("FERRY_REQUIRE_POSTGRES") == "1":
            pytest.fail(why)
        pytest.skip(why)
    name = f"ferry_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_postgres_admin(base, f"create database {name}"))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        for attempt in range(20):
            try:
                asyncio.run(_postgres_admin(base, f"drop database if exists {name} with (force)"))
                break
            except Exception:  # a killed hub's connection still starting up: not yet a backend
                if attempt == 19:  # of a role that may be ended
                    raise
                time.sleep(0.25)



@dataclass
class Sites:
    """Two agents, each serving one share: transfers between them."""

    projects: Path  # served by source_agent
    backup: Path  # served by dest_agent, which runs the (pulled) transfers
    source_agent: Agent
    dest_agent: Agent


@pytest.fixture
def two_sites(hub: Hub, session: Session, node_key: Callable[[str], dict[str, Any]],
              start_agent: Callable[..., Agent], tmp_path: Path) -> Sites:
    source_agent = start_agent(hub, node_key("storage-a")["api_key"], lanes=1)
    dest_agent = start_agent(hub, node_key("storage-b")["api_key"], lanes=1)
    a = wait_for(lambda: source_agent.status()["client_id"], what="a enrolled")
    b = wait_for(lambda: dest_agent.status()["client_id"], what="b enrolled")
    projects, backup = tmp_path / "a" / "projects", tmp_path / "b" / "backup"
    projects.mkdir(parents=True)
    backup.mkdir(parents=True)
    session.create("Share", {"name": "projects", "client": a, "path": str(projects)})
    session.create("Share", {"name": "backup", "client": b, "path": str(backup)})
    wait_for(lambda: source_agent.status()["transfer"]["shares"] == ["projects"], what="a")
    wait_for(lambda: dest_agent.status()["transfer"]["shares"] == ["backup"], what="b")
    return Sites(projects, backup, source_agent, dest_agent)
