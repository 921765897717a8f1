"""One real hub and one real agent for all the reference's examples (module scope: the
examples share them, so the module runs in a few seconds more than one hub start)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hub import Session
from tests.conftest import HUB_DEFAULTS, ON_POSTGRES, postgres_database
from tests.helpers import ROOT_PASSWORD, Agent, Hub, http, isolated_env, wait_for

# finished jobs leave the default queries after 1 s and need archived=True after 2.5 s
# (jobs.rst: one hour and 14 days), so "Inactive jobs" runs in seconds
HUB = {**HUB_DEFAULTS, "job_inactive_after": 1, "job_archive_after": 2.5}


@dataclass
class Ref:
    """What the examples run against: the hub, its agent (serving share ``projects`` at
    site hq), root's Session, the environment of ``ferry`` processes."""

    hub: Hub
    agent: Agent
    session: Session
    env: dict[str, str]
    tmp: Path
    client_id: str
    projects: Path
    made: dict[str, Any] = field(default_factory=dict)

    def organization(self, name: str = "IKNL", **fields: Any) -> dict[str, Any]:
        """The organization ``name``, made if missing (examples that need one)."""
        found = self.session.find_one(f'Organization where name="{name}"')
        if found is not None:
            return found
        return dict(self.session.create("Organization", {"name": name, **fields}))

    def collaboration(self, name: str = "collaboration-name") -> dict[str, Any]:
        found = self.session.find_one(f'Collaboration where name="{name}"')
        if found is not None:
            return found
        orgs = [self.organization()["id"], self.organization("Other")["id"]]
        return dict(self.session.create("Collaboration", {"name": name,
                                                          "organizations": orgs}))

    def paused_job(self, **extra: Any) -> dict[str, Any]:
        """A compute job that waits (paused): for examples that change or find jobs."""
        return dict(self.session.create("Job", {
            "compute": {"command": ["true"], "items": "1-2"}, "status": "paused", **extra}))

    def transfer(self, **extra: Any) -> dict[str, Any]:
        """jobs.rst's transfer job (paused): a file of share projects to lars@edit.com."""
        if self.session.find_one("User where username=lars@edit.com") is None:
            self.session.create("User", {"username": "lars@edit.com", "email": "lars@edit.com",
                                         "password": "lars first password"})
        job = self.session.create("Job", {"source": "share=projects/thefilm/latest_edit.mov",
                                          "destination": "lars@edit.com", "status": "paused",
                                          **extra})
        return dict(job[0] if isinstance(job, list) else job)

    def offline_client(self, *, shared: bool = False) -> str:
        """A client that enrolled once and never checked in again: offline after the hub's
        offline_grace. ``shared``: the one such client of the examples that keep it."""
        if shared and "offline" in self.made:
            return str(self.made["offline"])
        key = self.session.create("Node", {"name": f"gone-{uuid.uuid4().hex[:6]}"})["api_key"]
        status, enrolled = http("POST", f"{self.hub.api}/agent/enroll", {
            "api_key": key, "machine_id": uuid.uuid4().hex, "code": "gone", "type": 1,
            "lanes": 0})
        assert status == 200, enrolled
        wait_for(lambda: self.session.get("Client", enrolled["client_id"])["status"] ==
                 "offline", what="the client offline")
        if shared:
            self.made["offline"] = enrolled["client_id"]
        return str(enrolled["client_id"])


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ref]:
    tmp = tmp_path_factory.mktemp("reference")
    env = isolated_env(tmp / "env")
    with pytest.MonkeyPatch.context() as mp, contextlib.ExitStack() as stack:
        for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME",
                    "HOME", "FERRY_ROOT_PASSWORD", "PYTHON_KEYRING_BACKEND"):
            mp.setenv(key, env[key])
        section = dict(HUB)
        if ON_POSTGRES:
            section["uri"] = stack.enter_context(postgres_database())
        hub = Hub("hub", "ref", tmp, section, env)
        stack.callback(hub.kill)
        hub.start()
        session = Session(hub.url, username="root", password=ROOT_PASSWORD)
        key = session.create("Node", {"name": "WIN_SERVER"})["api_key"]
        agent = Agent("agent", "ref", tmp, {
            "hub": hub.url, "api_key": key, "retry_max_delay": 0.5, "lanes": 1,
            "transfer_ip": "127.0.0.1", "logging": {"level": "DEBUG"}}, env)
        stack.callback(agent.kill)
        agent.start()
        client = wait_for(lambda: agent.status()["client_id"], what="the agent enrolled")
        projects = tmp / "projects"
        (projects / "thefilm").mkdir(parents=True)
        (projects / "thefilm" / "latest_edit.mov").write_bytes(b"edit" * 1024)
        session.create("Share", {"name": "projects", "client": client, "path": str(projects)})
        wait_for(lambda: agent.status()["transfer"]["shares"] == ["projects"],
                 what="the share served")
        yield Ref(hub, agent, session, env, tmp, client, projects)
