"""Engines never cross organizations, and only the agent running a task says how far it is
(issue 18).

B's and C's users attack A's engine: they cannot see it, edit it, delete it (each answered
as an engine that does not exist, 404), nor make a job of it (the same 422 as for an engine
that does not exist, word for word); B cannot make an engine in A's organization. A's
viewer and researcher cannot create, edit or delete engines (403 naming the rule).

Agents attack a running task's progress: another agent of the same organization and one of
another organization send progress, stages and outputs for it in their heartbeats and
reports, name its bucket as theirs, send values out of bounds. The task keeps what its own
agent said, and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub import permissions
from protocol.work import MAX_OUTPUT_PATH, MAX_OUTPUTS
from tests.helpers import Hub, db_query
from tests.security.world import RawAgent, World, task_report


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def test_another_organization_cannot_see_use_or_change_an_engine(hub: Hub) -> None:
    world = World(hub)
    a_admin = world.user("A", permissions.ORG_ADMIN)["token"]
    engine = world.ok("POST", "/engine", {"name": "blender", "argv": ["blender", "{scene}"],
                                          "env": {"SECRET_PATH": "/a/only"}}, a_admin)
    before = world.ok("GET", f"/engine/{engine['id']}")
    jobs, engines = count(hub, "jobs"), count(hub, "engines")

    for org in ("B", "C"):
        for role in (permissions.ORG_ADMIN, permissions.RESEARCHER, permissions.VIEWER):
            token = world.user(org, role)["token"]
            status, answer = world.call("GET", f"/engine/{engine['id']}", token=token)
            assert status == 404, answer
            for query in ("Engine", "Engine where name=blender",
                          f"Engine where id={engine['id']}"):
                assert world.ok("POST", "/find", {"query": query}, token)["result"] == []
            for body in ({"argv": ["sh", "-c", "{scene}"]}, {"name": "mine"},
                         {"env": {"LD_PRELOAD": "/x.so"}}, {"bucket_size": 9}):
                status, answer = world.call("PATCH", f"/engine/{engine['id']}", body, token)
                assert status == 404, (body, answer)
            status, answer = world.call("DELETE", f"/engine/{engine['id']}", token=token)
            assert status == 404, answer
            if role == permissions.VIEWER:  # it makes no job anywhere
                continue

            def submit(name: str, token: str = token) -> tuple[int, Any]:
                return world.call("POST", "/job", {"engine": name, "args": {"scene": "s"},
                                                   "compute": {"items": "1"}}, token)

            theirs, nowhere = submit("blender"), submit("bl3nder")
            assert theirs[0] == nowhere[0] == 422
            assert theirs[1]["error"]["field"] == "engine"
            assert theirs[1]["error"]["code"] == nowhere[1]["error"]["code"] == "unknown_engine"
            assert theirs[1]["error"]["message"].replace("blender", "bl3nder") == \
                nowhere[1]["error"]["message"]
            by_id, made_up = submit(engine["id"]), submit("f" * 24)
            assert by_id[0] == 422 and by_id[1]["error"]["message"].replace(
                engine["id"], "f" * 24) == made_up[1]["error"]["message"]

    b_admin = world.user("B", permissions.ORG_ADMIN)["token"]
    status, answer = world.call("POST", "/engine", {
        "name": "x", "argv": ["x"], "organization": world.org["A"]["id"]}, b_admin)
    assert status == 403, answer
    # an engine of the same name in B is B's own, and B's jobs are made from it
    own = world.ok("POST", "/engine", {"name": "blender", "argv": ["b-blender", "{scene}"]},
                   b_admin)
    b_job = world.ok("POST", "/job", {"engine": "blender", "args": {"scene": "s"},
                                      "compute": {"items": "1"}},
                     world.user("B", permissions.RESEARCHER)["token"])
    assert b_job["compute"]["command"] == ["b-blender", "s"] and own["id"] != engine["id"]

    assert world.ok("GET", f"/engine/{engine['id']}") == before
    assert (count(hub, "jobs"), count(hub, "engines")) == (jobs + 1, engines + 1)


def test_lesser_roles_cannot_create_or_change_engines(hub: Hub) -> None:
    world = World(hub)
    a_admin = world.user("A", permissions.ORG_ADMIN)["token"]
    engine = world.ok("POST", "/engine", {"name": "nuke", "argv": ["nuke", "{script}"]},
                      a_admin)
    before, engines = world.ok("GET", f"/engine/{engine['id']}"), count(hub, "engines")
    for role in (permissions.VIEWER, permissions.RESEARCHER):
        token = world.user("A", role)["token"]
        assert world.ok("GET", f"/engine/{engine['id']}", token=token) == before  # it sees it
        for body in ({"argv": ["sh", "-c", "{script}"]}, {"env": {"X": "1"}}):
            status, answer = world.call("PATCH", f"/engine/{engine['id']}", body, token)
            assert status == 403 and answer["error"]["rule"]["resource"] == "engine", answer
        status, answer = world.call("POST", "/engine", {"name": "mine", "argv": ["x"]}, token)
        assert status == 403, answer
        status, answer = world.call("DELETE", f"/engine/{engine['id']}", token=token)
        assert status == 403, answer
    assert world.ok("GET", f"/engine/{engine['id']}") == before
    assert count(hub, "engines") == engines


def beat(agent: RawAgent, buckets: list[str], said: dict[str, Any]) -> tuple[int, Any]:
    return agent.call("POST", "/agent/heartbeat", {"buckets": buckets, "task_progress": said})


def test_only_the_agent_running_a_task_sets_its_progress(start_hub: Callable[..., Hub]
                                                         ) -> None:
    hub = start_hub(heartbeat_interval=1)
    world = World(hub)
    x, y = world.agent("A"), world.agent("A")
    b = world.agent("B")
    ann = world.user("A", permissions.RESEARCHER)["token"]
    world.compute_job(ann, items="1-2")
    [bx], [by] = x.claim(), y.claim()
    tx, ty = bx["tasks"][0]["id"], by["tasks"][0]["id"]
    x.report(task_report(f"{bx['id']}/{tx}/start", bx["id"], tx, "started"))
    y.report(task_report(f"{by['id']}/{ty}/start", by["id"], ty, "started"))

    def task(task_id: str) -> tuple[Any, Any, Any]:
        t = world.ok("GET", f"/task/{task_id}", token=ann)
        return t["progress"], t["stage"], t["outputs"]

    # each agent says how far its own task is
    assert beat(x, [bx["id"]], {tx: {"progress": 40, "stage": "render",
                                     "outputs": ["/x/1.exr"]}})[0] == 200
    assert beat(y, [by["id"]], {ty: {"progress": 10}})[0] == 200
    assert task(tx) == (40, "render", ["/x/1.exr"])
    mine, theirs = task(tx), task(ty)

    forged = {"progress": 99, "stage": "forged", "outputs": ["/etc/shadow"]}
    attacks = [(y, [by["id"]], {tx: forged}, []),  # another task, in its own heartbeat
               (y, [bx["id"]], {tx: forged}, [bx["id"]]),  # the other agent's bucket
               (b, [bx["id"]], {tx: forged}, [bx["id"]]),  # another organization's agent
               (b, [], {tx: forged, ty: forged}, [])]
    for agent, buckets, said, lost in attacks:
        status, answer = beat(agent, buckets, said)
        assert status == 200 and answer["lost"] == lost, answer
    # and in reports: refused, for a bucket leased to another agent
    for agent, bucket in ((y, bx["id"]), (b, bx["id"])):
        results = agent.report(task_report(f"{bucket}/{tx}/end", bucket, tx, "done",
                                           progress=100, stage="forged",
                                           outputs=["/etc/passwd"]))
        assert results[0]["outcome"] == "refused", results
    assert (task(tx), task(ty)) == (mine, theirs)

    # values out of bounds are refused whole, from the task's own agent too
    for bad in ({"progress": 100.5}, {"progress": -1}, {"progress": "50"},
                {"stage": "s" * 256}, {"outputs": ["x" * (MAX_OUTPUT_PATH + 1)]},
                {"outputs": [""]}, {"outputs": ["/a"] * (MAX_OUTPUTS + 1)}, {"eta": 5}):
        status, answer = beat(x, [bx["id"]], {tx: bad})
        assert status == 422, (bad, answer)
    assert task(tx) == mine

    # many heartbeats add at most MAX_OUTPUTS outputs, each once
    for start in (0, 600, 1200):
        paths = [f"/x/{n}.exr" for n in range(start, start + 600)]
        assert beat(x, [bx["id"]], {tx: {"outputs": paths}})[0] == 200
    outputs = task(tx)[2]
    assert len(outputs) == MAX_OUTPUTS == len(set(outputs))
    assert outputs[:2] == ["/x/1.exr", "/x/0.exr"]

    # once the task ended, its agent's heartbeats no longer change it
    x.report(task_report(f"{bx['id']}/{tx}/end", bx["id"], tx, "done", progress=100,
                         stage="write", outputs=["/x/final.exr"]))
    assert task(tx) == (100, "write", ["/x/final.exr"])
    assert beat(x, [bx["id"]], {tx: {"progress": 5, "stage": "again"}})[0] == 200
    assert task(tx) == (100, "write", ["/x/final.exr"])
