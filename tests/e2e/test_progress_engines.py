"""Progress lines and engines end to end (issue 18): a real hub, a real agent, real
processes. A task's progress lines show on it while it runs and after it ended, other
output stays log, its outputs are kept, a job's progress weighs its running tasks; a
job made from an engine runs the engine's command for each item, its arguments each one
argument of the program whatever they hold."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub import permissions
from tests.helpers import Agent, Hub, wait_for
from tests.security.world import World

PY = sys.executable

# a frame that says how far it is, then waits for the test to let it finish (the file
# ``go``), then says it is done
FRAME = """
import os, sys, time
item = os.environ["FERRY_ITEM"]
print("frame", item, "starting")
print('{"progress": 50, "stage": "render"}')
print('{"output": "/out/%s-half.exr"}' % item)
print('{"progress": 99, "eta": 3}')
print("{not a progress line}", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
print('{"progress": 100, "stage": "write"}')
print('{"output": "/out/%s.exr"}' % item, flush=True)
"""


def farm(start_hub: Callable[..., Hub], start_agent: Callable[..., Agent]
         ) -> tuple[World, str, Agent]:
    """A hub whose agents heartbeat often, organization A's researcher and one agent of
    A with one lane."""
    hub = start_hub(heartbeat_interval=0.5)
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    agent = start_agent(hub, world.node("A")["api_key"], lanes=1)
    wait_for(lambda: agent.status()["client_id"], what="enrolled")
    return world, ann, agent


def task(world: World, token: str, job_id: str, item: str) -> dict[str, Any]:
    found = world.ok("POST", "/find", {"query": f"Task where job={job_id} and item={item}",
                                       "attributes": ["*", "log_tail", "outputs"]}, token)
    return dict(found["result"][0])


def test_progress_lines_show_live_and_after_the_end(start_hub, start_agent,
                                                    tmp_path: Path) -> None:
    world, ann, _agent = farm(start_hub, start_agent)
    go = tmp_path / "go"
    job = world.ok("POST", "/job", {"compute": {
        "command": [PY, "-c", FRAME, str(go)], "items": "1-2", "retries": 0}}, ann)

    # item 1 runs, said 50 % (the line with another key is log): the job is a quarter done
    running = wait_for(lambda: (t := task(world, ann, job["id"], "1"))["progress"] == 50
                       and t["outputs"] and t, what="live progress")
    assert running["status"] in ("booting", "executing")  # its start report may come later
    assert (running["stage"], running["outputs"]) == ("render", ["/out/1-half.exr"])
    assert world.ok("GET", f"/job/{job['id']}", token=ann)["progress"] == 25
    waiting = task(world, ann, job["id"], "2")
    assert (waiting["status"], waiting["progress"], waiting["stage"], waiting["outputs"]) == \
        ("queued", None, None, [])

    go.touch()
    done = wait_for(lambda: (j := world.ok("GET", f"/job/{job['id']}", token=ann))["status"]
                    == "done" and j, timeout=60, what="the job to end")
    assert done["progress"] == 100
    for item in ("1", "2"):
        ended = task(world, ann, job["id"], item)
        assert (ended["status"], ended["progress"], ended["stage"]) == ("done", 100, "write")
        assert ended["outputs"] == [f"/out/{item}-half.exr", f"/out/{item}.exr"]
        # every line stays in the log, progress lines too; the others are only log
        assert ended["log_tail"].startswith(f"frame {item} starting\n")
        assert '{"progress": 99, "eta": 3}\n{not a progress line}\n' in ended["log_tail"]
    one = world.ok("GET", f"/task/{task(world, ann, job['id'], '1')['id']}", token=ann)
    assert one["outputs"] == ["/out/1-half.exr", "/out/1.exr"]
    listed = world.ok("POST", "/find", {"query": f"Task where job={job['id']} and "
                                                 "stage=write and progress>=100"}, ann)
    assert len(listed["result"]) == 2 and "outputs" not in listed["result"][0]


def test_a_job_made_from_an_engine_runs_its_command_for_each_item(start_hub, start_agent
                                                                  ) -> None:
    world, ann, _agent = farm(start_hub, start_agent)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    show = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['LOOK'], " \
           "os.environ['MINE']]))"
    engine = world.ok("POST", "/engine", {
        "name": "argv-printer", "argv": [PY, "-c", show, "--scene={scene}", "{frames}",
                                         "{item}", "{out}"],
        "env": {"LOOK": "studio", "MINE": "engine's"}, "bucket_size": 2}, admin)
    assert engine["arguments"] == ["scene", "frames", "out"]
    scene = "shot 010.blend; touch /tmp/pwned $(id) `id`\n--other"
    job = world.ok("POST", "/job", {
        "engine": "argv-printer", "code": "shot010",
        "args": {"scene": scene, "frames": 24, "out": "/renders/{item}.exr"},
        "compute": {"items": "1-3", "env": {"MINE": "job's"}}}, ann)
    assert (job["engine"], job["args"]) == ("argv-printer", {
        "scene": scene, "frames": "24", "out": "/renders/{item}.exr"})
    assert job["compute"]["command"] == [PY, "-c", show, f"--scene={scene}", "24", "{item}",
                                         "/renders/{item}.exr"]
    assert (job["compute"]["bucket_size"], job["compute"]["env"]) == \
        (2, {"LOOK": "studio", "MINE": "job's"})
    wait_for(lambda: world.ok("GET", f"/job/{job['id']}", token=ann)["status"] == "done",
             timeout=60, what="the job to end")
    for item in ("1", "2", "3"):
        said = json.loads(task(world, ann, job["id"], item)["log_tail"])
        assert said == [[f"--scene={scene}", "24", item, f"/renders/{item}.exr"], "studio",
                        "job's"]
