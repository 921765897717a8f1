"""The assembly and the runner registry: an agent is made of what its settings ask for,
and the idle agent loads neither the Docker SDK nor cryptography."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.assemble import Parts, assemble
from agent.buckets.registry import RUNNERS, runner_class
from agent.config import AgentConfig
from agent.hubs import HubTarget
from agent.notify import Progress
from agent.orgkey import OrgKey
from agent.state import AgentState
from protocol import BucketKind, EnrollRequest, EnrollResponse

HEAVY = ("docker", "cryptography", "sqlalchemy", "jwt", "requests")


def loaded_after(code: str) -> list[str]:
    """The heavy libraries loaded after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in " \
            f"sys.modules}} & {set(HEAVY)!r})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_the_idle_agent_loads_no_heavy_library() -> None:
    assert loaded_after("import agent.daemon") == []
    assert loaded_after("import agent.daemon\nfrom agent.buckets.registry import runner_class\n"
                        "from protocol import BucketKind\n"
                        "runner_class(BucketKind.COMPUTE)") == []


def test_the_docker_runner_brings_the_docker_sdk_and_cryptography() -> None:
    loaded = loaded_after("from agent.buckets.registry import runner_class\n"
                          "from protocol import BucketKind\nrunner_class(BucketKind.DOCKER)")
    assert {"docker", "cryptography"} <= set(loaded)


@pytest.mark.parametrize("kind", list(BucketKind))
def test_every_kind_has_its_runner(kind: BucketKind) -> None:
    assert kind in RUNNERS
    assert runner_class(kind).kind == kind


class Hooks:
    """The agent's side of the assembly, for a test that starts nothing."""

    def enroll_request(self) -> EnrollRequest:
        raise AssertionError("nothing enrolls here")

    def enrolled(self, answer: EnrollResponse) -> None:
        raise AssertionError("nothing enrolls here")

    def retrying(self, error: str) -> None:
        raise AssertionError("nothing is sent here")

    def switched(self, target: HubTarget) -> None:
        raise AssertionError("nothing is sent here")

    async def check_in_now(self) -> None:
        raise AssertionError("nothing checks in here")


@pytest.fixture
async def made(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Parts]:
    config = AgentConfig(hub="http://127.0.0.1:9", api_key="fk_test_key", **request.param)
    state = AgentState(name="test", hub=config.hubs[0], lanes=1)
    hooks = Hooks()
    parts = await assemble(config, tmp_path, agent_id="test-assemble", system=False,
                           state=state, org_key=OrgKey(tmp_path / "key.pem"),
                           progress=Progress(), hooks=hooks)
    yield parts
    await parts.pool.drain(time.monotonic(), asyncio.Event())  # closes the runners
    await parts.hub.close()


@pytest.mark.parametrize("made", [{"transfer": False}], indirect=True)
async def test_an_agent_without_transfers_or_docker_runs_compute_only(made: Parts) -> None:
    assert (made.transfer, made.docker, made.service, made.pins) == (None, None, None, None)
    assert list(made.pool.runners) == [BucketKind.COMPUTE]
    assert made.pool.runners[BucketKind.COMPUTE] is made.compute
    assert made.heartbeats.progress is None
    assert made.heartbeats.output is not None and made.heartbeats.output() == {}  # no task runs
    assert made.status.sections["transfer"] is None and made.status.sections["docker"] is None
    assert made.hub.on_status == made.hub_status.saw
    assert made.sender.idle is made.pool.idle


@pytest.mark.parametrize("made", [{"transfer_ip": "127.0.0.1"}], indirect=True)
async def test_an_agent_with_transfers_claims_slots_and_serves_shares(made: Parts) -> None:
    assert made.transfer is not None and made.service is made.transfer.service
    assert list(made.pool.runners) == [BucketKind.COMPUTE, BucketKind.TRANSFER]
    assert made.pool.free(BucketKind.TRANSFER).slots == 4  # transfer_slots
    assert made.heartbeats.progress == made.transfer.progress
    assert made.checkins.on_shares == made.service.set_shares
    assert made.status.sections["transfer"] == made.service.status
