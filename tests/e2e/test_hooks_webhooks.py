"""Events out on a real agent (issue 19): a job's done and failed hooks run on the agent
they name with the job in their environment, and a webhook is told of the jobs' ends,
signed. One test, both features: CI's time is short."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hub import Session
from tests.e2e.test_dependencies import wait_done
from tests.ferry.test_operator import run
from tests.helpers import ROOT_PASSWORD, Hub, wait_for
from tests.receiver import Receiver

SAY = ["sh", "-c", 'echo "hook of $FERRY_HOOK_JOB_ID: $FERRY_HOOK_JOB_STATUS '
                   '($FERRY_HOOK_EVENT) for $WHO"']


@pytest.mark.one_round("the agent's side: the hub's runs in both rounds in tests/hub/"
                       "test_hooks.py and test_webhooks.py")
def test_hooks_run_on_a_real_agent_and_a_webhook_hears_of_it(
        hub: Hub, session: Session, node_key, start_agent, env: dict[str, str]) -> None:
    receiver = Receiver()
    try:
        made = session.create("Webhook", {"url": receiver.url("/farm"),
                                          "events": ["job.done", "job.failed", "task.failed"]})
        receiver.secrets["/farm"] = made["secret"]
        agent = start_agent(hub, node_key("render01")["api_key"], lanes=2)
        agent_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
        hooks: dict[str, Any] = {
            when: {"client": agent_id, "command": SAY, "env": {"WHO": "dailies"}}
            for when in ("done", "failed")}
        good = session.create("Job", {"compute": {"command": ["true"], "items": "1"},
                                      "hooks": hooks})
        bad = session.create("Job", {"compute": {"command": ["sh", "-c", "exit 3"],
                                                 "items": "1", "retries": 0},
                                     "hooks": hooks})
        assert wait_done(session, good["id"])["status"] == "done"
        assert wait_done(session, bad["id"])["status"] == "failed"

        ran = {}
        for job, status in ((good, "done"), (bad, "failed")):
            [hook] = wait_for(lambda job=job: session.find(f"Job where hook_of={job['id']}"),
                              what="the hook job")
            assert wait_done(session, hook["id"])["status"] == "done"
            [task] = session.find(f"Task where job={hook['id']}", attributes=["log_tail"])
            assert task["log_tail"] == \
                f"hook of {job['id']}: {status} (job.{status}) for dailies\n"
            ran[hook["id"]] = job["id"]

        wanted = {("job.done", good["id"]), ("job.failed", bad["id"]),
                  ("task.failed", bad["id"]), *(("job.done", h) for h in ran)}

        def told() -> set[tuple[str, str]]:
            return {(r.event, r.body["data"].get("job", r.body["data"]["id"]))
                    for r in receiver.taken("/farm")}

        wait_for(lambda: wanted <= told(), timeout=60, what="the webhook told of each end")
        assert all(r.signed for r in receiver.events())

        # as ferry job show has it: the job's hooks, and the job a hook job is of
        run(env, "login", hub.url, "--username", "root", "--password-stdin",
            stdin=ROOT_PASSWORD + "\n")
        shown = run(env, "job", "show", good["id"])
        assert re.search(rf"on done +{agent_id}: sh -c ", shown), shown
        hook_id = next(h for h, j in ran.items() if j == good["id"])
        assert re.search(rf"hook of +{good['id']}", run(env, "job", "show", hook_id))
    finally:
        receiver.close()
