"""The agent under a service manager: systemd's notify protocol (READY, STOPPING, WATCHDOG
pings only while healthy) and the OOM killer's order (the agent after its tasks). A real
agent process, and a real datagram socket where systemd would listen."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agent.notify import Notifier
from hub import Session
from lanes.kill import marked
from lanes.oom import AGENT_OOM_SCORE, TASK_OOM_SCORE, oom_score
from tests.helpers import Hub, wait_for


@pytest.fixture
def manager() -> Iterator[tuple[str, socket.socket]]:
    """Where the agent's notifications arrive: an abstract datagram socket, as systemd's."""
    name = f"@ferry-test-{uuid.uuid4().hex[:12]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(30)
    yield name, sock
    sock.close()


def receive(sock: socket.socket, until: str, limit: float = 60) -> list[str]:
    """Messages until one holds ``until`` (each message's lines, joined by '|')."""
    seen = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        message = sock.recv(4096).decode().replace("\n", "|")
        seen.append(message)
        if until in message:
            return seen
    raise AssertionError(f"never got {until}: {seen}")


def test_an_agent_tells_systemd_ready_watchdog_and_stopping(
        hub: Hub, session: Session, start_agent: Any, env: dict[str, str],
        manager: tuple[str, socket.socket]) -> None:
    name, sock = manager
    env.update(NOTIFY_SOCKET=name, WATCHDOG_USEC="1000000")
    node = session.create("Node", {"name": "notified"})
    agent = start_agent(hub, node["api_key"], transfer=False, lanes=1)
    ready = receive(sock, "READY=1")[-1]
    assert f"MAINPID={agent.info['pid']}" in ready and "STATUS=serving" in ready
    pings = [m for m in receive(sock, "WATCHDOG=1") + receive(sock, "WATCHDOG=1")
             if m == "WATCHDOG=1"]
    assert len(pings) >= 2  # every half second while the check-ins go on
    agent.stop()
    stopping = receive(sock, "STOPPING=1")[-1]
    assert "STATUS=draining" in stopping


def test_a_wedged_check_in_loop_stops_the_watchdog_pings(
        manager: tuple[str, socket.socket]) -> None:
    name, sock = manager
    sock.settimeout(0.1)
    notifier = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000"})
    healthy = {"now": True}

    async def run() -> None:
        stop = asyncio.Event()
        watch = asyncio.create_task(notifier.watch(lambda: healthy["now"], stop))
        await asyncio.sleep(0.35)
        healthy["now"] = False
        await asyncio.sleep(0.5)
        stop.set()
        await watch

    asyncio.run(run())
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    wedged = next(n for n, m in enumerate(messages) if m.startswith("STATUS=wedged"))
    assert messages[:wedged] and set(messages[:wedged]) == {"WATCHDOG=1"}
    assert "WATCHDOG=1" not in messages[wedged:]  # systemd restarts it


def test_without_a_service_manager_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.active and not notifier.ready() and notifier.watchdog == 0.0
    # a watchdog for another process (WATCHDOG_PID) is not ours to ping
    other = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000",
                      "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog == 0.0


def can_lower_oom_scores() -> bool:
    import subprocess

    return subprocess.run(["sh", "-c", "echo -1 > /proc/self/oom_score_adj"],
                          capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not os.path.exists("/proc/self/oom_score_adj"),
                    reason="oom_score_adj is Linux's")
def test_the_oom_killer_takes_tasks_before_the_agent(hub: Hub, session: Session,
                                                     start_agent: Any) -> None:
    node = session.create("Node", {"name": "oom"})
    agent = start_agent(hub, node["api_key"], transfer=False, lanes=1)
    job = session.create("Job", {"compute": {"command": ["sleep", "30"], "items": "1"}})
    task = wait_for(lambda: next(iter(marked("FERRY_AGENT_ID", agent.info["agent_id"])), None),
                    what="the task's process")
    assert oom_score(task.pid) == TASK_OOM_SCORE
    session.update("Job", job["id"], {"status": "aborted"})
    if can_lower_oom_scores():  # root with CAP_SYS_RESOURCE (systemd's OOMScoreAdjust= too)
        assert oom_score(agent.info["pid"]) == AGENT_OOM_SCORE
    else:  # here (a container without it) the agent's own stays as it was
        assert oom_score(agent.info["pid"]) == oom_score("self")
