"""Transfer jobs end to end: a real hub and two real agents; the agent that serves the
destination share pulls from the one that serves the source, with the hub's tickets."""

from __future__ import annotations

import hashlib
import random
import time

import msgspec
import pytest

from agent.folder import BATCH_FILES, BATCHES
from hub import Session
from hub.session import ApiError
from protocol.transfer import FileHeader
from tests.conftest import Sites
from tests.helpers import Hub, db_rows, digest_tree, ended, wait_for
from transports.chunks import MiB


@pytest.fixture
def hub(start_hub) -> Hub:
    # heartbeats carry transfer progress: twice a second here, so that tests see it move
    return start_hub(heartbeat_interval=0.5, lease_seconds=10)


def test_a_file_and_a_folder_arrive_identical(session: Session, two_sites: Sites) -> None:
    projects, backup = two_sites.projects, two_sites.backup
    (projects / "thefilm").mkdir()
    edit = random.randbytes(20 * MiB + 11)
    (projects / "thefilm" / "latest_edit.mov").write_bytes(edit)
    for n in range(40):
        plate = projects / "plates" / f"reel{n % 4}" / f"plate.{n:04}.dpx"
        plate.parent.mkdir(parents=True, exist_ok=True)
        plate.write_bytes(random.randbytes(2000 + 37 * n))
    (projects / "plates" / "reel0" / "big.exr").write_bytes(random.randbytes(9 * MiB))

    # jobs.rst's call shape: created paused, then let go
    job = session.create("Job", {"source": "share=projects/thefilm/latest_edit.mov",
                                 "destination": "share=backup/incoming/", "status": "paused"})
    assert job["status"] == "paused" and job["kind"] == "transfer"
    assert (job["source_hr"], job["destination_hr"]) == ("share:projects", "share:backup")
    assert job["code"] == "latest_edit.mov"
    session.update("job", job["id"], {"status": "waiting"})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="file job")
    assert done["status"] == "done", session.find(f"task WHERE job.id={job['id']}")
    assert (backup / "incoming" / "latest_edit.mov").read_bytes() == edit
    task = session.find_one(f"task WHERE job.id={job['id']}", attributes=["*", "log_tail"])
    assert task["log_tail"].startswith(f"{len(edit)} bytes, blake3 ")

    folder = session.create("Job", {"source": "share=projects/plates",
                                    "destination": "share=backup/"})
    done = wait_for(lambda: ended(session, folder["id"]), timeout=60, what="folder job")
    assert done["status"] == "done", session.find(f"task WHERE job.id={folder['id']}")
    assert digest_tree(backup / "plates") == digest_tree(projects / "plates")
    assert not [p for p in backup.rglob(".*ferry*")], "no part files left"
    # the folder is one task (jobs.rst: "a task is a file/directory"): the hub hears of
    # it, not of each file; its size is every file's
    (task,) = session.find(f"task WHERE job.id={folder['id']}", attributes=["*", "log_tail"])
    size = sum(p.stat().st_size for p in (projects / "plates").rglob("*") if p.is_file())
    assert task["status"] == "done" and task["item"] == "plates"
    assert task["log_tail"].startswith(f"a folder of 41 files, {size} bytes"), task
    assert task["size"] == size

    # sent again (a retry, a resend): what is there already, by size and mtime, stays
    plate = backup / "plates" / "reel1" / "plate.0001.dpx"
    plate.unlink()
    again = session.create("Job", {"source": "share=projects/plates",
                                   "destination": "share=backup/"})
    done = wait_for(lambda: ended(session, again["id"]), timeout=60, what="folder again")
    assert done["status"] == "done"
    assert digest_tree(backup / "plates") == digest_tree(projects / "plates")
    (task,) = session.find(f"task WHERE job.id={again['id']}", attributes=["*", "log_tail"])
    assert task["log_tail"].startswith(f"a folder of 41 files, {size} bytes; 40 files were "
                                       "there already"), task
    assert task["size"] == len(plate.read_bytes())


def test_a_missing_source_fails_with_the_reason(session: Session, two_sites: Sites) -> None:
    job = session.create("Job", {"source": "share=projects/nope.mov",
                                 "destination": "share=backup/x.mov", "retries": 0})
    done = wait_for(lambda: ended(session, job["id"]), timeout=60, what="job to fail")
    assert done["status"] == "failed"
    task = session.find_one(f"task WHERE job.id={job['id']}")
    assert "'nope.mov' does not exist in share 'projects'" in task["message"]


