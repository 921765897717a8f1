"""``ferry demo``: an embedded hub and one agent on this machine, end to end.

Everything lives in a temporary folder and is removed afterwards (unless
``--keep``). Later issues extend the demo with jobs and transfers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ferry.errors import FerryError
from ferry.logs import LoggingConfig
from ferry.logs import setup as setup_logging


def _gib(value: Any) -> str:
    return f"{value / 2**30:.1f} GiB" if isinstance(value, int | float) else "-"


def table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
    lines = ["  ".join(k.upper().ljust(widths[k]) for k in keys).rstrip(),
             "  ".join("-" * widths[k] for k in keys)]
    lines += ["  ".join(r[k].ljust(widths[k]) for k in keys).rstrip() for r in rows]
    return "\n".join(lines)


def client_rows(clients: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for c in clients:
        m = c.get("metrics") or {}
        rows.append({
            "code": str(c["code"]), "type": str(c["type_hr"]), "status": str(c["status"]),
            "os": str(c["os"]), "cores": str(m.get("c", "-")),
            "cpu": f"{m['l']:.0f}%" if "l" in m else "-",
            "memory": f"{m['m']:.0f}% of {_gib(m.get('mpt'))}" if "m" in m else "-",
            "load": " ".join(f"{x:.2f}" for x in m.get("la") or []) or "-",
            "host_id": str(c["host_id"] or "-"), "wan_ip": str(c["wan_ip"]),
            "last_checkin": str(c["last_checkin"]),
        })
    return rows


async def _run(base: Path, wait_online: float) -> int:
    from agent.config import AgentConfig
    from agent.daemon import Agent
    from hub import Session
    from hub.config import HubConfig
    from hub.security import new_password
    from hub.server import HubServer

    password = new_password()
    os.environ["FERRY_ROOT_PASSWORD"] = password
    hub = HubServer(HubConfig(port=0, checkin_interval=2.0, description="ferry demo"),
                    "application", base / "hub", handle_signals=False)
    await hub.startup()
    print(f"hub      {hub.url}/api/v1  (SQLite in {base / 'hub'})")
    agent: Agent | None = None
    agent_task: asyncio.Task[None] | None = None
    try:
        session = await asyncio.to_thread(Session, hub.url, username="root", password=password)
        node = await asyncio.to_thread(session.create, "Node", {"name": "demo-agent"})
        print(f"node     {node['name']} created; API key shown once: {node['api_key'][:10]}…")
        agent = Agent(AgentConfig(hub=hub.url, api_key=node["api_key"]), "demo",
                      base / "agent", handle_signals=False)
        agent_task = asyncio.create_task(agent.serve())
        deadline = time.monotonic() + wait_online
        online: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            online = await asyncio.to_thread(
                session.find, f"Client where node={node['id']} AND status=online")
            if online and (online[0].get("metrics") or {}).get("l") is not None \
                    and agent.state.checkins >= 1:
                break
            if agent_task.done():
                break
            await asyncio.sleep(0.3)
        else:
            print(f"error: the agent did not come online within {wait_online:.0f} s", file=sys.stderr)
            return 1
        if agent_task.done():
            agent_task.result()
        print(f"agent    enrolled as client {online[0]['id']}, status {agent.state.status}, "
              f"local status at {agent.status_server.url}/status.json\n")
        everyone = await asyncio.to_thread(session.find, "Client")
        print(table(client_rows(everyone)))
        print("\nquery:   session.find('Client where status=online AND site=hq') -> "
              f"{len(await asyncio.to_thread(session.find, 'Client where status=online AND site=hq'))}"
              " client(s)")
        agent.request_stop()
        await asyncio.gather(agent_task, return_exceptions=True)
        after = await asyncio.to_thread(session.get, "Client", online[0]["id"])
        print(f"\nagent    stopped (drained); the hub now shows it {after['status']}")
        return 0 if after["status"] == "offline" else 1
    finally:
        if agent is not None and agent_task is not None and not agent_task.done():
            agent.request_stop()
            await asyncio.gather(agent_task, return_exceptions=True)
        await hub.shutdown()


def main(*, keep: bool = False, timeout: float = 60.0) -> int:
    base = Path(tempfile.mkdtemp(prefix="ferry-demo-"))
    setup_logging(LoggingConfig(level="WARNING"), base, "demo.log", console=False)
    print(f"ferry demo: embedded hub and one agent in {base}\n")
    try:
        code = asyncio.run(_run(base, timeout))
    except FerryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    if code == 0:
        print("\ndemo finished: the agent enrolled, checked in with live metrics, and went "
              "offline when stopped.")
    return code
