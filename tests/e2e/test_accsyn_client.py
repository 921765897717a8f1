"""accsyn's own Python client (``accsyn-python-api``, from PyPI, pinned in constraints.txt),
unmodified, against a real hub with ``accsyn_api`` on and a real agent serving share
``projects``: each example of clients.rst and jobs.rst run through
``accsyn_api.Session(workspace=…, username=…, api_key=…, hostname="127.0.0.1", port=…)``
with its documented outcome asserted, then the client's file calls, and what Ferry does
not have answered as a message. One hub and one agent serve the whole module."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hub import Session
from tests.conftest import HUB_DEFAULTS, ON_POSTGRES, postgres_database
from tests.helpers import ROOT_PASSWORD, Agent, Hub, http, isolated_env, wait_for

accsyn_api = pytest.importorskip("accsyn_api")  # the test extra installs it (constraints.txt)
AccsynException = pytest.importorskip("accsyn_api.session").AccsynException

pytestmark = [pytest.mark.slow, pytest.mark.one_round(
    "the calls it makes run on PostgreSQL in tests/security/test_accsyn_boundary.py"),
    # the client never verifies the hub's certificate, as against accsyn (docs/ACCSYN.md)
    pytest.mark.filterwarnings("ignore:Unverified HTTPS request")]

# finished jobs leave the default queries after 1 s and need archived=True after 4 s
# (jobs.rst: one hour and 14 days), so "Inactive jobs" runs in seconds
HUB = {**HUB_DEFAULTS, "job_inactive_after": 1, "job_archive_after": 4,
       "accsyn_api": {"port": 0, "workspace_alias": "acmevfx"}}


@dataclass
class Served:
    hub: Hub
    agent: Agent
    native: Session  # root's own Ferry Session: to check what the client did
    accsyn: Any  # root's accsyn_api.Session
    key: str  # root's API key
    client_id: str
    projects: Path

    def client(self, **given: Any) -> Any:
        """A new accsyn session (root's unless told)."""
        options = {"workspace": "studio", "username": "root", "api_key": self.key,
                   "hostname": "127.0.0.1", "port": self.hub.info["accsyn_port"], **given}
        return accsyn_api.Session(**options)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("accsyn")
    env = isolated_env(tmp / "env")
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "HOME",
                    "FERRY_ROOT_PASSWORD", "PYTHON_KEYRING_BACKEND"):
            patch.setenv(key, env[key])
        for key in ("ACCSYN_WORKSPACE", "ACCSYN_API_USER", "ACCSYN_API_KEY",
                    "ACCSYN_CREDENTIALS_PATH", "ACCSYN_PROXY", "AS_DEV"):
            patch.delenv(key, raising=False)
        patch.chdir(tmp)  # the client reads a .env of the current folder
        section: dict[str, Any] = dict(HUB)
        if ON_POSTGRES:
            section["uri"] = stack.enter_context(postgres_database())
        hub = Hub("hub", "studio", tmp, section, env)
        stack.callback(hub.kill)
        hub.start()
        native = Session(hub.url, username="root", password=ROOT_PASSWORD)
        agent = Agent("agent", "fileserver", tmp, {
            "hub": hub.url, "api_key": native.create("Node", {"name": "WIN_SERVER"})["api_key"],
            "retry_max_delay": 0.5, "transfer_ip": "127.0.0.1", "lanes": 1,
            "logging": {"level": "DEBUG"}}, env)
        stack.callback(agent.kill)
        agent.start()
        client = wait_for(lambda: agent.status()["client_id"], what="enrolled")
        projects = tmp / "projects"
        (projects / "thefilm").mkdir(parents=True)
        (projects / "thefilm" / "latest_edit.mov").write_bytes(b"edit" * 1024)
        (projects / "_REF").mkdir()
        (projects / "_REF" / "creatures_showreel_2018.mov").write_bytes(b"reel" * 256)
        native.create("Share", {"name": "projects", "client": client, "path": str(projects)})
        wait_for(lambda: agent.status()["transfer"]["shares"] == ["projects"], what="served")
        key = native.create("ApiKey", {"description": "accsyn scripts"})["api_key"]
        served = Served(hub, agent, native, None, key, client, projects)
        served.accsyn = served.client()
        yield served


def _offline_client(served: Served) -> str:
    """A client that enrolled once and never checked in again: offline after the grace."""
    key = served.native.create("Node", {"name": f"gone-{uuid.uuid4().hex[:6]}"})["api_key"]
    status, enrolled = http("POST", f"{served.hub.api}/agent/enroll", {
        "api_key": key, "machine_id": uuid.uuid4().hex, "code": "gone", "type": 1,
        "lanes": 0})
    assert status == 200, enrolled
    wait_for(lambda: served.native.get("Client", enrolled["client_id"])["status"] ==
             "offline", what="the client offline")
    return str(enrolled["client_id"])