def test_bad_transfer_specs(hub: Hub, session: Session, two_sites: Sites) -> None:
    before = db_rows(hub.database)["jobs"]
    for body, field, needle in (
        ({"source": "share=nowhere/a.mov", "destination": "share=backup/"}, "source",
         "no share named 'nowhere'"),
        ({"source": "share=projects/a.mov", "destination": "nobody@edit.com"}, "destination",
         "no site or user named 'nobody@edit.com'"),
        ({"source": "share=projects/a.mov", "destination": "site:mars"}, "destination",
         "no site named 'mars'"),
        ({"source": "share=projects/a.mov", "destination": "user:"}, "destination",
         "names no user or site"),
        ({"source": "share=projects/../etc/passwd", "destination": "share=backup/"}, "source",
         "'..' would leave the share"),
        ({"source": "share=projects/a.mov", "destination": "share=backup/", "colour": 1},
         "colour", "unknown field"),
        ({"source": "share=projects/a.mov", "destination": "share=backup/", "streams": 0},
         "streams", ">= 1"),
    ):
        with pytest.raises(ApiError) as info:
            session.create("Job", body)
        assert info.value.status == 422, body
        assert info.value.details.get("field") == field, (body, info.value)
        assert needle in info.value.message, (body, info.value)
    assert db_rows(hub.database)["jobs"] == before


def test_a_big_file_and_a_big_tree_arrive_identical(session: Session, two_sites: Sites
                                                    ) -> None:
    projects, backup = two_sites.projects, two_sites.backup
    with open(projects / "feature.mov", "wb") as fh:
        for _ in range(64):
            fh.write(random.randbytes(16 * MiB))  # 1 GiB
    for n in range(10_000):
        path = projects / "tree" / f"d{n // 1000}" / f"f{n:05}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(random.randbytes(n % 3000))
    big = session.create("Job", {"source": "share=projects/feature.mov",
                                 "destination": "share=backup/", "streams": 2})
    seen: set[int] = set()
    rates: set[tuple[float, float]] = set()  # the check-ins' s_t: pulled in, served out
    dest = two_sites.dest_agent.status()["client_id"]
    source = two_sites.source_agent.status()["client_id"]
    started = time.monotonic()
    while (job := session.get("Job", big["id"]))["status"] not in ("done", "failed"):
        seen.add(job["progress"])
        rates.add((session.get("Client", dest)["metrics"]["in"]["s_t"],
                   session.get("Client", source)["metrics"]["out"]["s_t"]))
        time.sleep(0.05)
    took = time.monotonic() - started
    assert job["status"] == "done"
    assert job["size"] == 1 << 30 and job["progress"] == 100 and job["speed"] > 0
    task = session.find_one(f"task WHERE job.id={big['id']}")
    assert task["size"] == task["transferred"] == 1 << 30
    if took > 3.0:  # several heartbeats and check-ins went by: the bytes showed on the way
        assert any(0 < p < 100 for p in seen), seen
        assert any(into > 0 and out > 0 for into, out in rates), rates
    tree = session.create("Job", {"source": "share=projects/tree",
                                  "destination": "share=backup/copy"})
    for job in (big, tree):
        done = wait_for(lambda job=job: ended(session, job["id"]), timeout=300,
                        what=f"job {job['code']}")
        assert done["status"] == "done", session.find(f"task WHERE job.id={job['id']}")
    assert digest_tree(backup / "copy") == digest_tree(projects / "tree")
    assert hashlib.sha256((backup / "feature.mov").read_bytes()).digest() == \
        hashlib.sha256((projects / "feature.mov").read_bytes()).digest()


