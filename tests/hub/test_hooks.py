"""Hooks against a real hub (issue 19): a job's done or failed hook (a compute or a
transfer job's) is a one-task compute job on the agent it names, with the job's id and
status in its environment, made once, in the creator's organization and queue; bad hooks
are refused naming the field, and nothing is made. Agents are driven by hand."""

from __future__ import annotations

from typing import Any

from hub import Session, permissions
from tests.helpers import Hub, db_query, http
from tests.hub.test_transfer_leases import claim, enroll
from tests.security.world import RawAgent, World, task_report


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def end(agent: RawAgent, bucket: dict[str, Any], event: str) -> None:
    task = bucket["tasks"][0]["id"]
    assert agent.report(task_report(f"{task}/end", bucket["id"], task, event))[0][
        "outcome"] in ("applied", "duplicate")


def hooks_of(world: World, job_id: str) -> list[dict[str, Any]]:
    return list(world.ok("POST", "/find", {"query": f"Job where hook_of={job_id}"})["result"])


def test_a_hook_runs_once_on_its_agent_with_the_job_in_its_environment(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    render = world.agent("A", code="render01")
    publisher = world.agent("A", code="pub01")
    hooks = {"done": {"client": "code:pub01", "command": ["publish", "{job}"],
                      "env": {"WHERE": "dailies"}},
             "failed": {"client": publisher.id, "command": ["alert"], "env": {}}}
    job = world.compute_job(ann, compute={"retries": 0, "clients": ["code:render01"]},
                            hooks=hooks)
    assert job["hooks"] == hooks and job["hook_of"] is None
    assert publisher.claim() == []  # nothing for the publisher until the job ends
    bucket = render.claim()[0]
    end(render, bucket, "done")
    end(render, bucket, "done")  # the report again: a duplicate, no second hook

    made = hooks_of(world, job["id"])
    assert [(h["hook_of"], h["kind"], h["status"], h["user"], h["organization"])
            for h in made] == [(job["id"], "compute", "waiting", job["user"],
                                job["organization"])]
    assert made[0]["compute"]["command"] == ["publish", "{job}"]
    assert render.claim() == []  # it runs on the agent the hook names, only
    hook_bucket = publisher.claim()[0]
    assert hook_bucket["job_id"] == made[0]["id"]
    assert hook_bucket["env"] == {"WHERE": "dailies", "FERRY_HOOK_JOB_ID": job["id"],
                                  "FERRY_HOOK_JOB_STATUS": "done",
                                  "FERRY_HOOK_EVENT": "job.done"}
    assert hook_bucket["tasks"][0]["argv"] == ["publish", made[0]["id"]]
    world.ok("PATCH", f"/job/{job['id']}", {"status": "done"}, ann)  # done again: no news
    end(publisher, hook_bucket, "done")
    assert len(hooks_of(world, job["id"])) == 1
    assert hooks_of(world, made[0]["id"]) == []  # a hook job has no hooks of its own

    # a failed job runs its failed hook, not its done hook
    failing = world.compute_job(ann, compute={"retries": 0, "clients": ["code:render01"]},
                                hooks=hooks)
    end(render, render.claim()[0], "failed")
    made = hooks_of(world, failing["id"])
    assert [h["compute"]["command"] for h in made] == [["alert"]]
    assert publisher.claim()[0]["env"]["FERRY_HOOK_JOB_STATUS"] == "failed"


def test_bad_hooks_are_refused_naming_the_field(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    world.agent("A", code="pub01")
    other = world.agent("B", code="pubB")
    good = {"client": "code:pub01", "command": ["publish"]}
    jobs = count(hub, "jobs")
    bad: list[tuple[Any, str]] = [
        ({"done": {"client": "code:pub01"}}, "hooks.done.command"),
        ({"done": {**good, "command": []}}, "hooks.done.command"),
        ({"failed": {**good, "command": [" "]}}, "hooks.failed.command"),
        ({"done": {**good, "command": ["a", "b\u0000"]}}, "hooks.done.command[1]"),
        ({"done": {**good, "client": "code:nobody"}}, "hooks.done.client"),
        ({"done": {**good, "client": other.id}}, "hooks.done.client"),  # B's agent
        ({"done": {**good, "env": {"FERRY_HOOK_EVENT": "x"}}}, "hooks.done.env.FERRY_HOOK_EVENT"),
        ({"done": {**good, "shell": True}}, "hooks.done.shell"),
        ({"aborted": good}, "hooks.aborted"),
        ("publish", "hooks"),
    ]
    for hooks, field in bad:
        status, answer = world.call("POST", "/job", {
            "compute": {"command": ["true"], "items": "1"}, "hooks": hooks}, ann)
        assert (status, answer["error"]["field"]) == (422, field), (hooks, answer)
    # B's agent is refused in the words of one that does not exist
    theirs = world.call("POST", "/job", {"compute": {"command": ["true"], "items": "1"},
                                         "hooks": {"done": {**good, "client": other.id}}}, ann)
    nowhere = world.call("POST", "/job", {"compute": {"command": ["true"], "items": "1"},
                                          "hooks": {"done": {**good, "client": "0" * 24}}}, ann)
    assert theirs[1]["error"]["message"].replace(other.id, "0" * 24) == \
        nowhere[1]["error"]["message"]
    status, answer = world.call("PATCH", "/job/" + world.compute_job(ann)["id"],
                                {"hooks": {"done": good}}, ann)
    assert (status, answer["error"]["field"]) == (422, "hooks")
    assert count(hub, "jobs") == jobs + 1


def test_a_transfer_job_runs_its_done_hook(hub: Hub, session: Session) -> None:
    """The studio's case: files landed, now publish them."""
    source, dest = enroll(hub, session, "srcs"), enroll(hub, session, "dsts")
    session.create("Share", {"name": "projects", "client": source["client_id"],
                             "path": "/srv/projects"})
    session.create("Share", {"name": "backup", "client": dest["client_id"],
                             "path": "/srv/backup"})
    hooks = {"done": {"client": "code:dsts", "command": ["publish", "in/plates"], "env": {}}}
    pulled = session.create("Job", {"source": "share=projects/plates",
                                    "destination": "share=backup/in/", "hooks": hooks,
                                    "retries": 0})
    assert (pulled["kind"], pulled["hooks"]) == ("transfer", hooks)
    (bucket,) = claim(hub, dest)
    task = bucket["tasks"][0]["id"]
    status, answer = http("POST", f"{hub.api}/agent/report", {"items": [task_report(
        f"{task}/end", bucket["id"], task, "done", size=10)]},
        headers={"Authorization": f"Bearer {dest['token']}"})
    assert status == 200 and answer["results"][0]["outcome"] == "applied", answer
    assert session.get("Job", pulled["id"])["status"] == "done"
    [made] = session.find(f"Job where hook_of={pulled['id']}")
    assert (made["kind"], made["compute"]["command"], made["compute"]["env"]) == (
        "compute", ["publish", "in/plates"],
        {"FERRY_HOOK_JOB_ID": pulled["id"], "FERRY_HOOK_JOB_STATUS": "done",
         "FERRY_HOOK_EVENT": "job.done"})
    assert (made["source_hr"], made["user"]) == ("site:hq", pulled["user"])
