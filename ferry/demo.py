"""``ferry demo``: an embedded hub and one agent on this machine, end to end.

The agent enrolls and checks in; a render-like job of 200 frames runs over
its lanes with a live progress bar; the buckets' timings are printed; a
folder moves between two shares; with a Docker engine, three organizations
run one algorithm on their own data (``demo_federated``); the agent drains
and goes offline. Everything lives in a temporary folder, removed afterwards. With
``--keep`` the hub stays up afterwards, with the agent back online, to look at with the
dashboard and the ``ferry`` commands, until Ctrl-C (and the folder is kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.daemon import Agent
from core.errors import FerryError
from core.logs import LoggingConfig
from core.logs import setup as setup_logging
from ferry import demo_federated
from ferry.tables import table
from ferry.views import bucket_rows, client_rows, watch
from hub import Session
from hub.config import AccsynApiConfig, HubConfig
from hub.security import new_password
from hub.server import HubServer

FRAMES = "1-200"
TRANSFER_MIB = 256
# a stand-in for a renderer: a little work per frame, a line of output
RENDER = ["sh", "-c", "sleep 0.02; echo rendered frame $FERRY_ITEM on lane $FERRY_LANE"]


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


async def _run_transfer(session: Any, agent_id: str, base: Path) -> bool:
    """Two shares on the demo agent; a folder moves from one to the other, verified."""
    call = asyncio.to_thread
    source, backup = base / "studio" / "projects", base / "studio" / "backup"
    shot = source / "shot010"

    def make() -> None:
        (shot / "plates").mkdir(parents=True)
        backup.mkdir(parents=True)
        with open(shot / "edit.mov", "wb") as fh:
            for _ in range(TRANSFER_MIB // 16):
                fh.write(os.urandom(16 << 20))
        for n in range(200):
            (shot / "plates" / f"plate.{n:04}.dpx").write_bytes(os.urandom(20_000 + 97 * n))

    await call(make)
    for name, path in (("projects", source), ("backup", backup)):
        await call(session.create, "Share", {"name": name, "client": agent_id,
                                             "path": str(path)})
    print("\nshares   'projects' and 'backup' on the demo agent; moving shot010 "
          f"({TRANSFER_MIB} MiB and 200 plates) with BLAKE3-verified chunks over HTTPS")
    job = await call(session.create, "Job", {"source": "share=projects/shot010",
                                             "destination": "share=backup/"})
    job = await asyncio.to_thread(watch, session, job["id"], 0.2)
    tasks = await call(session.find, f"task WHERE job.id={job['id']}",
                       attributes=["status", "message", "log_tail"])
    same = job["status"] == "done" and await call(_digest, shot) == await call(
        _digest, backup / "shot010")
    failed = [t for t in tasks if t["status"] == "failed"]
    what = (f"one task moved the folder: {tasks[0]['log_tail'].strip()}" if not failed
            else f"{len(failed)} failed, e.g. {failed[0]['message']}")
    print(f"transfer {job['status']}: {what}; "
          f"{'identical to the source' if same else 'NOT identical'}")
    return same


async def _run_job(session: Any, lanes: dict[str, str]) -> bool:
    call = asyncio.to_thread
    job = await call(session.create, "Job", {"code": "demo render", "compute": {
        "command": RENDER, "items": FRAMES, "bucket_size": 10, "retries": 1}})
    print(f"\njob      '{job['code']}': {sum(job['counts'].values())} frames, buckets of 10, "
          f"over {len(lanes)} lane(s)")
    job = await asyncio.to_thread(watch, session, job["id"], 0.2)
    tasks = await call(session.find, f"task WHERE job.id={job['id']}")
    print(f"\nbuckets  (jobs.rst: a task's time is its whole bucket's)\n"
          f"{table(bucket_rows(tasks, lanes))}")
    seconds = [t["time"] / 1000 for t in {t["bucket"]: t for t in tasks}.values()]
    print(f"\n{len(seconds)} buckets, {sum(seconds) / len(seconds):.2f} s on average; job "
          f"{job['status']} with {job['counts']}")
    return bool(job["status"] == "done")


async def _keep_running(hub: HubServer, agent_config: AgentConfig, base: Path,
                        password: str, session: Session) -> None:
    """``--keep``: the hub stays up with the demo agent back online, until Ctrl-C."""
    agent = Agent(agent_config, "demo", base / "agent", handle_signals=False)
    serving = asyncio.create_task(agent.serve())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: Ctrl-C only
            loop.add_signal_handler(signum, stop.set)
    key = (await asyncio.to_thread(session.create, "ApiKey", {"description": "demo"}))["api_key"]
    print(f"\nthe hub stays up (--keep), with the demo agent back online:\n"
          f"  dashboard  {hub.url}/   (user root, password {password})\n"
          f"  ferry login {hub.url} --username root      # the password above\n"
          f"  ferry client ls\n"
          f"  ferry job submit --items 1-50 --bucket 5 --watch -- sh -c 'echo frame {{item}}'\n"
          f"accsyn's own client (pip install accsyn-python-api), unchanged:\n"
          f"  import accsyn_api\n"
          f"  session = accsyn_api.Session(workspace='demo', username='root', api_key='{key}',"
          f" hostname='127.0.0.1', port={hub.accsyn_port})\n"
          f"  print(session.find('Client'))\n"
          f"press Ctrl-C to stop", flush=True)
    try:
        await stop.wait()
    finally:
        agent.request_stop()
        await asyncio.gather(serving, return_exceptions=True)


async def _run(base: Path, wait_online: float, keep: bool = False) -> int:
    password = new_password()
    os.environ["FERRY_ROOT_PASSWORD"] = password
    hub = HubServer(HubConfig(port=0, checkin_interval=2.0, heartbeat_interval=0.5,
                              description="ferry demo", accsyn_api=AccsynApiConfig(port=0)),
                    "application", base / "hub", handle_signals=False, name="demo")
    await hub.startup()
    print(f"hub      {hub.url}/api/v1  (SQLite in {base / 'hub'}); dashboard at {hub.url}/ "
          "(ferry demo --keep leaves it up)")
    print(f"accsyn   accsyn's own Python client connects on https://127.0.0.1:{hub.accsyn_port}"
          " as workspace 'demo' (--keep prints how; docs/ACCSYN.md)")
    agent: Agent | None = None
    agent_task: asyncio.Task[None] | None = None
    call = asyncio.to_thread
    try:
        session = await call(Session, hub.url, username="root", password=password)
        node = await call(session.create, "Node", {"name": "demo-agent"})
        print(f"node     {node['name']} created; API key shown once: {node['api_key'][:10]}…")
        agent_config = AgentConfig(hub=hub.url, api_key=node["api_key"],
                                   transfer_ip="127.0.0.1")
        agent = Agent(agent_config, "demo", base / "agent", handle_signals=False)
        agent_task = asyncio.create_task(agent.serve())
        deadline = time.monotonic() + wait_online
        online: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not agent_task.done():
            online = await call(session.find, f"Client where node={node['id']} AND status=online")
            if online and (online[0].get("metrics") or {}).get("l") is not None:
                break
            await asyncio.sleep(0.3)
        if agent_task.done():
            agent_task.result()
        if not online:
            print(f"error: the agent did not come online within {wait_online:.0f} s",
                  file=sys.stderr)
            return 1
        agent_id = online[0]["id"]
        print(f"agent    enrolled as client {agent_id}, status {agent.state.status}, "
              f"local status at {agent.status_server.url}/status.json\n")
        print(table(client_rows(await call(session.find, "Client"))))
        lanes = {c["id"]: c["code"] for c in await call(session.find,
                                                          f"Client where parent={agent_id}")}
        ok = await _run_job(session, lanes)
        ok = await _run_transfer(session, agent_id, base) and ok
        federated = await demo_federated.run(session, hub.url, base, wait_online)
        ok = federated is not False and ok
        agent.request_stop()
        await asyncio.gather(agent_task, return_exceptions=True)
        after = await call(session.get, "Client", agent_id)
        print(f"\nagent    stopped (drained); the hub now shows it {after['status']}")
        code = 0 if ok and after["status"] == "offline" else 1
        if keep:
            await _keep_running(hub, agent_config, base, password, session)
        return code
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
        code = asyncio.run(_run(base, timeout, keep))
    except FerryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        if keep:
            print(f"\nthe demo's folder is kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    if code == 0:
        print("\ndemo finished: the agent enrolled, checked in with live metrics, ran a job "
              "over its lanes, moved a folder between two shares, and went offline when "
              "stopped (and, with a Docker engine, three organizations ran one algorithm on "
              "their own data).")
    return code