def test_a_killed_receiver_resumes_where_it_was(session: Session, two_sites: Sites) -> None:
    """SIGKILL the receiving agent at about half: after its restart the task runs again and
    only what was missing travels, at most one chunk per stream twice."""
    projects, backup = two_sites.projects, two_sites.backup
    chunks = 64  # 8 MiB each
    with open(projects / "reel.mov", "wb") as fh:
        for _ in range(chunks // 2):
            fh.write(random.randbytes(16 * MiB))
    job = session.create("Job", {"source": "share=projects/reel.mov",
                                 "destination": "share=backup/", "streams": 4})
    journal = backup / ".reel.mov.ferry-state"
    wait_for(lambda: journal.exists() and journal.stat().st_size > 36 * chunks // 2,
             timeout=120, interval=0.02, what="half of the chunks")
    two_sites.dest_agent.kill()
    records = journal.read_bytes()[len(b"ferry-part 1\n"):].partition(b"\n")[2]
    kept = len(records) // 36  # one record per chunk written
    assert 0 < kept < chunks, "killed part-way"
    assert not (backup / "reel.mov").exists()
    two_sites.dest_agent.start()
    done = wait_for(lambda: ended(session, job["id"]), timeout=120, what="resumed job")
    assert done["status"] == "done", session.find(f"task WHERE job.id={job['id']}")
    assert (backup / "reel.mov").read_bytes() == (projects / "reel.mov").read_bytes()
    served = two_sites.source_agent.status()["transfer"]["served_chunks"]
    assert chunks <= served <= chunks + 4, served
    task = session.find_one(f"task WHERE job.id={job['id']}")
    assert task["attempts"] == 1  # the killed run counted as one, and only it


def test_a_folder_of_100000_files_resumes_by_file_after_a_kill(session: Session,
                                                               two_sites: Sites) -> None:
    """A folder of 100,000 files is one task. SIGKILL the receiving agent part-way: after
    its restart the task runs again and sends only the files that had not landed, and
    of those that had, at most the requests in flight when it died."""
    projects, backup = two_sites.projects, two_sites.backup
    count, size = 100_000, 64
    block = random.randbytes(size + count)
    for n in range(count):
        folder = projects / "frames" / f"d{n // 500:03}"
        if n % 500 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{n:06}.bin").write_bytes(block[n:n + size])
    job = session.create("Job", {"source": "share=projects/frames",
                                 "destination": "share=backup/"})
    wait_for((backup / "frames" / "d100").exists, timeout=300, interval=0.02,
             what="half of the files")
    two_sites.dest_agent.kill()
    landed = sum(1 for _ in (backup / "frames").rglob("*.bin"))
    assert 0 < landed < count, "killed part-way"
    two_sites.dest_agent.start()
    done = wait_for(lambda: ended(session, job["id"]), timeout=300, what="resumed folder")
    assert done["status"] == "done", session.find(f"task WHERE job.id={job['id']}")
    assert digest_tree(backup / "frames") == digest_tree(projects / "frames")
    assert not [p for p in backup.rglob(".*ferry*")], "no part files left"
    (task,) = session.find(f"task WHERE job.id={job['id']}", attributes=["*", "log_tail"])
    assert task["attempts"] == 1 and task["log_tail"].startswith(
        f"a folder of {count} files, {count * size} bytes; ")
    there = int(task["log_tail"].split("; ")[1].split()[0])
    assert landed <= there < count
    # every file's record in a batch answer has the same length here: count them
    first = projects / "frames" / "d000" / "f000000.bin"
    record = len(msgspec.json.encode(FileHeader(
        path="frames/d000/f000000.bin", size=size, mtime_ns=first.stat().st_mtime_ns,
        mode=first.stat().st_mode & 0o777, hash="0" * 64))) + 1 + size
    served = two_sites.source_agent.status()["transfer"]["served_bytes"]
    assert served % record == 0
    again = served // record - count  # files that travelled twice
    assert 0 <= again <= BATCHES * BATCH_FILES, again


def test_push_from_the_source_agent(session: Session, two_sites: Sites) -> None:
    """direction: push — the agent that serves the source sends (a source behind NAT)."""
    projects, backup = two_sites.projects, two_sites.backup
    (projects / "out" / "sub").mkdir(parents=True)
    (projects / "out" / "big.mov").write_bytes(random.randbytes(9 * MiB + 3))
    for n in range(30):
        (projects / "out" / "sub" / f"s{n}.txt").write_bytes(random.randbytes(50 * n))
    for source, dest in (("share=projects/out/big.mov", "share=backup/pushed/one.mov"),
                         ("share=projects/out", "share=backup/pushed/")):
        job = session.create("Job", {"source": source, "destination": dest,
                                     "direction": "push", "retries": 0})
        done = wait_for(lambda job=job: ended(session, job["id"]), timeout=60, what="push")
        assert done["status"] == "done", session.find(f"task WHERE job.id={job['id']}")
        task = session.find_one(f"task WHERE job.id={job['id']}")
        source_id = two_sites.source_agent.status()["client_id"]
        assert task["source"]["client"] == source_id, "the source's agent ran it"
    assert (backup / "pushed" / "one.mov").read_bytes() == (projects / "out" / "big.mov"
                                                             ).read_bytes()
    assert digest_tree(backup / "pushed" / "out") == digest_tree(projects / "out")
    assert two_sites.dest_agent.status()["transfer"]["received_chunks"] >= 4


def test_transfers_run_beside_a_busy_lane(session: Session, two_sites: Sites) -> None:
    # the receiving agent's only lane renders; the transfer takes a slot, not that lane
    dest = two_sites.dest_agent.status()["client_id"]
    render = session.create("Job", {"compute": {"command": ["sleep", "60"], "items": "1",
                                                "clients": [dest], "retries": 0}})
    wait_for(lambda: session.get("Job", render["id"])["status"] == "running", what="render")
    (two_sites.projects / "plate.dpx").write_bytes(b"p" * 300_000)
    job = session.create("Job", {"source": "share=projects/plate.dpx",
                                 "destination": "share=backup/"})
    done = wait_for(lambda: ended(session, job["id"]), timeout=30, what="transfer")
    assert done["status"] == "done"
    assert session.get("Job", render["id"])["status"] == "running", "the render goes on"
    task = session.find_one(f"task WHERE job.id={job['id']}")
    assert task["source"]["lane"] is None and task["source"]["client"] == dest
    session.update("Job", render["id"], {"status": "aborted"})
