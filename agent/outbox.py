"""The agent's outbox: everything it owes the hub, on disk until the hub acknowledges it.

Reports and log uploads are appended with an idempotency key (a key already
queued is not queued twice) and stay in SQLite until the hub has answered
for them, across hub outages and agent restarts. Appends are written by
group commit on one thread of their own, a few milliseconds after the first
of a group, so lanes never wait on the disk and a busy agent commits a
group at a time. ``volatile`` items (a task has started) live in memory
only: losing one loses nothing, since the task's end report carries its
start.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("agent.outbox")

SCHEMA_VERSION = 1
COMMIT_DELAY = 0.02  # seconds a group of appends gathers before it is committed
R = TypeVar("R")


@dataclass(frozen=True)
class Item:
    id: int
    key: str
    kind: str  # "report" or "log"
    body: bytes


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._pending: list[tuple[str, str, bytes, float]] = []
        self._volatile: dict[str, Item] = {}
        self._next_volatile = -1
        self._lock = asyncio.Lock()
        self._flush_task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()  # set when something was committed

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @property
    def ready(self) -> bool:
        return self._db is not None

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "key TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, body BLOB NOT NULL, "
                   "created REAL NOT NULL)")
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        self.path.chmod(0o600)
        self._db = db

    def add(self, kind: str, key: str, body: bytes, *, volatile: bool = False) -> None:
        """Queue an item; it is on disk after the next ``flush`` (soon, and before ``take``)."""
        if volatile:
            if key not in self._volatile:
                self._volatile[key] = Item(self._next_volatile, key, kind, body)
                self._next_volatile -= 1
            self.changed.set()
            return
        self._pending.append((key, kind, body, time.time()))
        if self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(COMMIT_DELAY)
        self._flush_task = None
        try:
            await self.flush()
        except Exception as exc:  # the disk is full or gone: keep the items, say so
            log.error("outbox write failed; retrying", error=str(exc))
            if self._flush_task is None:
                self._flush_task = asyncio.create_task(self._flush_soon())

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await self._run(self._insert, batch)
                except BaseException:
                    self._pending[:0] = batch
                    raise
                self.changed.set()

    def _insert(self, batch: list[tuple[str, str, bytes, float]]) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO outbox (key, kind, body, created) "
                                 "VALUES (?, ?, ?, ?)", batch)

    async def take(self, limit: int = 500) -> list[Item]:
        """The oldest items (volatile ones first: they happened before)."""
        await self.flush()
        volatile = list(self._volatile.values())[:limit]
        return volatile + await self._run(self._select, limit - len(volatile), None)

    def _select(self, limit: int, kind: str | None) -> list[Item]:
        assert self._db is not None
        sql = "SELECT id, key, kind, body FROM outbox"
        args: tuple[object, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            args = (kind,)
        rows = self._db.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [Item(*row) for row in rows]

    async def ack(self, ids: list[int]) -> None:
        gone = {i for i in ids if i < 0}
        if gone:
            self._volatile = {k: v for k, v in self._volatile.items() if v.id not in gone}
        stored = [i for i in ids if i >= 0]
        if stored:
            await self._run(self._delete, stored)

    def _delete(self, ids: list[int]) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    async def count(self) -> int:
        """Items the hub has not answered for (volatile ones do not count)."""
        await self.flush()
        return await self._run(self._count)

    def _count(self) -> int:
        assert self._db is not None
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    async def close(self) -> None:
        """Write what is pending, then close. Safe to call twice."""
        if self._flush_task is not None:
            self._flush_task.cancel()
            self._flush_task = None
        if self._db is not None:
            await self.flush()
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=False)
