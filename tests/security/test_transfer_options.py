"""A transfer job's speed limit and frame sequence as attack surfaces (issue 19).

Another organization's users, of every default role, cannot change A's job's speed
limit: they get the answer any write to a job out of their reach gets (403 naming the
missing rule, as docs/PERMISSIONS.md says of records written by id: the new field tells
them nothing a priority write would not). A's viewer is refused naming the rule. A
sequence pattern cannot leave its share (``..``, absolute paths, a drive letter):
refused naming the source, and no job is made. The ticket a sequence's task gets covers
its one folder, read only, on its one share. Afterwards A's job is as it was.
"""

from __future__ import annotations

import base64
import json

from hub import permissions
from tests.helpers import Hub, db_query
from tests.security.world import World, unique


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def test_speed_limits_and_sequences_stay_in_their_organization_and_share(hub: Hub) -> None:
    world = World(hub)
    source_agent = world.agent("A", transfer_url="https://127.0.0.1:9")
    dest_agent = world.agent("A", transfer_url="https://127.0.0.1:9")
    src, dst = unique("plates"), unique("backup")
    world.ok("POST", "/share", {"name": src, "client": source_agent.id, "path": "/srv/plates"})
    world.ok("POST", "/share", {"name": dst, "client": dest_agent.id, "path": "/srv/backup"})
    a_admin = world.user("A", permissions.ORG_ADMIN)["token"]
    job = world.ok("POST", "/job", {"source": f"share={src}/shot010/shot010_####.exr",
                                    "frames": "1001-1100", "destination": f"share={dst}/in/",
                                    "speed_limit": "50MB/s", "status": "paused"}, a_admin)
    assert job["speed_limit"] == 50_000_000
    before = world.ok("GET", f"/job/{job['id']}")

    made_up = "f" * 24
    for org in ("B", "C"):
        for role in (permissions.ORG_ADMIN, permissions.RESEARCHER, permissions.VIEWER):
            token = world.user(org, role)["token"]
            other = world.call("PATCH", f"/job/{job['id']}", {"priority": 1}, token)
            none = world.call("PATCH", f"/job/{made_up}", {"speed_limit": "1KB/s"}, token)
            # as a job that does not exist: 404, or 403 to a role that may edit no job
            assert other[0] in (403, 404) and other[0] == none[0], (other, none)
            assert other[1]["error"]["message"].replace(job["id"], made_up) == \
                none[1]["error"]["message"]
            for body in ({"speed_limit": "1KB/s"}, {"speed_limit": None}):
                theirs = world.call("PATCH", f"/job/{job['id']}", body, token)
                assert theirs == other, (org, role, theirs)
    viewer = world.user("A", permissions.VIEWER)["token"]
    status, answer = world.call("PATCH", f"/job/{job['id']}", {"speed_limit": "1KB/s"}, viewer)
    assert status == 403 and "missing rule" in answer["error"]["message"], answer
    assert world.ok("GET", f"/job/{job['id']}") == before

    jobs = count(hub, "jobs")
    for source in (f"share={src}/../etc/shot_####.exr", f"share={src}/shot/../../x_%04d.exr",
                   f"share={src}//etc/shot_####.exr", "share=/etc/shot_####.exr",
                   f"share={src}/C:/shot_####.exr"):
        status, answer = world.call("POST", "/job", {"source": source, "frames": "1-2",
                                                     "destination": f"share={dst}/"}, a_admin)
        assert status == 422, (source, answer)
        assert answer["error"]["field"] == "source", (source, answer)
    assert count(hub, "jobs") == jobs

    # the sequence's ticket: its folder and what is below it, to read, on its share only
    world.ok("PATCH", f"/job/{job['id']}", {"status": "waiting"})
    (bucket,) = dest_agent.claim(lanes=0, slots=1)
    work = bucket["tasks"][0]["transfer"]
    assert (work["path"], work["sequence"], work["frames"]) == \
        ("shot010", "shot010_####.exr", "1001-1100")
    assert work["speed_limit"] == 50_000_000
    payload = work["ticket"].split(".")[0]
    scope = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (scope["path"], scope["op"], scope["server"]) == ("shot010", "read", source_agent.id)
