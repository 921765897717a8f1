"""The web dashboard in a real browser: Debian's chromium driven by Playwright against a real
hub and agent. An admin logs in, sees the agent and its lanes online with metrics, watches
a job reach 100 % without reloading, opens a task's log and aborts a second job; a viewer
logs in and gets no buttons. A screenshot of each page goes to the test artifacts folder
(FERRY_TEST_ARTIFACTS, else test-artifacts/dashboard/ under the repository).

Playwright's own browser downloads are never used: only ``executable_path``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import Session
from tests.helpers import Agent, Hub, wait_for

CHROMIUM = os.environ.get("FERRY_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWER_PASSWORD = "viewer-password-for-the-dashboard-1"
TIMEOUT = 60_000  # ms: a deadline for what the page must come to show, not a speed check


def artifacts() -> Path:
    folder = Path(os.environ.get("FERRY_TEST_ARTIFACTS")
                  or Path(__file__).resolve().parents[2] / "test-artifacts") / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        why = f"playwright is not installed ({exc}); pip install -e '.[test]'"
        if os.environ.get("FERRY_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    if not shutil.which(CHROMIUM):
        why = f"no chromium at {CHROMIUM}; apt-get install chromium"
        if os.environ.get("FERRY_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page: Any, hub: Hub, username: str, password: str) -> None:
    page.goto(hub.url + "/")
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.click("#login-submit")
    page.wait_for_selector(f"#whoami:has-text('{username}')", timeout=TIMEOUT)


@pytest.mark.one_round("the page reads through the API, whose storage the security and API "
                       "tests cover in both rounds")
def test_admin_and_viewer_in_a_browser(hub: Hub, session: Session,
                                       node_key: Callable[[str], dict[str, Any]],
                                       start_agent: Callable[..., Agent], browser: Any,
                                       env: dict[str, str]) -> None:
    from tests.helpers import ROOT_PASSWORD, ferry

    shots = artifacts()
    agent = start_agent(hub, node_key("render01")["api_key"], lanes=2)
    agent_id = wait_for(lambda: agent.status()["client_id"], what="the agent enrolled")
    session.create("User", {"username": "watcher", "password": VIEWER_PASSWORD,
                            "roles": ["viewer"]})
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # "Abort job …?"

    # an admin (root) logs in: the farm shows the agent and both lanes online, with metrics
    log_in(page, hub, "root", ROOT_PASSWORD)
    row = page.locator(f"tr[data-test=agent-row][data-id='{agent_id}']")
    row.locator("[data-status=online]").wait_for(timeout=TIMEOUT)
    page.wait_for_function("""id => {
        const row = document.querySelector(`tr[data-test=agent-row][data-id='${id}']`);
        return row && [...row.querySelectorAll('td.metric .value')].slice(0, 3)
            .every(v => /^[0-9.]+$/.test(v.textContent));
    }""", arg=agent_id, timeout=TIMEOUT)
    lanes = page.locator(f"tr[data-test=lane-row][data-parent='{agent_id}']")
    lanes.nth(1).wait_for(timeout=TIMEOUT)
    assert lanes.count() == 2
    assert lanes.locator("[data-status=online]").count() == 2
    assert row.locator("button[data-test=disable]").count() == 1  # an admin may disable it
    page.wait_for_selector("#live.on", timeout=TIMEOUT)  # the event stream is open
    page.screenshot(path=str(shots / "farm-admin.png"), full_page=True)

    # a job, submitted meanwhile, reaches 100 % on the jobs page without a reload
    page.click("#nav-jobs")
    page.wait_for_selector("[data-test=jobs]", timeout=TIMEOUT)
    # with the command line, as an operator does
    said = ferry("login", hub.url, "--username", "root", "--password-stdin", env=env,
                 input=ROOT_PASSWORD + "\n")
    assert said.returncode == 0, said.stderr
    submitted = ferry("job", "submit", "--name", "frames", "--items", "1-12", "--bucket", "2",
                      "--", "sh", "-c", "echo frame $FERRY_ITEM of the dashboard test; "
                      """echo '{"progress": 100, "stage": "render"}'; sleep 0.3""",
                      env=env)
    assert submitted.returncode == 0, submitted.stderr
    job = session.get("Job", submitted.stdout.strip())
    done = page.locator(f"tr[data-test=job-row][data-id='{job['id']}'] [data-progress='100']")
    done.wait_for(timeout=TIMEOUT)
    page.locator(f"tr[data-test=job-row][data-id='{job['id']}'] [data-status=done]").wait_for(
        timeout=TIMEOUT)
    page.screenshot(path=str(shots / "jobs-admin.png"), full_page=True)

    # the job's page: its tasks, the timeline of its buckets, and a task's log
    page.click(f"tr[data-test=job-row][data-id='{job['id']}'] a")
    page.wait_for_selector("[data-test=job-title]", timeout=TIMEOUT)
    page.wait_for_selector("svg[data-test=timeline] rect.bucket", timeout=TIMEOUT)
    assert page.locator("tr[data-test=task-row]").count() == 12
    # each task's progress line: its progress and stage (a task of an engine, say)
    page.wait_for_selector("tr[data-test=task-row] [data-test=task-stage]:has-text('render')",
                           timeout=TIMEOUT)
    assert page.locator("tr[data-test=task-row] [data-test=task-progress] "
                        "[data-progress='100']").count() == 12
    assert page.locator("svg[data-test=timeline] rect.bucket").count() == 6
    page.locator("tr[data-test=task-row] button[data-test=open-log]").first.click()
    page.wait_for_selector("pre[data-test=log]:has-text('of the dashboard test')",
                           timeout=TIMEOUT)
    page.screenshot(path=str(shots / "job-admin.png"), full_page=True)

    # a second job, running long and holding a limit, is aborted from the jobs page;
    # the limits panel shows the limit in use meanwhile, and free again after
    session.create("Limit", {"name": "nuke", "max": 1})
    slow = session.create("Job", {"code": "slow", "compute": {
        "command": ["sleep", "60"], "items": "1-4", "bucket_size": 1}, "limits": ["nuke"]})
    page.click("#nav-jobs")
    in_use = "tr[data-test=limit-row][data-name=nuke] td:nth-child(2):text-is('{}')"
    page.locator(in_use.format(1)).wait_for(timeout=TIMEOUT)
    abort = page.locator(f"tr[data-test=job-row][data-id='{slow['id']}'] button[data-test=abort]")
    abort.wait_for(timeout=TIMEOUT)
    abort.click()
    page.locator(f"tr[data-test=job-row][data-id='{slow['id']}'] [data-status=aborted]"
                 ).wait_for(timeout=TIMEOUT)
    assert session.get("Job", slow["id"])["status"] == "aborted"
    page.locator(in_use.format(0)).wait_for(timeout=TIMEOUT)
    page.screenshot(path=str(shots / "jobs-after-abort.png"), full_page=True)
    # an admin gives the limit a new max from the panel
    nuke = "tr[data-test=limit-row][data-name=nuke]"
    page.fill(f"{nuke} input[data-test=limit-max]", "3")
    page.click(f"{nuke} button[data-test=limit-set]")
    page.locator(f"{nuke} td:nth-child(3):text-is('3')").wait_for(timeout=TIMEOUT)
    assert session.find("Limit where name=nuke")[0]["max"] == 3

    # a job no agent can ever match says why it waits, on its row and on its page
    huge = session.create("Job", {"code": "huge", "compute": {
        "command": ["true"], "items": "1", "clients": ["ram:>100000GB"]}})
    why = page.locator(f"tr[data-test=job-row][data-id='{huge['id']}'] [data-test=status-reason]")
    why.wait_for(timeout=TIMEOUT)
    assert "no agent of this organization matches ram:>100000GB" in why.inner_text()
    page.click(f"tr[data-test=job-row][data-id='{huge['id']}'] a")
    page.wait_for_selector("[data-test=job] dd:has-text('ram:>100000GB')", timeout=TIMEOUT)
    page.click("#nav-jobs")

    # a viewer sees the same agents and jobs, and no button that changes anything
    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])", timeout=TIMEOUT)
    log_in(page, hub, "watcher", VIEWER_PASSWORD)
    page.click("#nav-farm")
    page.locator(f"tr[data-test=agent-row][data-id='{agent_id}']").wait_for(timeout=TIMEOUT)
    assert page.locator("[data-test=farm] button:is([data-test=disable], "
                        "[data-test=enable])").count() == 0
    page.screenshot(path=str(shots / "farm-viewer.png"), full_page=True)
    page.click("#nav-jobs")
    page.locator(f"tr[data-test=job-row][data-id='{job['id']}']").wait_for(timeout=TIMEOUT)
    page.locator("tr[data-test=limit-row][data-name=nuke]").wait_for(timeout=TIMEOUT)
    assert page.locator("[data-test=limits] :is(input, button)").count() == 0  # sees, no edit
    assert page.locator("[data-test=jobs] button:is([data-test=pause], [data-test=resume], "
                        "[data-test=abort])").count() == 0
    page.screenshot(path=str(shots / "jobs-viewer.png"), full_page=True)
    page.click(f"tr[data-test=job-row][data-id='{job['id']}'] a")
    page.wait_for_selector("[data-test=job-title]", timeout=TIMEOUT)
    assert page.locator("[data-test=job] button:is([data-test=pause], [data-test=resume], "
                        "[data-test=abort])").count() == 0
    page.screenshot(path=str(shots / "job-viewer.png"), full_page=True)
    assert errors == []


@pytest.mark.one_round("the page reads through the API, whose storage the security and API "
                       "tests cover in both rounds")
def test_a_transfer_job_shows_its_bytes_over_time(hub: Hub, session: Session, two_sites: Any,
                                                  browser: Any) -> None:
    from tests.helpers import ROOT_PASSWORD, ended

    for n in range(3):
        (two_sites.projects / "reel" / f"plate.{n}.dpx").parent.mkdir(exist_ok=True)
        (two_sites.projects / "reel" / f"plate.{n}.dpx").write_bytes(os.urandom(3 << 20))
    job = session.create("Job", {"source": "share=projects/reel/plate.0.dpx",
                                 "destination": "share=backup/"})
    session.create("Job", {"source": "share=projects/reel", "destination": "share=backup/"})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="the transfer")
    assert done["status"] == "done"
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, hub, "root", ROOT_PASSWORD)
    page.evaluate(f"location.hash = '#/job/{job['id']}'")
    chart = page.locator("svg[data-test=transfer-chart]")
    chart.wait_for(timeout=TIMEOUT)
    assert "3.1 MB moved in all" in chart.text_content()
    assert page.locator("svg[data-test=timeline] rect.bucket").count() == 1
    page.screenshot(path=str(artifacts() / "job-transfer.png"), full_page=True)


@pytest.mark.one_round("the page reads through the API, whose storage the security and API "
                       "tests cover in both rounds")
def test_the_farm_shows_why_a_workstation_takes_no_work(
        hub: Hub, session: Session, node_key: Callable[[str], dict[str, Any]],
        start_agent: Callable[..., Agent], browser: Any, tmp_path: Path) -> None:
    from tests.helpers import ROOT_PASSWORD

    activity = tmp_path / "activity"
    activity.write_text("active")
    agent = start_agent(hub, node_key("ws01")["api_key"], lanes=1,
                        nimby={"activity": str(activity)})
    agent_id = wait_for(lambda: agent.status()["client_id"], what="the agent enrolled")
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, hub, "root", ROOT_PASSWORD)
    row = page.locator(f"tr[data-test=agent-row][data-id='{agent_id}']")
    row.locator("[data-test=status-reason]:has-text('user active (nimby)')").wait_for(
        timeout=TIMEOUT)
    page.screenshot(path=str(artifacts() / "farm-workstation.png"), full_page=True)
    activity.write_text("idle")  # live, without reloading: the reason goes
    row.locator("[data-test=status-reason]").wait_for(state="detached", timeout=TIMEOUT)


@pytest.mark.one_round("the page reads through the API, whose storage the security and API "
                       "tests cover in both rounds")
def test_a_job_page_names_the_jobs_it_waits_for(hub: Hub, session: Session,
                                                browser: Any) -> None:
    from tests.helpers import ROOT_PASSWORD

    session.create("Engine", {"name": "blender", "argv": ["true", "{scene}", "{item}"]})
    first = session.create("Job", {"code": "render", "engine": "blender",
                                   "args": {"scene": "shot010.blend"},
                                   "compute": {"items": "1-2"}})
    comp = session.create("Job", {"code": "comp", "after_items": first["id"],
                                  "after_failed": "wait",
                                  "compute": {"command": ["true"], "items": "1-2"}})
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, hub, "root", ROOT_PASSWORD)
    page.evaluate(f"location.hash = '#/job/{comp['id']}'")
    after = page.locator("[data-test=job-after]")
    after.wait_for(timeout=TIMEOUT)  # no agent: render waits, and comp for its items
    assert after.text_content() == f"items of {first['id']} waiting; if one fails: wait"
    assert page.locator("[data-test=job-after] a").get_attribute("href") == \
        f"#/job/{first['id']}"
    assert page.locator(f"dd:has-text('waiting for items of job {first['id']}')").count() == 1
    page.screenshot(path=str(artifacts() / "job-after.png"), full_page=True)
    # the job it waits for was made from an engine: its page says which, with what
    page.locator("[data-test=job-after] a").click()
    page.wait_for_selector("dd:has-text('blender scene=shot010.blend')", timeout=TIMEOUT)
