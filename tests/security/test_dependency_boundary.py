"""A job may wait only for jobs its creator can see (issue 18's dependencies).

B's and C's users name A's own job in ``after`` and ``after_items``: the answer is the one
for a job that does not exist, word for word (``422 unknown_job``), so it tells them
nothing of the job, not even that it exists; nothing is created, and A's job is as it
was. A job of A's in the collaboration AB may be waited for by B's (its members see it),
never by C's, nor by B's users who see their own organization's jobs only. A record shows
the status of a job waited for only to who can see that job: B's researcher, and B's admin
once B leaves the collaboration, see the job it waits for named, with no status.
A viewer starts no job, dependencies or not.
"""

from __future__ import annotations

from typing import Any

from hub import permissions
from tests.helpers import Hub, db_query
from tests.security.world import World

NOWHERE = "0123456789abcdef01234567"


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def submit(world: World, token: str, **extra: Any) -> tuple[int, Any]:
    return world.call("POST", "/job", {"compute": {"command": ["true"], "items": "1"},
                                       **extra}, token)


def test_another_organizations_job_is_answered_as_one_that_does_not_exist(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    private = world.compute_job(ann)
    shared = world.compute_job(ann, collaboration=world.collab["id"])
    before = {j: world.ok("GET", f"/job/{j}") for j in (private["id"], shared["id"])}
    # jobs not deleted: the own jobs made and deleted below stay, inactive
    jobs, deps = count(hub, "jobs WHERE deleted IS NULL"), count(hub, "job_dependencies")

    for org, role in (("B", permissions.ORG_ADMIN), ("B", permissions.RESEARCHER),
                      ("C", permissions.ORG_ADMIN), ("C", permissions.RESEARCHER)):
        token = world.user(org, role)["token"]
        # B's admin sees the jobs of the collaboration AB; B's researcher only its own
        # organization's
        hidden = [private["id"]] if (org, role) == ("B", permissions.ORG_ADMIN) \
            else [private["id"], shared["id"]]
        for job_id in hidden:
            for field, extra, nowhere in (
                    ("after[0]", {"after": [job_id]}, {"after": [NOWHERE]}),
                    ("after_items", {"after_items": job_id}, {"after_items": NOWHERE}),
                    ("after[0]", {"after": [job_id], "after_failed": "wait"},
                     {"after": [NOWHERE], "after_failed": "wait"})):
                theirs, none = submit(world, token, **extra), submit(world, token, **nowhere)
                assert theirs[0] == none[0] == 422, (theirs, none)
                assert theirs[1]["error"]["field"] == none[1]["error"]["field"] == field
                assert theirs[1]["error"]["code"] == "unknown_job"
                assert theirs[1]["error"]["message"].replace(job_id, NOWHERE) == \
                    none[1]["error"]["message"]
            # a job it can see, beside: still refused, for the hidden one
            own = world.compute_job(token)
            status, answer = submit(world, token, after=[own["id"], job_id])
            assert (status, answer["error"]["field"]) == (422, "after[1]"), answer
            world.ok("DELETE", f"/job/{own['id']}", token=token)
    for job_id, record in before.items():
        assert world.ok("GET", f"/job/{job_id}") == record
    assert (count(hub, "jobs WHERE deleted IS NULL"), count(hub, "job_dependencies")) == \
        (jobs, deps)


def test_a_partners_shared_job_may_be_waited_for_and_its_status_stays_in_sight(
        hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    bob = world.user("B", permissions.ORG_ADMIN)["token"]
    shared = world.compute_job(ann, collaboration=world.collab["id"])
    waits = world.compute_job(bob, after=[shared["id"]])
    assert world.ok("GET", f"/job/{waits['id']}", token=bob)["after_status"] == \
        {shared["id"]: "waiting"}
    # B's researcher sees B's job, not A's: the job waited for, with no status
    shown = world.ok("GET", f"/job/{waits['id']}",
                     token=world.user("B", permissions.RESEARCHER)["token"])
    assert (shown["after"], shown["after_status"]) == ([shared["id"]], {shared["id"]: None})

    # B leaves the collaboration: its job still waits, but no longer shows A's status
    world.ok("PATCH", f"/collaboration/{world.collab['id']}",
             {"organizations": [world.org["A"]["id"]]})
    status, answer = world.call("GET", f"/job/{shared['id']}", token=bob)
    assert status == 404, answer  # another organization's job, out of sight: as none
    shown = world.ok("GET", f"/job/{waits['id']}", token=bob)
    assert (shown["after"], shown["after_status"]) == ([shared["id"]], {shared["id"]: None})
    assert world.ok("GET", f"/job/{waits['id']}")["after_status"] == \
        {shared["id"]: "waiting"}  # root sees every job


def test_a_viewer_starts_no_job_that_waits(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    viewer = world.user("A", permissions.VIEWER)["token"]
    job = world.compute_job(ann)
    # jobs not deleted: the own jobs made and deleted below stay, inactive
    jobs, deps = count(hub, "jobs WHERE deleted IS NULL"), count(hub, "job_dependencies")
    status, answer = submit(world, viewer, after=[job["id"]])
    assert status == 403, answer
    status, answer = submit(world, viewer, after_items=job["id"])
    assert status == 403, answer
    assert (count(hub, "jobs WHERE deleted IS NULL"), count(hub, "job_dependencies")) == \
        (jobs, deps)
