"""The federated part of ``ferry demo``: one algorithm image over three organizations.

Three organizations join an encrypted collaboration, each with a node (an
agent with Docker runs on, and data of its own). A researcher of the first
one seals an input for each, and one docker job runs the image at every
node on that node's data; each result comes back sealed for the researcher's
organization, which alone opens them and combines them. Runs only when a
Docker engine answers and has the demo image; says why it skipped otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import docker

from agent.config import AgentConfig, DockerConfig, ImagesConfig
from agent.daemon import Agent
from ferry.tables import table
from hub import Session
from protocol import sealing

IMAGE = "ferry-test/busybox:1"  # made by `bash scripts/docker.sh`, from Debian's busybox-static
ORGS = {"Amsterdam": [41, 37, 52, 60], "Bergen": [29, 33, 71], "Cork": [45, 48, 50, 39, 66]}
# each node: how many values it has and their sum, after the word it was sent
ALGORITHM = ("n=0; s=0; for v in $(cat /ferry/data/ages); do n=$((n+1)); s=$((s+v)); done; "
             "printf '%s %s %s' \"$(cat /ferry/input/input)\" $n $s > /ferry/output/result; "
             "echo counted $n values")
PASSWORD = "demo-Researcher-passphrase-1"


def engine_problem() -> str | None:
    """Why there is no federated part here (None: there is). Blocking."""
    try:
        client = docker.from_env()
    except Exception as exc:
        return f"no Docker engine reachable ({exc})"
    try:
        client.ping()
        client.images.get(IMAGE)
    except Exception as exc:
        if "No such image" in str(exc) or "not found" in str(exc).lower():
            return f"the Docker engine has no image {IMAGE} (`bash scripts/docker.sh` makes it)"
        return f"no Docker engine reachable ({str(exc)[:200]})"
    finally:
        client.close()
    return None


async def run(root: Any, hub_url: str, base: Path, wait: float) -> bool | None:
    """The federated part; None when skipped, else whether it worked."""
    problem = await asyncio.to_thread(engine_problem)
    if problem is not None:
        print(f"\nfederated part skipped: {problem}")
        return None
    call = asyncio.to_thread
    print(f"\nfederated: three organizations, an encrypted collaboration, image {IMAGE}")
    for name in ORGS:
        await call(root.create, "Organization", {"name": name})
    await call(root.create, "Collaboration", {"name": "demo-study", "encrypted": True,
                                              "organizations": list(ORGS)})
    agents: list[tuple[Agent, asyncio.Task[None]]] = []
    try:
        for name, ages in ORGS.items():
            node = await call(root.create, "Node", {"name": f"{name} node",
                                                    "organization": name,
                                                    "collaboration": "demo-study"})
            folder = base / "nodes" / name
            (folder / "data").mkdir(parents=True)
            (folder / "data" / "ages").write_text(" ".join(map(str, ages)))
            agent = Agent(AgentConfig(
                hub=hub_url, api_key=node["api_key"], transfer=False, lanes=1,
                organization_key_file=str(folder / "organization-key.pem"),
                docker=DockerConfig(slots=1, images=ImagesConfig(names=[IMAGE]), memory="64m",
                                    cpus=0.5, data=str(folder / "data"))),
                name, folder / "agent", handle_signals=False)
            agents.append((agent, asyncio.create_task(agent.serve())))
        deadline = time.monotonic() + wait * 3
        while not all(a.org_key.ready and a.docker is not None and a.docker.ready
                      for a, _ in agents):
            if time.monotonic() > deadline:
                print("error: the nodes did not get ready (organization keys, Docker)")
                return False
            for _, task in agents:
                if task.done():
                    task.result()
            await asyncio.sleep(0.2)
        print("nodes    one per organization; each made its organization's key pair and "
              "published the public half")
        await call(root.create, "User", {"username": "researcher", "password": PASSWORD,
                                         "organization": "Amsterdam", "roles": ["researcher"]})
        user = await call(Session, hub_url, username="researcher", password=PASSWORD)
        orgs = {o["name"]: o for o in await call(root.find, "Organization")}
        mine = agents[0][0].org_key.private
        assert mine is not None
        runs = [{"organization": name, "input": sealing.seal(
            b"ages", sender=orgs["Amsterdam"]["id"], sender_key=mine,
            recipients={orgs[name]["id"]: orgs[name]["public_key"]}).decode()}
            for name in ORGS]
        job = await call(user.create, "Job", {"collaboration": "demo-study", "code": "mean age",
                                              "docker": {"image": IMAGE,
                                                         "command": ["sh", "-c", ALGORITHM],
                                                         "organizations": runs}})
        print(f"job      '{job['code']}' by a researcher of Amsterdam: one run per "
              "organization, inputs sealed for each")
        while job["status"] not in ("done", "failed", "aborted"):
            if time.monotonic() > deadline:
                print("error: the federated job did not end in time")
                return False
            await asyncio.sleep(0.3)
            job = await call(user.get, "Job", job["id"])
        return await _results(user, job, orgs, mine)
    finally:
        for agent, task in agents:
            agent.request_stop()
            with contextlib.suppress(Exception):
                await task


async def _results(user: Any, job: dict[str, Any], orgs: dict[str, Any], key: bytes) -> bool:

    names = {o["id"]: name for name, o in orgs.items()}
    tasks = await asyncio.to_thread(user.find, f"task WHERE job.id={job['id']}",
                                    attributes=["organization", "status", "result", "message"])
    rows, total, count = [], 0, 0
    for task in sorted(tasks, key=lambda t: names[t["organization"]]):
        name = names[task["organization"]]
        opened = "-"
        if task["status"] == "done":
            opened = sealing.open_sealed(task["result"], reader=orgs["Amsterdam"]["id"],
                                         reader_key=key,
                                         sender_public=orgs[name]["public_key"]).decode()
            _, n, s = opened.split()
            count, total = count + int(n), total + int(s)
        rows.append({"organization": name, "status": task["status"],
                     "stored at the hub": "sealed: " + json.loads(task["result"])["data"][:20]
                     + "…" if task["result"] else "-",
                     "opened by Amsterdam": opened, "message": task["message"] or "-"})
    print(table(rows))
    if job["status"] != "done" or not count:
        print(f"federated job {job['status']}")
        return False
    print(f"federated job done: {count} values at three organizations, mean {total / count:.1f}; "
          "the hub kept only ciphertext, and only Amsterdam's key opened the results")
    return True
