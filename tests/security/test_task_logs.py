"""Finding 9: an agent writes the log of its own runs, while they are fresh, and no more.

Agent X holds a bucket of a job; agent Y of the same organization runs another task of
it; B's agent runs nothing of it. X tries to upload the log of Y's task, B's agent the log
of X's, and X its own long after the bucket ended. Each is refused and the log users see
stays what the run wrote; an oversized log is cut at ``max_log_size``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hub import permissions
from tests.helpers import Hub, http
from tests.security.world import RawAgent, World, task_report


def upload(agent: RawAgent, task: str, bucket: str, data: bytes) -> tuple[int, object]:
    return http("POST", f"{agent.hub.api}/agent/log/{task}?bucket={bucket}", raw=data,
                token=agent.token)


def test_logs_come_only_from_the_run_that_made_them(start_hub: Callable[..., Hub]) -> None:
    hub = start_hub(log_grace=1, max_log_size=2048, lease_seconds=2, heartbeat_interval=1)
    world = World(hub)
    x, y = world.agent("A"), world.agent("A")
    b = world.agent("B")
    job = world.compute_job(world.user("A", permissions.RESEARCHER)["token"], items="1-2")
    [bx], [by] = x.claim(), y.claim()
    tx, ty = bx["tasks"][0]["id"], by["tasks"][0]["id"]
    assert job["id"] == bx["job_id"] == by["job_id"]

    assert upload(x, tx, bx["id"], b"x's own run\n")[0] == 200
    assert upload(y, ty, by["id"], b"y's own run\n")[0] == 200
    for agent, task, bucket in ((x, ty, bx["id"]),  # another task of a job it holds
                                (x, ty, by["id"]),  # another agent's bucket
                                (b, tx, bx["id"]),  # another organization's agent
                                (x, tx, "f" * 24)):  # a bucket that does not exist
        status, body = upload(agent, task, bucket, b"forged\n")
        assert status == 409, (task, bucket, body)
    assert world.call("GET", f"/task/{ty}/log")[1] == "y's own run\n"
    assert world.call("GET", f"/task/{tx}/log")[1] == "x's own run\n"

    # a log too large is cut where the hub says
    status, body = upload(y, ty, by["id"], b"y" * 10_000)
    assert status == 200 and body["kept"] == 2048, body  # type: ignore[index]
    kept = world.call("GET", f"/task/{ty}/log")[1]
    assert isinstance(kept, str) and kept.startswith("y" * 2048) and len(kept) < 2200

    # once the bucket ended and the grace passed, its logs are closed
    x.report(task_report(f"{bx['id']}/{tx}/end", bx["id"], tx, "done"),
             {"kind": "bucket", "key": f"{bx['id']}/end", "bucket_id": bx["id"],
              "started": "2026-12-05T12:00:00Z", "ended": "2026-12-05T12:00:01Z"})
    assert upload(x, tx, bx["id"], b"still fresh\n")[0] == 200  # within the grace
    time.sleep(3.5)  # past the lease (2 s, never renewed) and the grace (1 s)
    status, body = upload(x, tx, bx["id"], b"rewritten later\n")
    assert status == 409 and "ended more than" in body["error"]["message"], body  # type: ignore[index]
    assert world.call("GET", f"/task/{tx}/log")[1] == "still fresh\n"
    assert world.ok("GET", "/refusals")["refusals"].get("log", 0) >= 5


def test_live_output_comes_only_from_the_agent_that_runs_the_task(
        start_hub: Callable[..., Hub]) -> None:
    """A running task's output rides on its agent's heartbeats into its log_tail (what
    ``ferry task log --follow`` shows). Another agent of the same organization, or one of
    another organization, that puts output for it in its own heartbeats changes nothing."""
    hub = start_hub(heartbeat_interval=1)
    world = World(hub)
    x, y = world.agent("A"), world.agent("A")
    b = world.agent("B")
    world.compute_job(world.user("A", permissions.RESEARCHER)["token"], items="1-2")
    [bx], [by] = x.claim(), y.claim()
    tx, ty = bx["tasks"][0]["id"], by["tasks"][0]["id"]
    x.report(task_report(f"{bx['id']}/{tx}/start", bx["id"], tx, "started"))
    y.report(task_report(f"{by['id']}/{ty}/start", by["id"], ty, "started"))

    def tail(task: str) -> str:
        return str(world.ok("GET", f"/task/{task}")["log_tail"])

    def beat(agent: RawAgent, buckets: list[str], logs: dict[str, str]) -> None:
        status, answer = agent.call("POST", "/agent/heartbeat",
                                    {"buckets": buckets, "logs": logs})
        assert status == 200, answer

    beat(x, [bx["id"]], {tx: "x runs\n"})
    beat(y, [by["id"]], {ty: "y runs\n"})
    beat(x, [bx["id"]], {ty: "forged by x\n"})  # another agent's task
    beat(x, [bx["id"], by["id"]], {ty: "forged by x\n"})  # naming its bucket too
    beat(b, [bx["id"]], {tx: "forged by b\n"})  # another organization's agent
    assert tail(tx) == "x runs\n" and tail(ty) == "y runs\n"
    # and once the task has ended, its own agent's late output changes nothing either
    x.report(task_report(f"{bx['id']}/{tx}/end", bx["id"], tx, "done", log_tail="final\n"))
    beat(x, [bx["id"]], {tx: "late\n"})
    assert tail(tx) == "final\n"
