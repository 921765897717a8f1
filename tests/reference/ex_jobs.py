"""The examples of jobs.rst (docs/REFERENCE.md says what each shows)."""

from __future__ import annotations

import textwrap

import pytest

from core.errors import ApiError
from tests.helpers import wait_for
from tests.reference.conftest import Ref
from tests.reference.examples import example, run

JOB_FIELDS = {"id", "code", "uri", "status", "created", "source", "source_hr", "destination",
              "destination_hr", "etr", "metadata", "parent", "parent_hr", "progress", "size",
              "speed", "user", "user_hr", "finished", "modified", "modifier"}


@example("jobs: query")
def jobs_query(ref: Ref) -> None:
    job = ref.paused_job()
    names = run("""
        jobs = session.find('Job')
    """, {"session": ref.session})
    [found] = [j for j in names["jobs"] if j["id"] == job["id"]]
    assert set(found) >= JOB_FIELDS
    assert found["status"] == "paused" and 0 <= found["progress"] <= 100
    assert found["user_hr"] == "user:root(root)"


@example("jobs: job queries by code")
def jobs_by_code(ref: Ref) -> None:
    made = ref.paused_job(code="x and y.png")
    names = run("""
        job = session.find_one('Job where code="x and y.png"')
        print(session.str(job))
    """, {"session": ref.session})
    assert names["job"]["id"] == made["id"]
    assert ref.session.find_one('Job where code="no such job"') is None  # the note


@example("jobs: jobs by user")
def jobs_by_user(ref: Ref) -> None:
    if ref.session.find_one("User where username=user@mail.com") is None:
        ref.session.create("User", {"username": "user@mail.com", "password": "a long password",
                                    "roles": ["researcher"], "organization": "root"})
    from hub import Session

    theirs = Session(ref.hub.url, username="user@mail.com", password="a long password")
    made = theirs.create("Job", {"compute": {"command": ["true"], "items": "1"},
                                 "status": "paused"})
    names = run("""
        session.find_one('Job where user=user@mail.com')
    """, {"session": ref.session})
    assert names["session"].find_one("Job where user=user@mail.com")["id"] == made["id"]


@example("jobs: jobs by destination")
def jobs_by_destination(ref: Ref) -> None:
    if ref.session.find_one("Site where name=stockholm") is None:
        ref.session.create("Site", {"name": "stockholm"})
    made = ref.session.create("Job", {"source": "share=projects/thefilm/latest_edit.mov",
                                      "destination": "stockholm", "status": "paused"})
    made = made[0] if isinstance(made, list) else made
    run("""
        session.find_one('Job where destination="stockholm"')
    """, {"session": ref.session})
    found = ref.session.find_one('Job where destination="stockholm"')
    assert found is not None and found["id"] == made["id"]
    assert found["destination_hr"] == "site:stockholm"


@example("jobs: list all downloads (source=hq)")
def jobs_downloads(ref: Ref) -> None:
    made = ref.transfer()
    names = run("""
        session.find_one('Job where source=hq')
    """, {"session": ref.session})
    assert names["session"].find_one("Job where source=hq") is not None
    assert made["id"] in {j["id"] for j in ref.session.find("Job where source=hq")}


@example("jobs: inactive jobs (finished=True)")
def jobs_inactive(ref: Ref) -> None:
    job = ref.paused_job()
    ref.session.update("job", job["id"], {"status": "aborted"})
    # gone from the active jobs after job_inactive_after (1 s here, an hour by default)
    wait_for(lambda: job["id"] not in {j["id"] for j in ref.session.find(
        "Job where status=aborted")}, what="the aborted job inactive")
    names = run("""
        session.find('Job where status=aborted', finished=True)
    """, {"session": ref.session})
    assert job["id"] in {j["id"] for j in names["session"].find(
        "Job where status=aborted", finished=True)}


@example("jobs: archived jobs (archived=True)")
def jobs_archived(ref: Ref) -> None:
    job = ref.paused_job()
    ref.session.update("job", job["id"], {"status": "done"})
    # archived after job_archive_after (2.5 s here, 14 days by default)
    wait_for(lambda: job["id"] in {j["id"] for j in ref.session.find(
        "Job where status=done", archived=True)}, what="the done job archived")
    names = run("""
        session.find('Job where status=done', archived=True)
    """, {"session": ref.session})
    assert job["id"] in {j["id"] for j in names["session"].find("Job where status=done",
                                                                archived=True)}
    assert job["id"] not in {j["id"] for j in ref.session.find("Job where status=done",
                                                               finished=True)}


