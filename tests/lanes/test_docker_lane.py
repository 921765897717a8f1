"""The Docker lane against a real engine (``bash scripts/docker.sh`` starts one and builds the
busybox test image): image policy, limits, OOM, abort, timeout, re-adoption after a restart,
isolation (network, other runs' folders), malformed specs.

Each test's containers carry an agent id of its own; the fixture fails a test that leaves any.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import docker
import psutil
import pytest

from core.errors import ConfigError
from lanes.containers import container_config
from lanes.docker_lane import Detached, DockerLane
from lanes.docker_spec import DockerRun, Grant, NodeLimits, SpecError
from lanes.images import ImagePolicy, ResolvedImage, normalise
from tests.conftest import IMAGE

POLICY = ImagePolicy.build(names=[IMAGE])
LIMITS = NodeLimits(cpus=0.5, memory=64 << 20, pids=64)
MiB = 1 << 20
# a run that waits until the test drops its go-file into the job's temporary folder
WAIT_FOR_GO = ("echo started-$FERRY_RUN_ID; while [ ! -e /ferry/tmp/go-$FERRY_RUN_ID ]; "
               "do sleep 0.1; done; echo finished-$FERRY_RUN_ID")

MakeLane = Callable[..., Awaitable[DockerLane]]


@pytest.fixture
def agent_id() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def make_lane(engine: docker.DockerClient, agent_id: str,
                    tmp_path: Path) -> AsyncIterator[MakeLane]:
    """``await make_lane(**kwargs)``: a started lane of this test's agent (``agent=`` another
    id that starts with it); closed afterwards, and no container of the test may be left."""
    lanes: list[DockerLane] = []
    base = tmp_path / "lane"

    async def make(agent: str = agent_id, **kwargs: Any) -> DockerLane:
        kwargs.setdefault("policy", POLICY)
        kwargs.setdefault("limits", LIMITS)
        lane = DockerLane(agent, base, **kwargs)
        await lane.start()
        lanes.append(lane)
        return lane

    yield make
    for lane in lanes:
        await lane.close()
    left = [c for c in await asyncio.to_thread(
        engine.containers.list, all=True, filters={"label": "ferry.agent"})
        if c.labels["ferry.agent"].startswith(agent_id)]
    for container in left:
        await asyncio.to_thread(container.remove, force=True)
    shutil.rmtree(base, ignore_errors=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


def spec(run_id: str, command: str, job_id: str = "job1", **more: Any) -> dict[str, Any]:
    """A run of ``sh -c command``; the timeout only keeps a broken test from hanging."""
    return {"run_id": run_id, "job_id": job_id, "image": IMAGE, "command": ["sh", "-c", command],
            "grace": 1, "timeout": 120, **more}


async def until(check: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Wait for ``check`` (run in a thread); the limit only keeps a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.1)


def containers(engine: docker.DockerClient, agent: str) -> list[Any]:
    return engine.containers.list(all=True, filters={"label": f"ferry.agent={agent}"})


def status(engine: docker.DockerClient, agent: str, run_id: str) -> str | None:
    found = engine.containers.list(all=True, filters={"label": [f"ferry.agent={agent}",
                                                                f"ferry.run={run_id}"]})
    return found[0].status if found else None


def go(lane: DockerLane, run_id: str, job_id: str = "job1") -> None:
    (lane.job_folder(job_id) / f"go-{run_id}").touch()


# -- the image policy

async def test_image_not_on_the_allowlist_is_refused_with_the_reason(
        make_lane: MakeLane, engine: docker.DockerClient, agent_id: str) -> None:
    lane = await make_lane(policy=ImagePolicy.build(names=["ferry-test/other:1"],
                                                    patterns=[r"ferry-test/busybox:2\d*"]))
    outcome = await lane.run(spec("r1", "echo should-not-run"))
    assert (outcome.status, outcome.reason) == ("failed", "image refused")
    assert f"image {IMAGE} (sha256:" in outcome.message
    assert "is not on this node's allowlist" in outcome.message
    assert containers(engine, agent_id) == []
    missing = await lane.run({**spec("r2", "true"), "image": "ferry-test/absent:1"})
    assert (missing.status, missing.reason) == ("failed", "image refused")
    assert "is not on this node (Ferry does not pull images)" in missing.message


async def test_allowed_by_name_regex_or_digest_and_run_by_that_digest(
        make_lane: MakeLane, engine: docker.DockerClient) -> None:
    image_id = engine.images.get(IMAGE).id
    assert image_id is not None
    for policy in (ImagePolicy.build(names=[IMAGE]),
                   ImagePolicy.build(patterns=[r"ferry-test/busybox:\d+"]),
                   ImagePolicy.build(digests=[image_id])):
        lane = await make_lane(policy=policy)
        outcome = await lane.run(spec("r1", "echo hello"))
        assert (outcome.status, outcome.log_tail, outcome.image_id) == ("done", "hello\n", image_id)
        await lane.close()
    by_id = await (await make_lane()).run({**spec("r2", "true"), "image": image_id})
    assert by_id.status == "done", by_id.message  # its tag is on the allowlist


def test_policy_names_and_config_errors() -> None:
    assert normalise("busybox") == "busybox:latest"
    assert normalise("docker.io/library/busybox:1") == "busybox:1"
    assert normalise("registry:5000/team/app") == "registry:5000/team/app:latest"
    image = ResolvedImage("app", "sha256:" + "a" * 64, tags=("app:latest",))
    assert ImagePolicy.build(names=["app"]).refusal(image) is None
    assert ImagePolicy.build(patterns=["app"]).refusal(image) is not None  # whole names only
    assert ImagePolicy().refusal(image) is not None  # an empty policy allows nothing
    with pytest.raises(ConfigError, match="not a valid regex"):
        ImagePolicy.build(patterns=["app("])
    with pytest.raises(ConfigError, match="64 hex digits"):
        ImagePolicy.from_config({"digests": ["sha256:abc"]})
    with pytest.raises(ConfigError, match="unknown image policy keys: tags"):
        ImagePolicy.from_config({"tags": ["x"]})


# -- hardening, limits, folders

async def test_hardened_defaults_limits_and_streamed_logs(
        make_lane: MakeLane, engine: docker.DockerClient, agent_id: str) -> None:
    streamed: list[str] = []
    lane = await make_lane(on_log=lambda run_id, text: streamed.append(text))
    script = ("id -u; grep CapEff /proc/self/status; touch /x 2>&1; "
              "touch /ferry/input/x 2>&1; echo out > /ferry/output/result; cat /ferry/token; "
              "echo; cat /ferry/input/data/a.txt; " + WAIT_FOR_GO)
    run = asyncio.create_task(lane.run(spec("r1", script, token="secret-token",
                                            inputs={"data/a.txt": "input text\n"})))
    await until(lambda: status(engine, agent_id, "r1") == "running", "r1 running")
    [container] = containers(engine, agent_id)
    host, config = container.attrs["HostConfig"], container.attrs["Config"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert (host["Memory"], host["MemorySwap"]) == (64 * MiB, 64 * MiB)  # the node's maxima
    assert (host["NanoCpus"], host["PidsLimit"]) == (500_000_000, 64)
    assert config["User"] == ("65534:65534" if os.getuid() == 0 else
                              f"{os.getuid()}:{os.getgid()}")
    assert config["Image"] == engine.images.get(IMAGE).id
    assert {k: config["Labels"][k] for k in ("ferry.agent", "ferry.run", "ferry.job")} == \
        {"ferry.agent": agent_id, "ferry.run": "r1", "ferry.job": "job1"}
    go(lane, "r1")
    outcome = await run
    assert outcome.status == "done", outcome.message
    lines = outcome.log_tail.splitlines()
    assert lines[0] == ("65534" if os.getuid() == 0 else str(os.getuid()))
    assert lines[1].split() == ["CapEff:", "0000000000000000"]
    assert "Read-only file system" in lines[2] and "Read-only file system" in lines[3]
    assert lines[4:] == ["secret-token", "input text", "started-r1", "finished-r1"]
    assert outcome.output is not None and (outcome.output / "result").read_text() == "out\n"
    assert "".join(streamed) == (lane.run_folder("r1") / "log").read_text() == outcome.log_tail
    assert containers(engine, agent_id) == []  # removed once read
    assert await lane.release("r1") and not lane.run_folder("r1").exists()


async def test_over_its_memory_limit_the_run_fails_oom_killed(make_lane: MakeLane) -> None:
    lane = await make_lane()
    outcome = await lane.run(spec("r1", "dd if=/dev/zero bs=1M count=200 2>/dev/null | tail",
                                  memory="32m"))
    assert (outcome.status, outcome.reason) == ("failed", "OOM killed")
    assert outcome.message.startswith("OOM killed (memory limit 32 MiB")


async def test_a_container_reaches_no_network(make_lane: MakeLane) -> None:
    addresses = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                 if a.family == socket.AF_INET and not a.address.startswith("127.")]
    host = addresses[0] if addresses else "127.0.0.1"
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        server.setblocking(False)
        lane = await make_lane()
        outcome = await lane.run(spec("r1", f"cat /proc/net/dev; nc -w 2 {host} "
                                            f"{server.getsockname()[1]} </dev/null 2>&1; echo nc=$?"))
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody came
    assert outcome.status == "done", outcome.message
    lines = outcome.log_tail.splitlines()
    interfaces = {line.split(":")[0].strip() for line in lines[2:] if ":" in line
                  and not line.startswith("nc")}
    assert interfaces == {"lo"}
    assert lines[-1] == "nc=1"
    assert "Network is unreachable" in outcome.log_tail or "Connection refused" in outcome.log_tail


async def test_a_run_sees_its_own_folders_and_its_jobs_temp_folder_only(
        make_lane: MakeLane) -> None:
    lane = await make_lane()
    first = await lane.run(spec("a", "echo secret-a > /ferry/output/secret; "
                                     "echo shared-in-job1 > /ferry/tmp/shared"))
    assert first.status == "done", first.message
    other_output = lane.run_folder("a") / "output"
    other = await lane.run(spec("b", f"ls -a /ferry; ls -a /ferry/tmp; cat {other_output}/secret; "
                                     "grep -rs secret-a /ferry /tmp /etc /bin; "
                                     "grep ' /ferry' /proc/mounts | cut -d' ' -f2",
                                job_id="job2"))
    assert "secret-a" not in other.log_tail and "shared-in-job1" not in other.log_tail
    assert f"cat: can't open '{other_output}/secret': No such file or directory" in other.log_tail
    mounts = [line for line in other.log_tail.splitlines() if line.startswith("/ferry/")]
    assert sorted(mounts) == ["/ferry/input", "/ferry/output", "/ferry/tmp", "/ferry/token"]
    same_job = await lane.run(spec("c", "cat /ferry/tmp/shared"))
    assert same_job.log_tail == "shared-in-job1\n"
    await lane.job_done("job1")
    assert not lane.job_folder("job1").exists() and lane.job_folder("job2").exists()
    await lane.job_done("job2")
    for run_id in ("a", "b", "c"):
        assert await lane.release(run_id)


# -- stopping

async def test_abort_stops_the_container_within_the_grace(
        make_lane: MakeLane, engine: docker.DockerClient, agent_id: str) -> None:
    lane = await make_lane()
    # sleep as PID 1 ignores TERM: stopped by the KILL after the grace
    stubborn = asyncio.create_task(lane.run(spec("r1", "exec sleep 300")))
    # this one leaves on TERM, within the grace
    polite = asyncio.create_task(lane.run(spec(
        "r2", "trap 'echo bye; exit 3' TERM; echo up; while :; do sleep 0.1; done", grace=30)))
    await until(lambda: status(engine, agent_id, "r1") == status(engine, agent_id, "r2") ==
                "running", "both running")
    await until(lambda: (lane.run_folder("r2") / "log").read_text() == "up\n", "r2 trapping")
    began = time.monotonic()
    assert await lane.abort("r1", grace=1)
    outcome = await stubborn
    took = time.monotonic() - began
    assert (outcome.status, outcome.reason, outcome.exit_code) == ("aborted", "aborted", 137)
    assert outcome.message == "aborted (killed by SIGKILL, exit code 137)"
    assert took < 1 + 30, f"took {took:.1f} s"  # the grace, and room for a busy machine
    assert await lane.abort("r2")  # the run's own grace, 30 s: it is gone well before
    polite_outcome = await polite
    assert (polite_outcome.status, polite_outcome.exit_code) == ("aborted", 3)
    assert polite_outcome.log_tail == "up\nbye\n"
    assert not await lane.abort("r1")  # nothing to stop any more
    assert containers(engine, agent_id) == []


async def test_a_run_past_its_timeout_is_stopped_and_fails(make_lane: MakeLane) -> None:
    lane = await make_lane()
    outcome = await lane.run(spec("r1", "exec sleep 300", timeout=0.5, grace=0))
    assert (outcome.status, outcome.reason) == ("failed", "timed out")
    assert outcome.message.startswith("timed out after 0.5 s (killed by SIGKILL")


async def test_a_cancelled_run_leaves_no_container(
        make_lane: MakeLane, engine: docker.DockerClient, agent_id: str) -> None:
    lane = await make_lane()
    run = asyncio.create_task(lane.run(spec("r1", "exec sleep 300")))
    await until(lambda: status(engine, agent_id, "r1") == "running", "r1 running")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await until(lambda: status(engine, agent_id, "r1") is None, "r1 removed")
    assert lane.running() == []


# -- a restarted agent

async def test_a_new_lane_adopts_running_containers_and_reports_ended_ones(
        make_lane: MakeLane, engine: docker.DockerClient, agent_id: str) -> None:
    first = await make_lane()
    runs = {run_id: asyncio.create_task(first.run(spec(run_id, WAIT_FOR_GO + f"; exit {code}")))
            for run_id, code in (("a", 0), ("b", 5))}
    await until(lambda: all(status(engine, agent_id, r) == "running" for r in runs), "running")
    ids = {c.labels["ferry.run"]: c.id for c in containers(engine, agent_id)}
    await first.close()  # the agent stops; its containers do not
    for task in runs.values():
        with pytest.raises(Detached):
            await task
    go(first, "b")
    await until(lambda: status(engine, agent_id, "b") == "exited", "b ended meanwhile")
    assert status(engine, agent_id, "a") == "running"

    assert await (await make_lane(agent=agent_id + "-other")).adopt() == []  # not its own
    second = await make_lane()
    adopted = {a.run_id: a for a in await second.adopt()}
    assert {r: (a.job_id, a.running) for r, a in adopted.items()} == \
        {"a": ("job1", True), "b": ("job1", False)}
    ended = await adopted["b"].outcome
    assert (ended.status, ended.exit_code, ended.reason) == ("failed", 5, "exit code 5")
    assert ended.log_tail == "started-b\nfinished-b\n"
    assert status(engine, agent_id, "b") is None  # removed
    assert await second.adopt() == []  # a is watched already
    again = await second.run(spec("a", WAIT_FOR_GO))
    assert (again.status, again.reason) == ("failed", "duplicate")
    [running] = containers(engine, agent_id)
    assert running.id == ids["a"] and running.attrs["RestartCount"] == 0
    go(second, "a")
    outcome = await adopted["a"].outcome
    assert (outcome.status, outcome.exit_code) == ("done", 0)
    assert outcome.log_tail == "started-a\nfinished-a\n"
    assert containers(engine, agent_id) == []
    await second.job_done("job1")
    assert not second.job_folder("job1").exists()


# -- bad input

BAD_SPECS: list[tuple[Any, str]] = [
    ("not an object", "a docker run is a JSON object, not str"),
    ({}, "run_id: expected 1-64 letters"),
    ({**spec("r", "true"), "run_id": "../etc"}, "run_id: expected"),
    ({**spec("r", "true"), "job_id": 7}, "job_id: expected"),
    ({**spec("r", "true"), "image": ""}, "image: expected an image name"),
    ({**spec("r", "true"), "command": "echo hi"}, "command: expected a non-empty list"),
    ({**spec("r", "true"), "memory": "lots"}, "memory: expected bytes"),
    ({**spec("r", "true"), "cpus": -1}, "cpus: expected a number > 0"),
    ({**spec("r", "true"), "timeout": True}, "timeout: expected a number"),
    ({**spec("r", "true"), "env": {"A B": "x"}}, "env: 'A B' is not a variable name"),
    ({**spec("r", "true"), "inputs": {"../escape": "x"}}, "not a relative file name"),
    ({**spec("r", "true"), "inputs": {"/etc/passwd": "x"}}, "not a relative file name"),
    ({**spec("r", "true"), "user": "nobody"}, "user: expected 'uid' or 'uid:gid'"),
    ({**spec("r", "true"), "volumes": ["/:/host"]}, "unknown key(s): volumes"),
    ({**spec("r", "true"), "memory": "1g"}, "memory 1024 MiB asked, at most 64 MiB"),
    ({**spec("r", "true"), "cpus": 4, "pids": 10_000}, "4 CPUs asked, at most 0.5; 10000 pids"),
    ({**spec("r", "true"), "gpus": 1}, "1 GPU(s) asked, this node has none"),
    ({**spec("r", "true"), "user": "root"}, "running as root (uid 0) is not allowed"),
    ({**spec("r", "true"), "command": ["no-such-program"]}, "executable file not found"),
]


async def test_malformed_specs_fail_clearly_and_the_lane_keeps_working(
        make_lane: MakeLane, engine: docker.DockerClient, agent_id: str) -> None:
    lane = await make_lane()
    for bad, message in BAD_SPECS:
        outcome = await lane.run(bad)
        assert outcome.status == "failed" and message in outcome.message, (bad, outcome.message)
        assert outcome.exit_code is None and outcome.reason
    assert containers(engine, agent_id) == []
    outcome = await lane.run(spec("r", "echo still working"))
    assert (outcome.status, outcome.log_tail) == ("done", "still working\n")


def test_spec_parsing_and_grants() -> None:
    run = DockerRun.parse({**spec("r", "true"), "memory": "512m", "user": "1000:100",
                           "inputs": {"a/b.txt": "x"}})
    assert (run.memory, run.user, run.inputs, run.grace) == (512 * MiB, (1000, 100),
                                                             {"a/b.txt": b"x"}, 1.0)
    with pytest.raises(SpecError, match="inside another input file's name"):
        DockerRun.parse({**spec("r", "true"), "inputs": {"a": "x", "a/b": "y"}})
    node = NodeLimits(cpus=2, memory=256 * MiB, pids=100, gpus=("0", "1"))
    grant = node.grant(DockerRun.parse({**spec("r", "true"), "cpus": 1, "gpus": 1}), ["1"])
    assert (grant.cpus, grant.memory, grant.pids, grant.gpus) == (1, 256 * MiB, 100, ("1",))
    with pytest.raises(SpecError, match="2 GPU\\(s\\) asked, 1 free now"):
        node.grant(DockerRun.parse({**spec("r", "true"), "gpus": 2}), ["1"])


def test_gpus_pass_as_device_requests(tmp_path: Path) -> None:
    run = DockerRun.parse(spec("r", "true"))
    grant = Grant(cpus=1, memory=64 * MiB, pids=10, gpus=("0", "GPU-abc"), user=(1, 1))
    [request] = container_config(run, grant, tmp_path, tmp_path)["device_requests"]
    assert (request["Driver"], request["DeviceIDs"], request["Capabilities"]) == \
        ("nvidia", ["0", "GPU-abc"], [["gpu"]])
    no_gpu = Grant(cpus=1, memory=64 * MiB, pids=10, gpus=(), user=(1, 1))
    assert "device_requests" not in container_config(run, no_gpu, tmp_path, tmp_path)
