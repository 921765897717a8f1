"""Transfer jobs to users and sites (jobs.rst): pending until a destination path is set,
resent by writing ``pending``; tasks added with mirrored or explicit destinations, and the
duplicate rule. A real hub and real agents."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from hub import Session
from hub.session import ApiError
from tests.conftest import Sites
from tests.helpers import Hub, db_rows, digest_tree, ended, wait_for


@pytest.fixture
def hub(start_hub) -> Hub:
    return start_hub(heartbeat_interval=0.5, lease_seconds=10)


def tasks_of(session: Session, job_id: str) -> list[dict[str, Any]]:
    return sorted(session.find(f"task WHERE job.id={job_id}"), key=lambda t: int(t["uri"]))


def refused(call: Any, status: int, needle: str) -> ApiError:
    with pytest.raises(ApiError) as info:
        call()
    assert info.value.status == status, info.value
    assert needle in info.value.message, info.value
    return info.value


def test_a_package_to_a_user_waits_for_a_download_folder(
        hub: Hub, session: Session, two_sites: Sites, start_agent, tmp_path: Path) -> None:
    session.create("User", {"username": "lars", "email": "Lars@Edit.com",
                            "password": "lars-secret-1", "roles": ["organization admin"]})
    lars = Session(hub.url, username="lars", password="lars-secret-1")
    desktop = start_agent(hub, lars.create("Node", {"name": "lars-laptop"})["api_key"], lanes=1)
    laptop = wait_for(lambda: desktop.status()["client_id"], what="lars's agent")
    downloads = tmp_path / "lars" / "Downloads"
    downloads.mkdir(parents=True)
    session.create("Share", {"name": "lars_downloads", "client": laptop, "path": str(downloads)})
    wait_for(lambda: desktop.status()["transfer"]["shares"] == ["lars_downloads"], what="share")
    edit = random.randbytes(3 * 1024 * 1024 + 5)
    (two_sites.projects / "thefilm").mkdir()
    (two_sites.projects / "thefilm" / "latest_edit.mov").write_bytes(edit)

    # jobs.rst, verbatim: a file from a share, to a user, paused
    job = session.create("Job", {"source": "share=projects/thefilm/latest_edit.mov",
                                 "destination": "lars@edit.com", "status": "paused"})
    assert job["status"] == "pending" and job["destination_path"] is None
    assert job["destination"].startswith("user:") and job["destination_hr"] == "user:lars"
    assert [t["status"] for t in tasks_of(session, job["id"])] == ["pending"]
    assert session.find_one('Job where destination="lars@edit.com"')["id"] == job["id"]

    # only a share of the receiving user's own agents will do
    refused(lambda: lars.update("Job", job["id"], {"destination_path": "share=backup/x/"}),
            422, "not served by an agent of the receiving user")
    refused(lambda: lars.update("Job", job["id"], {"destination_path": "share=lars_down"
                                                   "loads/../x"}), 422, "'..' would leave")
    refused(lambda: lars.update("Job", job["id"], {"destination_path": 7}), 422, "share path")
    assert session.get("Job", job["id"])["status"] == "pending"

    # the path is set: it was created paused, so it is paused now, and runs once let go
    set_ = lars.update("Job", job["id"], {"destination_path": "share=lars_downloads/edits/"})
    assert set_["status"] == "paused"
    assert set_["destination_path"] == "share=lars_downloads/edits/"
    (task,) = tasks_of(session, job["id"])
    assert task["status"] == "queued"
    assert task["destination"] == {"path": "edits/latest_edit.mov"}
    refused(lambda: lars.update("Job", job["id"], {"destination_path": "share=lars_downloads/"}),
            409, "only while it is pending")
    session.update("Job", job["id"], {"status": "waiting"})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="download")
    assert done["status"] == "done", tasks_of(session, job["id"])
    assert (downloads / "edits" / "latest_edit.mov").read_bytes() == edit

    # resend: pending again with no path; every task runs again where it is set anew
    again = session.update("Job", job["id"], {"status": "pending"})
    assert again["status"] == "pending" and again["destination_path"] is None
    assert [t["status"] for t in tasks_of(session, job["id"])] == ["pending"]
    lars.update("Job", job["id"], {"destination_path": "share=lars_downloads/again/take2.mov"})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="resent download")
    assert done["status"] == "done"
    assert (downloads / "again" / "take2.mov").read_bytes() == edit


def test_a_package_to_a_site_lands_on_a_share_at_that_site(
        hub: Hub, session: Session, two_sites: Sites, node_key, start_agent,
        tmp_path: Path) -> None:
    session.create("Site", {"name": "stockholm"})
    remote = start_agent(hub, node_key("sthlm-files")["api_key"], lanes=1, site="stockholm")
    client = wait_for(lambda: remote.status()["client_id"], what="stockholm agent")
    landing = tmp_path / "sthlm"
    landing.mkdir()
    session.create("Share", {"name": "sthlm", "client": client, "path": str(landing)})
    wait_for(lambda: remote.status()["transfer"]["shares"] == ["sthlm"], what="share")
    for n in range(5):
        (two_sites.projects / "plates" / f"p{n}.dpx").parent.mkdir(exist_ok=True)
        (two_sites.projects / "plates" / f"p{n}.dpx").write_bytes(random.randbytes(1000 + n))

    job = session.create("Job", {"source": "share=projects/plates/", "destination": "stockholm"})
    assert job["status"] == "pending" and job["destination_hr"] == "site:stockholm"
    assert session.find_one('Job where destination="stockholm"')["id"] == job["id"]
    refused(lambda: session.update("Job", job["id"], {"destination_path": "share=backup/"}),
            422, "not served by an agent at the receiving site")
    refused(lambda: session.update("Job", job["id"], {"destination_path": "share=nope/"}),
            422, "no share named 'nope'")
    session.update("Job", job["id"], {"destination_path": "share=sthlm/incoming/"})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="site job")
    assert done["status"] == "done", tasks_of(session, job["id"])
    assert digest_tree(landing / "incoming" / "plates") == digest_tree(two_sites.projects /
                                                                        "plates")


def test_tasks_added_mirror_the_job_or_name_their_destination(
        hub: Hub, session: Session, two_sites: Sites) -> None:
    projects, backup = two_sites.projects, two_sites.backup
    files = {}
    for rel in ("film/reel1/a.mov", "film/reel1/b.mov", "film/reel2/c.mov", "ref/show.mov"):
        (projects / rel).parent.mkdir(parents=True, exist_ok=True)
        files[rel] = random.randbytes(4096 + len(files))
        (projects / rel).write_bytes(files[rel])
    job = session.create("Job", {"source": "share=projects/film/reel1/a.mov",
                                 "destination": "share=backup/daily/"})
    wait_for(lambda: ended(session, job["id"]), timeout=60, what="first file")
    before = len(db_rows(hub.database)["tasks"])

    # mirrored: what is below the job's source folder keeps its place below the landing;
    # an absolute path below the share's folder names the same file (jobs.rst)
    added = session.create("task", {"tasks": [
        "share=projects/film/reel1/b.mov", str(projects / "film" / "reel2" / "c.mov"),
        {"source": "share=projects/ref/show.mov",
         "destination": "share=backup/ref/showreel_tmp.mov"}]}, job["id"])
    assert added["success"] is True and len(added["created"]) == 3
    landed = {t["item"]: t["destination"]["path"] for t in tasks_of(session, job["id"])}
    assert landed == {"film/reel1/a.mov": "daily/a.mov", "film/reel1/b.mov": "daily/b.mov",
                      "film/reel2/c.mov": "daily/c.mov", "ref/show.mov": "ref/showreel_tmp.mov"}
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="added files")
    assert done["status"] == "done", tasks_of(session, job["id"])
    assert (backup / "daily" / "b.mov").read_bytes() == files["film/reel1/b.mov"]
    assert (backup / "daily" / "c.mov").read_bytes() == files["film/reel2/c.mov"]
    assert (backup / "ref" / "showreel_tmp.mov").read_bytes() == files["ref/show.mov"]

    # the same source and destination again: not added, the existing task runs again
    (backup / "daily" / "b.mov").unlink()
    again = session.create("task", {"tasks": ["share=projects/film/reel1/b.mov"]}, job["id"])
    assert again["created"] == [] and len(again["retried"]) == 1
    wait_for(lambda: ended(session, job["id"]), timeout=60, what="retried file")
    assert (backup / "daily" / "b.mov").read_bytes() == files["film/reel1/b.mov"]
    # the same source to another destination is another task
    other = session.create("task", {"tasks": [{"source": "share=projects/film/reel1/b.mov",
                                               "destination": "share=backup/other/"}]},
                           job["id"])
    assert len(other["created"]) == 1
    wait_for(lambda: ended(session, job["id"]), timeout=60, what="copy elsewhere")
    assert (backup / "other" / "b.mov").read_bytes() == files["film/reel1/b.mov"]
    count = len(db_rows(hub.database)["tasks"])
    assert count == before + 4

    # refused, and nothing added
    dup = refused(lambda: session.create("task", {"tasks": ["share=projects/film/reel1/b.mov"]},
                                         job["id"], allow_duplicates=False), 409, "already a task")
    assert dup.details["field"] == "tasks"
    for tasks, needle in (
        (["share=backup/daily/a.mov"], "the job's files come from share 'projects'"),
        (["share=projects/../etc/passwd"], "'..' would leave the share"),
        (["/etc/passwd"], "nor below its folder"),
        ([{"source": "share=projects/ref/show.mov", "destination": "share=projects/x.mov"}],
         "land on share 'backup'"),
        ([{"source": "share=projects/ref/show.mov", "colour": "red"}], "a transfer task is"),
        ([17], "a source is a non-empty string"),
        (["share=projects/ref/show.mov", "share=projects/ref/show.mov"], "listed twice"),
    ):
        refused(lambda tasks=tasks: session.create("task", {"tasks": tasks}, job["id"]),  # type: ignore[misc]
                422, needle)
    assert len(db_rows(hub.database)["tasks"]) == count


def test_pending_and_destination_path_refuse_what_does_not_fit(
        hub: Hub, session: Session, two_sites: Sites) -> None:
    (two_sites.projects / "a.mov").write_bytes(b"x" * 100)
    job = session.create("Job", {"source": "share=projects/a.mov",
                                 "destination": "share=backup/"})
    wait_for(lambda: ended(session, job["id"]), timeout=60, what="job")
    refused(lambda: session.update("Job", job["id"], {"destination_path": "share=backup/b/"}),
            409, "only while it is pending")
    compute = session.create("Job", {"compute": {"command": ["true"], "items": "1"},
                                     "status": "paused"})
    refused(lambda: session.update("Job", compute["id"], {"status": "pending"}), 422,
            "compute jobs have no destination")
    refused(lambda: session.update("Job", compute["id"], {"destination_path": "share=backup/"}),
            422, "belongs to transfer jobs")
    # a share job resent takes a new path; written paused while pending, it stays pending
    session.update("Job", job["id"], {"status": "pending"})
    held = session.update("Job", job["id"], {"status": "paused"})
    assert held["status"] == "pending"
    resumed = session.update("Job", job["id"], {"destination_path": "share=backup/second/"})
    assert resumed["status"] == "paused" and resumed["destination_hr"] == "share:backup"
    session.update("Job", job["id"], {"status": "waiting"})
    wait_for(lambda: ended(session, job["id"]), timeout=60, what="resent job")
    assert (two_sites.backup / "second" / "a.mov").read_bytes() == b"x" * 100


def test_a_job_with_no_path_never_runs_and_a_resend_keeps_each_files_place(
        hub: Hub, session: Session, two_sites: Sites) -> None:
    projects, backup = two_sites.projects, two_sites.backup
    for rel in ("shot/a/one.dpx", "shot/b/two.dpx", "ref/show.mov"):
        (projects / rel).parent.mkdir(parents=True, exist_ok=True)
        (projects / rel).write_bytes(random.randbytes(3000))
    job = session.create("Job", {"source": "share=projects/shot",
                                 "destination": "share=backup/first/"})
    wait_for(lambda: ended(session, job["id"]), timeout=60, what="first copy")
    session.create("task", {"tasks": [{"source": "share=projects/ref/show.mov",
                                       "destination": "share=backup/refs/show_v1.mov"}]},
                   job["id"])
    wait_for(lambda: ended(session, job["id"]), timeout=60, what="the added file")
    assert (backup / "first" / "shot" / "b" / "two.dpx").exists()
    before = {t["item"]: t["destination"]["path"] for t in tasks_of(session, job["id"])}

    # resent: no path, so nothing may run, whatever is written to the job or its tasks
    session.update("Job", job["id"], {"status": "pending"})
    one = tasks_of(session, job["id"])[1]
    session.update_many("task", job["id"], [{"id": one["id"], "status": "failed"}])
    session.update_many("task", job["id"], [{"id": one["id"], "status": "queued"}])
    assert session.get("Task", one["id"])["status"] == "pending"
    assert session.update("Job", job["id"], {"status": "waiting"})["status"] == "pending"
    time.sleep(1.5)  # claims come and go: none may take a task of a job with no path
    assert {t["status"] for t in tasks_of(session, job["id"])} == {"pending"}

    # a new path: every task keeps its place relative to the job's landing (the folder is
    # one task, its files below it); a file with its own destination keeps it
    session.update("Job", job["id"], {"destination_path": "share=backup/second/"})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="resent job")
    assert done["status"] == "done", tasks_of(session, job["id"])
    after = {t["item"]: t["destination"]["path"] for t in tasks_of(session, job["id"])}
    assert len(after) == len(before) == len(tasks_of(session, job["id"])) == 2
    assert after["shot"] == "second/shot"
    assert after["ref/show.mov"] == "refs/show_v1.mov" == before["ref/show.mov"]
    for rel in ("shot/a/one.dpx", "shot/b/two.dpx"):
        assert (backup / "second" / rel).read_bytes() == (projects / rel).read_bytes()