@example("jobs: create a transfer job")
def jobs_create(ref: Ref) -> None:
    ref.transfer()  # the user lars@edit.com
    names = run("""
        job = session.create("Job",{
            "source":"share=projects/thefilm/latest_edit.mov",
            "destination":"lars@edit.com",
            "status":"paused"
        })
    """, {"session": ref.session})
    job = names["job"]
    # Ferry answers the one job made, as a query answers each job (not a list of one)
    assert isinstance(job, dict) and set(job) >= JOB_FIELDS
    # sent to a user: pending until lars chooses where it lands (jobs.rst's "pending";
    # docs/TRANSFERS.md), then paused as asked
    assert (job["code"], job["status"], job["destination_hr"]) == (
        "latest_edit.mov", "pending", "user:lars@edit.com")


@example("jobs: modify (pause, resume, abort, resend)")
def jobs_modify(ref: Ref) -> None:
    job = ref.paused_job(compute={"command": ["sleep", "30"], "items": "1"})
    printed = """
        session.update('job', '614d660de50d45bb027c9bdd', {'status':"paused"})
        session.update('job', '614d660de50d45bb027c9bdd', {'status':"waiting"})
        session.update('job', '614d660de50d45bb027c9bdd', {'status':"aborted"})
    """
    seen = []
    for line in textwrap.dedent(printed).strip().splitlines():
        run(line, {"session": ref.session}, **{"614d660de50d45bb027c9bdd": job["id"]})
        seen.append(ref.session.get("Job", job["id"])["status"])
    assert seen[0] == "paused" and seen[1] in ("waiting", "running") and seen[2] == "aborted"
    resend = ref.transfer()
    run("""
        session.update('job', '614d660de50d45bb027c9bdd', {'status':"pending"})
    """, {"session": ref.session}, **{"614d660de50d45bb027c9bdd": resend["id"]})
    assert ref.session.get("Job", resend["id"])["status"] == "pending"


@example("jobs: update_many to exclude a task")
def jobs_exclude(ref: Ref) -> None:
    job = ref.paused_job()
    task = ref.session.find(f"task WHERE job.id={job['id']}")[0]
    # printed on one line of 120 characters
    run("session.update_many('task', '614d660de50d45bb027c9bdd', [{'id':'b8401ce0-9c6c-"
        "4c32-98c6-61d18db01f07', 'status':'excluded'}])", {"session": ref.session},
        **{"614d660de50d45bb027c9bdd": job["id"],
           "b8401ce0-9c6c-4c32-98c6-61d18db01f07": task["id"]})
    assert ref.session.get("Task", task["id"])["status"] == "excluded"


@example("jobs: delete")
def jobs_delete(ref: Ref) -> None:
    job = ref.paused_job()
    run("""
        session.delete_one('job', '614d660de50d45bb027c9bdd')
    """, {"session": ref.session}, **{"614d660de50d45bb027c9bdd": job["id"]})
    assert ref.session.find_one(f"Job where id={job['id']}", finished=True) is None


@example("jobs: job statuses (which are writeable)")
def jobs_statuses(ref: Ref) -> None:
    job = ref.paused_job()
    for status in ("init", "running", "failed"):  # set by the hub only
        with pytest.raises(ApiError) as refused:
            ref.session.update("job", job["id"], {"status": status})
        assert refused.value.status == 422 and "cannot be written" in refused.value.message
    for status in ("waiting", "paused"):  # YES in the table (pending: transfers, above)
        ref.session.update("job", job["id"], {"status": status})
    assert ref.session.get("Job", job["id"])["status"] == "paused"


@example("jobs: task statuses (which are writeable)")
def jobs_task_statuses(ref: Ref) -> None:
    job = ref.paused_job()
    task = ref.session.find(f"task WHERE job.id={job['id']}")[0]
    for status in ("pending", "booting", "executing"):  # set by the hub only
        with pytest.raises(ApiError) as refused:
            ref.session.update_many("task", job["id"], [{"id": task["id"], "status": status}])
        assert refused.value.status == 422
    for status in ("onhold", "queued", "excluded", "failed", "done"):
        ref.session.update_many("task", job["id"], [{"id": task["id"], "status": status}])
        assert ref.session.get("Task", task["id"])["status"] == status


TASK_FIELDS = {"id", "uri", "status", "created", "source", "destination", "priority", "size",
               "finished", "time"}


