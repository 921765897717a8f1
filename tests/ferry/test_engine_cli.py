"""``ferry engine …``, ``ferry job submit --engine`` and the progress ``ferry task ls`` and
``ferry task show`` print, against a real hub and a real agent, as a user types them."""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Callable

import pytest

from hub import Session
from tests.ferry.test_operator import run
from tests.helpers import ROOT_PASSWORD, Agent, Hub, wait_for

pytestmark = pytest.mark.one_round("the command line's own behaviour: the hub's storage is "
                                   "tested on both databases elsewhere")

# an engine's program: says how far it is and what it made, from its arguments
FRAME = ("import sys; scene, item = sys.argv[1:]; print('rendering', scene, item); "
         "print('{\"progress\": 100, \"stage\": \"write\"}'); "
         "print('{\"output\": \"/out/%s.exr\"}' % item)")


def test_engines_from_the_command_line(start_hub: Callable[..., Hub],
                                       start_agent: Callable[..., Agent],
                                       env: dict[str, str]) -> None:
    hub = start_hub(heartbeat_interval=0.5)
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    start_agent(hub, session.create("Node", {"name": "render01"})["api_key"], lanes=2)
    wait_for(lambda: session.find("Client WHERE type=5"), what="the agent's lanes")
    run(env, "login", hub.url, "--username", "root", "--password-stdin",
        stdin=ROOT_PASSWORD + "\n")

    argv = shlex.join([sys.executable, "-c", FRAME]) + " '{scene}' {item}"
    said = run(env, "engine", "set", "render", "--argv", argv, "--env", "LOOK=a",
               "--bucket", "2")
    assert said.startswith("made engine render (") and "arguments: scene" in said
    assert "changed engine render" in run(env, "engine", "set", "render", "--bucket", "3")
    listing = run(env, "engine", "ls")
    assert listing.splitlines()[0].split()[:4] == ["NAME", "ARGUMENTS", "BUCKET", "TARGETS"]
    assert re.search(r"^render\s+scene\s+3\s", listing, re.M)
    engine = json.loads(run(env, "engine", "show", "render", "--json"))
    assert (engine["argv"][3:], engine["env"]) == (["{scene}", "{item}"], {"LOOK": "a"})
    assert "no engine 'nope' yet" in run(env, "engine", "set", "nope", "--bucket", "2", code=2)
    assert "clients[0]" in run(env, "engine", "set", "x", "--argv", "x", "--target",
                               "ram:>lots", code=2)

    out = run(env, "job", "submit", "--engine", "render", "--arg", "scene=shot 010.blend",
              "--items", "1-4", "--watch")
    job_id = out.splitlines()[0]
    assert "100%" in out and "done" in out.splitlines()[-1]
    job = session.get("Job", job_id)
    assert (job["engine"], job["args"], job["compute"]["bucket_size"]) == \
        ("render", {"scene": "shot 010.blend"}, 3)
    assert re.search(r"^engine\s+render scene=shot 010.blend$", run(env, "job", "show", job_id),
                     re.M)
    table = run(env, "task", "ls", job_id)
    assert table.splitlines()[0].split()[-4:-1] == ["PROGRESS", "STAGE", "EXIT"]
    rows = [line for line in table.splitlines()[2:] if line.strip()]
    assert len(rows) == 4 and all(re.search(r" 100% +write +0$", row) for row in rows)
    tasks = json.loads(run(env, "task", "ls", job_id, "--json"))
    task = next(t for t in tasks if t["item"] == "2")
    shown = run(env, "task", "show", task["id"])
    assert re.search(r"^progress\s+100%$", shown, re.M) and "outputs (1)\n  /out/2.exr" in shown
    assert run(env, "task", "log", task["id"]).startswith("rendering shot 010.blend 2\n")

    # bad input says which, exit 2, and makes nothing
    jobs = len(session.find("Job"))
    assert "args.scene" in run(env, "job", "submit", "--engine", "render", code=2)
    assert "args.shot" in run(env, "job", "submit", "--engine", "render", "--arg", "scene=a",
                              "--arg", "shot=1", code=2)
    assert "no engine 'maya'" in run(env, "job", "submit", "--engine", "maya", "--arg",
                                     "scene=a", code=2)
    assert "not both" in run(env, "job", "submit", "--engine", "render", "--", "true", code=2)
    assert "--engine" in run(env, "job", "submit", "--arg", "scene=a", "--", "true", code=2)
    assert len(session.find("Job")) == jobs
    assert "removed engine render" in run(env, "engine", "rm", "render")
    assert run(env, "engine", "ls", "--json").strip() == "[]"
