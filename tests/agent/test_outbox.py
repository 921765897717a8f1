"""The outbox's group commit, owned by its supervisor: what is added is committed soon,
``close`` writes what is pending, and nothing is added after it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.outbox import Outbox


def stored(path: Path) -> list[str]:
    """The keys in the outbox's file, seen from a connection of the test's own."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT key FROM outbox ORDER BY id")]


async def test_a_commit_follows_the_first_add_and_close_writes_the_rest(tmp_path: Path
                                                                        ) -> None:
    box = Outbox(tmp_path / "outbox.sqlite")
    await box.open()
    box.add("report", "a", b"{}")
    box.add("report", "b", b"{}")  # joins the same group
    await box.changed.wait()
    assert stored(box.path) == ["a", "b"]
    box.add("report", "c", b"{}")
    await box.close()  # before the group's delay is up: written all the same
    assert stored(box.path) == ["a", "b", "c"]
    box.add("report", "d", b"{}")  # too late: logged as lost, never written
    await box.close()  # safe twice
    assert stored(box.path) == ["a", "b", "c"]
