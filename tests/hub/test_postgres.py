"""The hub on PostgreSQL (asyncpg): migrations, dispatch with SKIP LOCKED, transfers.

Needs a reachable server: ``bash scripts/postgres.sh`` installs and starts one. Each test
gets a database of its own, dropped afterwards (``postgres_url`` in conftest.py). Skipped
when no server answers, unless FERRY_REQUIRE_POSTGRES=1 (as in CI), where that is a failure.
"""

from __future__ import annotations

import random

import pytest

from hub import Session
from tests.conftest import Sites
from tests.helpers import Hub, digest_tree, ended, wait_for

pytestmark = pytest.mark.one_round("its hubs are on PostgreSQL in both rounds")


@pytest.fixture
def hub(start_hub, postgres_url: str) -> Hub:
    return start_hub(uri=postgres_url, heartbeat_interval=0.5, lease_seconds=10)


def test_a_compute_job_runs_on_postgresql(hub: Hub, session: Session, node_key,
                                          start_agent) -> None:
    for name in ("a", "b"):
        start_agent(hub, node_key(name)["api_key"], lanes=2)
    wait_for(lambda: len(session.find("Client where type=2 and status=online")) == 2,
             what="two agents online")
    job = session.create("Job", {"compute": {"command": ["sh", "-c", "echo {item}"],
                                             "items": "1-60", "bucket_size": 4}})
    done = wait_for(lambda: ended(session, job["id"]), timeout=120, what="job on PostgreSQL")
    assert done["status"] == "done", done
    tasks = session.find(f"task WHERE job.id={job['id']}",
                         attributes=["item", "log_tail", "attempts"])
    assert sorted(int(t["item"]) for t in tasks) == list(range(1, 61))
    assert all(t["log_tail"] == f"{t['item']}\n" and t["attempts"] == 0 for t in tasks)
    assert session.find_one(f"Job where id={job['id']} and status=done")["progress"] == 100
    # the query language compiles for PostgreSQL as for SQLite
    assert len(session.find(f"task WHERE job.id={job['id']} AND status<>executing")) == 60
    assert len(session.find('Job where code="sh 1-60"')) == 1
    assert session.find('Job where destination="stockholm"') == []
    assert len(session.find("Client where status=online and type=5")) == 4
    assert len(session.find(f"task WHERE job.id={job['id']} AND item=7")) == 1


def test_a_transfer_job_runs_on_postgresql(session: Session, two_sites: Sites) -> None:
    for n in range(30):
        path = two_sites.projects / "plates" / f"p{n:03}.dpx"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(random.randbytes(1000 + n))
    (two_sites.projects / "plates" / "big.mov").write_bytes(random.randbytes(9 << 20))
    job = session.create("Job", {"source": "share=projects/plates",
                                 "destination": "share=backup/"})
    done = wait_for(lambda: ended(session, job["id"]), timeout=120, what="transfer")
    assert done["status"] == "done", session.find(f"task WHERE job.id={job['id']}")
    assert digest_tree(two_sites.backup / "plates") == digest_tree(two_sites.projects /
                                                                   "plates")
    (task,) = session.find(f"task WHERE job.id={job['id']}",  # a folder is one task
                           attributes=["log_tail"])
    assert task["log_tail"].startswith("a folder of 31 files")