def test_clients_rst_through_accsyns_client(served: Served) -> None:
    session = served.accsyn
    assert session._role == "admin" and session._uid  # the login's answer, as the client keeps it
    gone = _offline_client(served)
    # Query: agents listed, with their metrics
    all_clients = session.find('Client')
    servers = session.find('Client where type=1')
    assert isinstance(all_clients, list) and {served.client_id, gone} <= \
        {c["id"] for c in all_clients}
    assert gone in {c["id"] for c in servers} and all(c["type"] == 1 for c in servers)
    [agent] = [c for c in all_clients if c["id"] == served.client_id]
    assert {"c", "in", "l", "m", "mpf", "mpt", "mvf", "mvt", "out"} <= set(agent["metrics"])
    assert agent["status"] == "online" and agent["code"]
    # times come as accsyn sends them: the client makes them datetimes
    assert isinstance(agent["created"], datetime) and isinstance(agent["last_checkin"],
                                                                 datetime)
    # Modify: disabled, then enabled again
    session.update('Client', served.client_id, {'status': "disabled"})
    assert served.native.get("Client", served.client_id)["status"] == "disabled"
    updated = session.update('Client', served.client_id, {'status': "online"})
    assert updated["status"] == "online"
    # Create: not through the API
    with pytest.raises(AccsynException, match="cannot be created"):
        session.create("Client", {"code": "WIN_SERVER"})
    # Delete: an online client is refused (the note), an offline one deleted
    with pytest.raises(AccsynException, match="client/delete: "):
        session.delete_one('Client', served.client_id)
    assert session.delete_one('Client', gone) is True
    assert session.find_one(f"Client where id={gone}") is None
    # the workspace may be the configured alias too, in any case
    assert served.client(workspace="AcmeVFX").find_one(f"Client where id={served.client_id}")


