"""A folder's transfer task lists its files to the hub (``POST /agent/expand``): each
becomes a task, small files are leased together, and bad listings are refused. A real
hub; the agent's side is played over raw HTTP, so every answer can be looked at."""

from __future__ import annotations

from typing import Any

from hub import Session
from protocol import tickets
from tests.helpers import ROOT_PASSWORD, Hub, db_rows, http


def enroll(hub: Hub, session: Session, name: str) -> dict[str, Any]:
    status, enrolled = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": session.create("Node", {"name": name})["api_key"], "machine_id": name * 4,
        "code": name, "lanes": 1, "transfer": {"url": "https://127.0.0.1:9"}})
    assert status == 200, enrolled
    return dict(enrolled)


def test_a_folder_becomes_a_task_per_file(start_hub) -> None:
    hub = start_hub(lease_seconds=60)
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    source, dest = enroll(hub, session, "srcs"), enroll(hub, session, "dsts")
    session.create("Share", {"name": "projects", "client": source["client_id"],
                             "path": "/srv/projects"})
    session.create("Share", {"name": "backup", "client": dest["client_id"], "path": "/srv/b"})
    job = session.create("Job", {"source": "share=projects/plates",
                                 "destination": "share=backup/in/"})
    as_dest = {"Authorization": f"Bearer {dest['token']}"}

    def call(path: str, body: Any) -> tuple[int, Any]:
        return http("POST", f"{hub.api}{path}", body, headers=as_dest)

    status, claim = call("/agent/claim", {"lanes": [], "slots": 2, "wait": 0})
    assert status == 200 and len(claim["buckets"]) == 1, claim
    (bucket,) = claim["buckets"]
    (folder,) = bucket["tasks"]
    assert bucket["lane_id"] == "" and folder["transfer"]["dest_path"] == "in/plates"
    page = {"bucket_id": bucket["id"], "task_id": folder["id"]}

    # refused: nothing outside the folder, no traversal, no second folder task's files
    before = db_rows(hub.database)["tasks"]
    for files, needle in (
        ([{"path": "other/a.dpx", "size": 1}], "is not below the task's folder 'plates'"),
        ([{"path": "plates", "size": 1}], "is not below the task's folder"),
        ([{"path": "plates/../x", "size": 1}], "'..' would leave the share"),
        ([{"path": "plates/a.dpx", "size": -1}], ">= 0"),
    ):
        status, answer = call("/agent/expand", {**page, "files": files})
        assert status == 422, (files, answer)
        assert needle in answer["error"]["message"], answer
    assert db_rows(hub.database)["tasks"] == before

    files = [{"path": f"plates/reel{n % 3}/p{n:04}.dpx", "size": 200_000} for n in range(600)]
    files.append({"path": "plates/big.mov", "size": 50 << 20})
    status, answer = call("/agent/expand", {**page, "files": files[:300]})
    assert (status, answer) == (200, {"created": 300, "known": 0}), answer
    status, answer = call("/agent/expand", {**page, "files": files})  # a page sent again
    assert (status, answer) == (200, {"created": 301, "known": 300}), answer

    tasks = session.find(f"task WHERE job.id={job['id']}")
    assert len(tasks) == 602
    landing = {t["item"]: t["destination"]["path"] for t in tasks}
    assert landing["plates/reel1/p0001.dpx"] == "in/plates/reel1/p0001.dpx"
    assert session.get("Job", job["id"])["size"] == 600 * 200_000 + (50 << 20)

    # small files come many to a bucket (by bytes: 16 MiB), under one ticket; a big one
    # comes alone
    status, claim = call("/agent/claim", {"lanes": [], "slots": 12, "wait": 0})
    sizes = sorted(len(b["tasks"]) for b in claim["buckets"])
    assert status == 200 and sizes == [1, 19] + [83] * 7, sizes  # 83 x 200 kB < 16 MiB
    key = tickets.public_key(dest["ticket_key"])
    for b in claim["buckets"]:
        (ticket,) = {t["transfer"]["ticket"] for t in b["tasks"]}
        scope = tickets.read(key, ticket)
        # never more than the folder that was listed (the big file: just itself)
        assert scope.path in ("plates", "plates/big.mov") and scope.op == "read", scope
        assert scope.path == "plates/big.mov" or len(b["tasks"]) > 1

    # the files of one request are reported together: each task ends as its file did
    small = next(b for b in claim["buckets"] if len(b["tasks"]) == 83)
    first, second, third = (t["id"] for t in small["tasks"][:3])
    report = {"kind": "files", "key": "f1", "bucket_id": small["id"],
              "at": "2026-01-01T00:00:02Z", "started": "2026-01-01T00:00:01Z", "files": [
                  {"task_id": first, "size": 200_000, "hash": "ab" * 32},
                  {"task_id": second, "size": 200_000, "hash": "cd" * 32},
                  {"task_id": third, "message": "plates/x.dpx: destination disk full"}]}
    status, answer = call("/agent/report", {"items": [report]})
    assert status == 200 and answer["results"][0]["outcome"] == "applied", answer
    status, answer = call("/agent/report", {"items": [report]})  # sent again
    assert answer["results"][0]["outcome"] == "duplicate", answer
    ended = {t["id"]: t for t in session.find(f"task WHERE job.id={job['id']} AND "
                                             "status<>executing AND status<>booting AND "
                                             "status<>queued", attributes=["log_tail"])}
    assert ended[first]["status"] == ended[second]["status"] == "done"
    assert ended[first]["transferred"] == 200_000
    assert ended[first]["log_tail"] == f"200000 bytes, blake3 {'ab' * 32}\n"
    assert session.get("Task", third)["status"] == "queued"  # retried: retries is 2
    assert "destination disk full" in session.get("Task", third)["message"]
    status, answer = http("POST", f"{hub.api}/agent/report",
                          {"items": [{**report, "key": "f2"}]},
                          headers={"Authorization": f"Bearer {source['token']}"})
    assert answer["results"][0]["outcome"] == "refused", answer  # not its bucket

    # the folder's task ends; its lease is over, and so is its listing
    status, answer = call("/agent/report", {"items": [{
        "kind": "task", "key": "k1", "task_id": folder["id"], "bucket_id": bucket["id"],
        "event": "done", "at": "2026-01-01T00:00:00Z", "size": 0}, {
        "kind": "bucket", "key": "k2", "bucket_id": bucket["id"],
        "started": "2026-01-01T00:00:00Z", "ended": "2026-01-01T00:00:01Z"}]})
    assert status == 200, answer
    status, answer = call("/agent/expand", {**page, "files": files[:1]})
    assert status == 409 and answer["error"]["code"] == "lease_lost", answer
    # another agent cannot list into a task it does not hold
    status, answer = http("POST", f"{hub.api}/agent/expand", {**page, "files": files[:1]},
                          headers={"Authorization": f"Bearer {source['token']}"})
    assert status == 409, answer
