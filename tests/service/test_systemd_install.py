"""The agent installed for real: the Debian package in a Debian 12 container with systemd
as PID 1, `ferry service install --system`, the agent online at a hub on this machine's
loopback, `systemctl stop` while a task runs (it drains: the task finishes, nothing is
lost), and an uninstall and purge that leave no file behind.

Slow (the image, the package, a boot): CI runs it once, in its SQLite round.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import Session
from tests.helpers import Hub, ended, wait_for

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "ferry-test/systemd:1"
LEFT_BEHIND = ("/opt/ferry", "/etc/systemd/system/ferry-agent-render.service",
               "/var/lib/ferry", "/var/log/ferry", "/etc/xdg/ferry", "/usr/bin/ferry",
               "/lib/systemd/system/ferry-agent@.service")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FERRY_TEST_DB") == "postgresql",
                       reason="the install does not depend on the hub's database: it runs in "
                       "the SQLite round only"),
]


def sh(*argv: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n"
                             f"{done.stderr}")
    return done


@pytest.fixture(scope="module")
def package(engine: Any) -> Path:
    """The Debian package, built from this tree, and the systemd image."""
    sh("bash", str(ROOT / "scripts" / "systemd-image.sh"))
    return Path(sh("bash", str(ROOT / "packaging" / "build-deb.sh")).stdout.strip())


@pytest.fixture
def machine(package: Path) -> Iterator[str]:
    """A booted Debian 12 with systemd as PID 1, on the host's network (it reaches the hub
    on loopback), the package copied in."""
    name = f"ferry-systemd-{uuid.uuid4().hex[:8]}"
    sh("docker", "run", "-d", "--name", name, "--network", "host", "--cap-add", "SYS_ADMIN",
       "--security-opt", "seccomp=unconfined", "--tmpfs", "/run", "--tmpfs", "/run/lock",
       "--tmpfs", "/tmp", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns=host",
       IMAGE, "/sbin/init")
    try:
        wait_for(lambda: sh("docker", "exec", name, "systemctl", "is-system-running",
                            check=False).stdout.strip() in ("running", "degraded"),
                 timeout=120, what="systemd up")
        sh("docker", "cp", str(package), f"{name}:/root/ferry.deb")
        yield name
    finally:
        sh("docker", "rm", "-f", name, check=False)


def inside(machine: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("docker", "exec", machine, "sh", "-c", command, check=check)


def test_installed_as_a_system_service_it_drains_on_stop_and_leaves_nothing(
        machine: str, hub: Hub, session: Session) -> None:
    node = session.create("Node", {"name": "render-in-systemd"})
    inside(machine, "dpkg -i /root/ferry.deb")
    assert inside(machine, "ferry --version").stdout.startswith("ferry ")
    inside(machine, f"ferry agent new --system --name render --no-input --hub {hub.url} "
           f"--api-key {node['api_key']}")
    # a drain long enough for the task below, and the agent's transfer endpoint on loopback
    inside(machine, "sed -i 's/^application:/application:\\n  drain_timeout: 120\\n  "
           "transfer_ip: 127.0.0.1\\n  lanes: 1/' /etc/xdg/ferry/agent/render.yaml")
    installed = inside(machine, "ferry service install --system --name render")
    assert "installed agent 'render' (system service)" in installed.stdout
    unit = inside(machine, "systemctl show ferry-agent-render -p ActiveState,User,"
                  "TimeoutStopUSec,Type,NotifyAccess,KillMode").stdout
    assert "ActiveState=active" in unit and "User=ferry" in unit and "Type=notify" in unit
    assert "TimeoutStopUSec=2min 30s" in unit and "KillMode=mixed" in unit
    agent = wait_for(lambda: session.find_one(
        f"Client where node={node['id']} AND status=online"), timeout=90, what="online")
    assert agent["type"] == 1  # a system service: a "server"
    owner = inside(machine, "ps -o user= -p $(systemctl show -p MainPID --value "
                   "ferry-agent-render)").stdout.strip()
    assert owner == "ferry"

    job = session.create("Job", {"compute": {"command": [
        "sh", "-c", "sleep 6; echo finished $FERRY_ITEM"], "items": "1"}})
    wait_for(lambda: session.find_one(f"task WHERE job.id={job['id']} AND status=executing"),
             timeout=60, what="the task runs")
    inside(machine, "systemctl stop ferry-agent-render")  # returns once the agent has exited
    # it ran to its end after the stop began: systemd waited for the drain, killed nothing
    task = session.find(f"task WHERE job.id={job['id']}", attributes=["status", "log_tail", "attempts"])[0]
    assert task["status"] == "done" and "finished 1" in task["log_tail"], task
    assert task["attempts"] == 0
    assert ended(session, job["id"])
    assert session.get("Client", agent["id"])["status"] == "offline"  # said goodbye
    state = inside(machine, "systemctl show ferry-agent-render -p ActiveState,Result").stdout
    assert "ActiveState=inactive" in state and "Result=success" in state

    inside(machine, "ferry service uninstall --system --name render --purge")
    inside(machine, "dpkg --purge ferry")
    left = inside(machine, "ls -d " + " ".join(LEFT_BEHIND) + " 2>/dev/null",
                  check=False).stdout.split()
    assert left == []
    assert inside(machine, "getent passwd ferry", check=False).returncode != 0


def test_the_agents_container_image_runs_the_agent_and_docker_stop_drains_it(
        package: Path, hub: Hub, session: Session, tmp_path: Path) -> None:
    image = sh("bash", str(ROOT / "packaging" / "build-image.sh"), IMAGE).stdout.strip()
    node = session.create("Node", {"name": "render-in-a-container"})
    config = tmp_path / "agent.yaml"
    config.write_text(f"application:\n  hub: {hub.url}\n  api_key: {node['api_key']}\n"
                      "  lanes: 1\n  transfer_ip: 127.0.0.1\n  drain_timeout: 120\n")
    config.chmod(0o644)  # the image's user ferry reads it
    name = f"ferry-agent-{uuid.uuid4().hex[:8]}"
    sh("docker", "run", "-d", "--name", name, "--network", "host",
       "-v", f"{config}:/etc/ferry/agent.yaml:ro", image)
    try:
        agent = wait_for(lambda: session.find_one(
            f"Client where node={node['id']} AND status=online"), timeout=90, what="online")
        job = session.create("Job", {"compute": {"command": [
            "sh", "-c", "sleep 5; echo finished $FERRY_ITEM"], "items": "1"}})
        wait_for(lambda: session.find_one(
            f"task WHERE job.id={job['id']} AND status=executing"), timeout=60,
            what="the task runs")
        sh("docker", "stop", "-t", "150", name)  # TERM, and time for the drain
        task = session.find(f"task WHERE job.id={job['id']}",
                            attributes=["status", "log_tail", "attempts"])[0]
        assert task["status"] == "done" and "finished 1" in task["log_tail"], task
        assert session.get("Client", agent["id"])["status"] == "offline"
        assert sh("docker", "inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    finally:
        sh("docker", "rm", "-f", name, check=False)