@example("jobs: query tasks")
def jobs_query_tasks(ref: Ref) -> None:
    job = ref.paused_job()
    names = run("""
        session.find('task WHERE job.id=5a7325f8b7ef72f5f9d74bf4')
        session.find('task WHERE job.id=5a7325f8b7ef72f5f9d74bf4 AND status<>executing')
    """, {"session": ref.session}, **{"5a7325f8b7ef72f5f9d74bf4": job["id"]})
    tasks = names["session"].find(f"task WHERE job.id={job['id']}")
    assert [t["uri"] for t in tasks] == ["0", "1"]  # "0", "1", … as strings
    assert all(set(t) >= TASK_FIELDS and t["status"] == "queued" for t in tasks)
    assert len(ref.session.find(f"task WHERE job.id={job['id']} AND status<>executing")) == 2


@example("jobs: create tasks (mirrored paths)")
def jobs_create_tasks(ref: Ref) -> None:
    job = ref.transfer()
    (ref.projects / "_REF").mkdir(exist_ok=True)
    (ref.projects / "_REF" / "creatures_showreel_2018.mov").write_bytes(b"reel")
    # as printed it has one ')' too many: a SyntaxError in any Python
    printed = """
        session.create("task", {"tasks":["/Volumes/projects/creatures_showreel_2018.mov"]}, job["id"]))
    """
    with pytest.raises(SyntaxError):
        compile(textwrap.dedent(printed), "<example>", "exec")
    # a path on the user's own drive is the desktop app's; Ferry's tasks name share paths
    names = run(printed, {"session": ref.session, "job": job}, **{
        '["id"]))': '["id"])',
        "/Volumes/projects/creatures_showreel_2018.mov":
            "share=projects/_REF/creatures_showreel_2018.mov"})
    del names
    assert len(ref.session.find(f"task WHERE job.id={job['id']}")) == 2


@example("jobs: create tasks with a new destination path")
def jobs_create_tasks_destination(ref: Ref) -> None:
    (ref.projects / "_REF").mkdir(exist_ok=True)
    (ref.projects / "_REF" / "creatures_showreel_2018.mov").write_bytes(b"reel")
    job = ref.session.create("Job", {"source": "share=projects/thefilm/latest_edit.mov",
                                     "destination": "share=projects/TMP/latest_edit.mov",
                                     "status": "paused"})
    job = job[0] if isinstance(job, list) else job
    run("""
        session.create("task", {
            "tasks":[
                {
                    "source":"share=projects/_REF/creatures_showreel_2018.mov",
                    "destination":"share=projects/TMP/creatures_showreel_2018_tmp.mov"
                }
            ]
        }, job["id"])
    """, {"session": ref.session, "job": job})
    tasks = ref.session.find(f"task WHERE job.id={job['id']}")
    assert "TMP/creatures_showreel_2018_tmp.mov" in {(t["destination"] or {}).get("path")
                                                     for t in tasks}
    with pytest.raises(ApiError):  # the note: the same source and destination again fails
        ref.session.create("task", {"tasks": [{
            "source": "share=projects/_REF/creatures_showreel_2018.mov",
            "destination": "share=projects/TMP/creatures_showreel_2018_tmp.mov"}]},
            job["id"], allow_duplicates=False)


@example("jobs: modifying tasks")
def jobs_modify_tasks(ref: Ref) -> None:
    made = ref.paused_job(code="my_transfer")
    task = ref.session.find(f"task WHERE job.id={made['id']}")[0]
    names = run("""
        job = session.find('job WHERE code="my_transfer"')

        updated_job = session.update_many("task", [{

            "id":"cc5f2afa-9ae4-46e0-9273-82ac802b20ff",

            "status":"onhold"

        }], entityid=job["id"])
    """, {"session": ref.session}, **{
        "cc5f2afa-9ae4-46e0-9273-82ac802b20ff": task["id"],
        # find answers a list; the example then reads one job's id from it
        "job = session.find('job": "job = session.find_one('job"})
    assert [t["status"] for t in names["updated_job"]] == ["onhold"]
    with pytest.raises(ApiError) as refused:  # only status, priority or metadata
        ref.session.update_many("task", made["id"], [{"id": task["id"], "size": 1}])
    assert refused.value.status == 422


@example("jobs: delete task")
def jobs_delete_task(ref: Ref) -> None:
    job = ref.paused_job()
    task = ref.session.find(f"task WHERE job.id={job['id']}")[0]
    with pytest.raises(ApiError) as refused:
        ref.session.delete_one("task", task["id"])
    assert "excluded" in refused.value.message
