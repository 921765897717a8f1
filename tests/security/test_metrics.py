"""The hub's /metrics is no side door: only the metrics token opens it, a refused
request changes nothing, and no label value carries a name, path or code of the records.

The hub holds records of several organizations (tests/security/world.py): their users,
nodes, agents with codes, shares with paths, jobs with codes. /metrics aggregates them
over every organization; what it may show are bounded names (statuses, types, outcomes).
"""

from __future__ import annotations

import re
import urllib.parse

from hub import permissions
from tests.helpers import Hub, http
from tests.promtool import samples
from tests.security.world import World, task_report, unique

TOKEN = "metrics-token-Zq7uW1c9xK3pL0aa"
# every label of the hub's page, with the values it may take (docs/METRICS.md)
LABELS = {
    "type": {"app", "server", "user_server", "browser", "compute_lane"},
    "status": {"online", "offline", "disabled", "disabled-offline", "init", "pending",
               "waiting", "running", "paused", "failed", "aborted", "done", "queued",
               "booting", "executing", "onhold", "excluded"},
    "outcome": {"applied", "duplicate", "refused"},
    "le": None,  # histogram buckets: numbers
    "version": None,  # the hub's version
}


def scrape(hub: Hub, token: str | None = TOKEN, **headers: str) -> tuple[int, object]:
    return http("GET", f"{hub.url}/metrics", token=token, headers=headers)


def counters(hub: Hub) -> dict[object, float]:
    """The page's Ferry figures, but for how old the database's figures are."""
    status, page = scrape(hub)
    assert status == 200, page
    return {key: v for key, v in samples(str(page)).items()
            if key[0].startswith("ferry_") and key[0] != "ferry_hub_figures_age_seconds"}


def test_only_the_metrics_token_opens_metrics_and_a_refusal_changes_nothing(
        start_hub) -> None:
    hub: Hub = start_hub(metrics_token=TOKEN)
    world = World(hub)
    user = world.user("A", permissions.RESEARCHER)
    agent = world.agent("A")
    before = counters(hub)
    attempts = {
        "no token": scrape(hub, token=None),
        "a wrong token": scrape(hub, token="metrics-token-Zq7uW1c9xK3pL0ab"),
        "the token's first half": scrape(hub, token=TOKEN[:16]),
        "the token with more after it": scrape(hub, token=TOKEN + "x"),
        "the token in another case": scrape(hub, token=TOKEN.upper()),
        "root's API token": scrape(hub, token=world.root),
        "a user's API token": scrape(hub, token=user["token"]),
        "an agent's token": scrape(hub, token=agent.token),
        "the token as Basic credentials": scrape(hub, token=None,
                                                 Authorization=f"Basic {TOKEN}"),
        "the token as the whole header": scrape(hub, token=None, Authorization=TOKEN),
    }
    for name in ("token", "access_token", "bearer", "metrics_token"):
        query = urllib.parse.urlencode({name: TOKEN})
        attempts[f"?{name}= in the query"] = http("GET", f"{hub.url}/metrics?{query}")
    for what, (status, answer) in attempts.items():
        assert status == 401, (what, status, answer)
        assert isinstance(answer, dict) and answer["error"]["code"] in (
            "no_credentials", "bad_metrics_token"), (what, answer)
        assert "ferry_hub" not in str(answer), what  # no figure in a refusal
    # a refused scrape changed nothing: no counter moved, no figure was read for it
    assert counters(hub) == before
    # and the refusals were logged as such (SECURITY.md: every refusal is)
    assert "bad_metrics_token" in hub.log() and "no_credentials" in hub.log()


def test_without_a_token_only_this_machine_is_served(start_hub) -> None:
    hub: Hub = start_hub()
    status, page = scrape(hub, token=None)
    assert status == 200 and "ferry_hub_tasks" in str(page)  # the test runs on its machine
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):  # relayed by a proxy
        status, answer = scrape(hub, token=None, **{header: "203.0.113.7"})
        assert status == 403, (header, answer)
        assert answer["error"]["code"] == "metrics_local_only"
        assert "metrics_token" in answer["error"]["message"]


def test_label_values_carry_no_names_paths_or_codes(start_hub, tmp_path) -> None:
    hub: Hub = start_hub(metrics_token=TOKEN)
    world = World(hub)
    secrets = set()
    for org in "ABC":
        user = world.user(org, permissions.RESEARCHER)
        code = unique(f"secret-agent-code-{org}")
        agent = world.agent(org, code=code)
        share = tmp_path / unique(f"secret-share-path-{org}")
        share.mkdir()
        world.ok("POST", "/share", {"name": unique(f"secretshare{org}"), "client": agent.id,
                                    "path": str(share)})
        job_code = unique(f"secret-job-code-{org}")
        job = world.compute_job(user["token"], items="1-3", code=job_code)
        [bucket] = agent.claim()
        task = bucket["tasks"][0]["id"]
        agent.report(task_report(unique("k"), bucket["id"], task, "done"))
        secrets |= {world.org[org]["name"], user["username"], code, str(share), job_code,
                    agent.node["name"], job["id"], agent.id, task}
    status, page = scrape(hub)
    assert status == 200
    text = str(page)
    for secret in secrets:
        assert secret not in text, secret
    for (name, labels), _ in samples(text).items():
        for label, value in labels:
            assert label in LABELS, (name, label)
            allowed = LABELS[label]
            if allowed is not None:
                assert value in allowed, (name, label, value)
            elif label == "le":
                assert re.fullmatch(r"[0-9.e+-]+|\+Inf", value), (name, value)
    assert samples(text)[("ferry_hub_tasks", (("status", "done"),))] == 3
    assert samples(text)[("ferry_hub_tasks_finished_total", ())] == 3
