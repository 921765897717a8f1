"""What the hub leases for a transfer: a bucket is one task, a file or a whole folder, with
one ticket for that task's path and what is below it, at the agent the runner calls. A
real hub; the agents' side is played over raw HTTP, so every lease can be looked at."""

from __future__ import annotations

import uuid
from typing import Any

from hub import Session
from protocol import tickets
from tests.helpers import Hub, http


def enroll(hub: Hub, session: Session, name: str) -> dict[str, Any]:
    """An agent enrolled by hand, saying it serves transfers (nobody answers there)."""
    status, enrolled = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": session.create("Node", {"name": name})["api_key"],
        "machine_id": uuid.uuid4().hex, "code": name,
        "transfer": {"url": f"https://{name}.example.org:7443"}})
    assert status == 200, enrolled
    return dict(enrolled)


def claim(hub: Hub, agent: dict[str, Any]) -> list[dict[str, Any]]:
    status, answer = http("POST", f"{hub.api}/agent/claim",
                          {"lanes": [], "slots": 8, "wait": 0},
                          headers={"Authorization": f"Bearer {agent['token']}"})
    assert status == 200, answer
    return list(answer["buckets"])


def test_a_bucket_is_one_task_with_a_ticket_for_its_path(hub: Hub, session: Session) -> None:
    source, dest = enroll(hub, session, "srcs"), enroll(hub, session, "dsts")
    projects = session.create("Share", {"name": "projects", "client": source["client_id"],
                                        "path": "/srv/projects"})
    backup = session.create("Share", {"name": "backup", "client": dest["client_id"],
                                      "path": "/srv/backup"})
    pulled = session.create("Job", {"source": "share=projects/plates",
                                    "destination": "share=backup/in/"})
    session.create("task", {"tasks": ["share=projects/plates/reel1/p0001.dpx",
                                      "share=projects/ref/a.mov"]}, pulled["id"])

    # pulled by the destination's agent: each task alone, read at the source's agent
    buckets = claim(hub, dest)
    assert [len(b["tasks"]) for b in buckets] == [1, 1, 1], buckets
    key = tickets.public_key(dest["ticket_key"])
    seen = {}
    for bucket in buckets:
        (task,) = bucket["tasks"]
        work = task["transfer"]
        scope = tickets.read(key, work["ticket"])
        assert (scope.server, scope.share, scope.op, scope.job, scope.task, scope.tree) == \
            (source["client_id"], projects["id"], "read", pulled["id"], task["id"], True)
        assert scope.path == work["path"] == task["item"]
        assert work["url"] == "https://srcs.example.org:7443"
        seen[scope.path] = work["dest_path"]
    assert seen == {"plates": "in/plates", "plates/reel1/p0001.dpx": "in/plates/reel1/p0001.dpx",
                    "ref/a.mov": "in/ref/a.mov"}

    # pushed by the source's agent: write at the destination's, for where the task lands
    pushed = session.create("Job", {"source": "share=projects/plates",
                                    "destination": "share=backup/pushed/", "direction": "push"})
    (bucket,) = claim(hub, source)
    (task,) = bucket["tasks"]
    scope = tickets.read(tickets.public_key(source["ticket_key"]), task["transfer"]["ticket"])
    assert (scope.server, scope.share, scope.path, scope.op, scope.job, scope.task,
            scope.tree) == (dest["client_id"], backup["id"], "pushed/plates", "write",
                            pushed["id"], task["id"], True)