def test_jobs_rst_through_accsyns_client(served: Served) -> None:
    session, native = served.accsyn, served.native
    # Create: the reference's transfer job, paused (to a share: it can run here)
    job = session.create("Job", {
        "source": "share=projects/thefilm/latest_edit.mov",
        "destination": "share=projects/delivered/latest_edit.mov",
        "status": "paused"})
    assert isinstance(job, dict) and job["status"] == "paused"
    assert job["code"] == "latest_edit.mov" and isinstance(job["created"], datetime)
    # Query: all active jobs, by code (quoted, with spaces; the client lower-cases it)
    session.update("job", job["id"], {"code": "X and Y.png"})
    assert job["id"] in {j["id"] for j in session.find('Job')}
    found = session.find_one('Job where code="x and y.png"')
    assert found is not None and found["id"] == job["id"]
    assert session.find_one('Job where code="no such job"') is None
    assert "X and Y.png" in session.str(found)  # the client's own pretty print
    assert job["id"] in {j["id"] for j in session.find('Job where user=root')}
    assert job["id"] in {j["id"] for j in session.find('Job where source=hq')}
    # Tasks: queried by their job, added (mirrored paths and a new destination), excluded
    tasks = session.find(f'task WHERE job.id={job["id"]}')
    assert [t["uri"] for t in tasks] == ["0"] and tasks[0]["status"] == "queued"
    assert len(session.find(f'task WHERE job.id={job["id"]} AND status<>executing')) == 1
    added = session.create("task", {"tasks": [
        {"source": "share=projects/_REF/creatures_showreel_2018.mov",
         "destination": "share=projects/TMP/creatures_showreel_2018_tmp.mov"}]}, job["id"])
    assert added["success"] is True and len(added["created"]) == 1
    with pytest.raises(AccsynException, match="task/create: "):
        session.create("task", {"tasks": [
            {"source": "share=projects/_REF/creatures_showreel_2018.mov",
             "destination": "share=projects/TMP/creatures_showreel_2018_tmp.mov"}]},
            job["id"], allow_duplicates=False)
    excluded = session.update_many('task', job["id"], [{'id': added["created"][0],
                                                        'status': 'excluded'}])
    assert [(t["id"], t["status"]) for t in excluded] == [(added["created"][0], "excluded")]
    assert len(session.find('task', entityid=job["id"])) == 2
    # Modify: started; done; then found with finished=True once inactive
    session.update('job', job["id"], {'status': "waiting"})
    wait_for(lambda: native.get("Job", job["id"])["status"] == "done", what="the job done")
    assert (served.projects / "delivered" / "latest_edit.mov").read_bytes() == b"edit" * 1024
    assert not (served.projects / "TMP").exists()  # its task was excluded
    wait_for(lambda: job["id"] in {j["id"] for j in session.find(
        'Job where status=done', finished=True)}, what="found with finished=True")
    # paused, waiting, aborted
    other = session.create("Job", {"compute": {"command": ["sleep", "30"], "items": "1"},
                                   "status": "paused"})
    seen = []
    for status in ("paused", "waiting", "aborted"):
        seen.append(session.update('job', other["id"], {'status': status})["status"])
    assert seen[0] == "paused" and seen[2] == "aborted"
    wait_for(lambda: other["id"] in {j["id"] for j in session.find(
        'Job where status=aborted', finished=True)}, what="the aborted job inactive")
    # to a user: pending until lars chooses where it lands, and resent (pending again);
    # to a site, found by its destination
    native.create("User", {"username": "lars@edit.com", "email": "lars@edit.com",
                           "password": "lars first password"})
    native.create("Site", {"name": "stockholm"})
    to_lars = session.create("Job", {"source": "share=projects/thefilm/latest_edit.mov",
                                     "destination": "lars@edit.com", "status": "paused"})
    assert (to_lars["status"], to_lars["destination_hr"]) == ("pending", "user:lars@edit.com")
    assert session.update('job', to_lars["id"], {'status': "pending"})["status"] == "pending"
    to_site = session.create("Job", {"source": "share=projects/thefilm/latest_edit.mov",
                                     "destination": "stockholm", "status": "paused"})
    found = session.find_one('Job where destination="stockholm"')
    assert found["id"] == to_site["id"] and found["destination_hr"] == "site:stockholm"
    # Delete
    assert session.delete_one('job', other["id"]) is True
    assert session.find_one(f"Job where id={other['id']}", finished=True) is None
    with pytest.raises(AccsynException, match="tasks cannot be deleted"):
        session.delete_one("task", tasks[0]["id"])
    # archived after job_archive_after (4 s here)
    wait_for(lambda: job["id"] in {j["id"] for j in session.find(
        'Job where status=done', archived=True)}, what="the done job archived")
    # limit, skip and attributes
    for n in range(3):
        session.create("Job", {"compute": {"command": ["true"], "items": "1"},
                               "status": "paused", "code": f"page{n}"})
    pages = [session.find("Job where code matches 'page*'", limit=2, skip=skip)
             for skip in (0, 2)]
    assert [[j["code"] for j in page] for page in pages] == [["page0", "page1"], ["page2"]]
    assert session.find("Job where code=page1", attributes=["code", "status"]) == [
        {"id": pages[0][1]["id"], "code": "page1", "status": "paused"}]


def test_files_and_what_ferry_lacks_through_accsyns_client(served: Served) -> None:
    session, root = served.accsyn, served.projects
    listed = session.ls("share=projects/thefilm")
    assert [(e["name"], e["is_dir"], e["size"]) for e in listed] == [
        ("latest_edit.mov", False, 4096)]
    assert session.exists("share=projects/thefilm/latest_edit.mov") is True
    assert session.exists("share=projects/thefilm/nothing.mov") is False
    assert session.getsize("share=projects/thefilm/latest_edit.mov") == 4096
    assert session.mkdir("share=projects/shot020/comp")["changed"] is True
    assert session.ls("share=projects", directories_only=True, recursive=True, maxdepth=1)
    session.rename("share=projects/_REF/creatures_showreel_2018.mov",
                   "share=projects/_REF/reel.mov")
    session.mv("share=projects/_REF/reel.mov", "share=projects/shot020/")
    assert (root / "shot020" / "reel.mov").read_bytes() == b"reel" * 256
    with pytest.raises(AccsynException, match="not empty"):
        session.delete("share=projects/shot020")
    session.delete("share=projects/shot020", force=True)
    assert not (root / "shot020").exists()
    # what Ferry does not have: a message naming the call and why, never a failure
    for call, needle in (
            (lambda: session.get_setting("x"), "setting: not supported by Ferry"),
            (lambda: session.report("Job"), "job/report: not supported by Ferry"),
            (lambda: session.ls("share=projects", include="*.mov"),
             "include and exclude filters are not supported"),
            (lambda: session.deactivate_one("user", "0" * 24),
             "user/deactivate: not supported by Ferry")):
        with pytest.raises(AccsynException, match=needle):
            call()
    # root's node's agent runs on this host; Ferry has no desktop app
    assert session.daemon_is_running() is True and session.app_is_running() is None
    assert "job" in session.find("entitytypes")
    assert "status" in session.find("attributes WHERE entitytype=job")
