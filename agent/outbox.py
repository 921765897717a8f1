"""The agent's outbox: everything it owes the hub, on disk until the hub acknowledges it.

Reports and log uploads are appended with an idempotency key (a key already
queued is not queued twice) and stay in SQLite until the hub has answered
for them, across hub outages and agent restarts. Appends are written by
group commit on one thread of their own, a few milliseconds after the first
of a group, so lanes never wait on the disk and a busy agent commits a
group at a time. ``volatile`` items (a task has started) live in memory
only: losing one loses nothing, since the task's end report carries its
start.

What must not be lost before something else is undone (a Docker run's end
report, before its container goes) is written at once with
``flush(sync=True)``; ``sent(key)`` waits until the hub has answered for an
item (applied, duplicate or refused: it has left the outbox).

The group commit runs as a task of the outbox's own ``Supervisor``; ``close`` writes
what is pending and ends it. An item added after ``close`` is not written (it is
logged as lost): nothing of the agent should still report by then.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from core.tasks import Supervisor

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
    """The outbox in the SQLite file at ``path`` (made by ``open``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._pending: list[tuple[str, str, bytes, float]] = []
        self._volatile: dict[str, Item] = {}
        self._next_volatile = -1
        self._lock = asyncio.Lock()
        self._tasks = Supervisor("outbox")
        self._flush_task: asyncio.Task[None] | None = None  # the group commit to come
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}  # sent(key) callers
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
        if self._tasks.closed:
            log.error("outbox closed; an item is lost", kind=kind, key=key)
            return
        self._pending.append((key, kind, body, time.time()))
        self._commit_soon()

    def _commit_soon(self) -> None:
        if self._flush_task is None:
            self._flush_task = self._tasks.spawn(self._flush_soon(), name="outbox-commit")

    async def _flush_soon(self) -> None:
        await asyncio.sleep(COMMIT_DELAY)
        self._flush_task = None
        try:
            await self.flush()
        except Exception as exc:  # the disk is full or gone: keep the items, say so
            log.error("outbox write failed; retrying", error=str(exc))
            if not self._tasks.closed:
                self._commit_soon()

    async def flush(self, *, sync: bool = False) -> None:
        """Commit what was added so far. ``sync``: and make the commit durable across a
        power loss too (an fsync; a commit survives the agent's death without one)."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await self._run(self._insert, batch)
                except BaseException:
                    self._pending[:0] = batch
                    raise
                self.changed.set()
            if sync:  # also when another flush committed our items: its commit had none
                await self._run(self._sync)

    def _sync(self) -> None:
        # WAL with synchronous=NORMAL fsyncs at checkpoints only: sync the log by hand
        wal = self.path.with_name(self.path.name + "-wal")
        fd = os.open(wal if wal.exists() else self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

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
        """The hub has answered for these items: they leave the outbox."""
        gone = {i for i in ids if i < 0}
        keys = [k for k, v in self._volatile.items() if v.id in gone]
        if gone:
            self._volatile = {k: v for k, v in self._volatile.items() if v.id not in gone}
        stored = [i for i in ids if i >= 0]
        if stored:
            keys += await self._run(self._delete, stored, bool(self._waiting))
        for key in keys:
            for waiting in self._waiting.pop(key, ()):
                if not waiting.done():
                    waiting.set_result(None)

    def _delete(self, ids: list[int], want_keys: bool = False) -> list[str]:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            keys = [row[0] for i in ids for row in self._db.execute(
                "SELECT key FROM outbox WHERE id = ?", (i,))] if want_keys else []
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
        return keys

    async def sent(self, key: str) -> None:
        """Return once the item ``key`` has left the outbox (the hub answered for it); at
        once when no such item is queued."""
        waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # waiting before looking: an ack between the look and the wait is not missed
        self._waiting.setdefault(key, set()).add(waiting)
        try:
            if key in self._volatile or any(p[0] == key for p in self._pending) or \
                    await self._run(self._has, key):
                await waiting
        finally:
            left = self._waiting.get(key)
            if left is not None:
                left.discard(waiting)
                if not left:
                    del self._waiting[key]

    def _has(self, key: str) -> bool:
        assert self._db is not None
        return self._db.execute("SELECT 1 FROM outbox WHERE key = ?", (key,)).fetchone() \
            is not None

    async def count(self) -> int:
        """Items the hub has not answered for (volatile ones do not count)."""
        await self.flush()
        return await self._run(self._count)

    def _count(self) -> int:
        assert self._db is not None
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    async def backlog(self) -> tuple[int, float | None]:
        """Items the hub has not answered for (volatile ones too), and when the oldest was
        added (``time.time()``; None when there is none). Nothing waits for a commit."""
        stored, oldest = (0, None) if self._db is None else await self._run(self._backlog)
        # volatile items (start reports) have no time: their task is running now
        times = [t for t in (oldest, *(p[3] for p in self._pending[:1])) if t is not None]
        return stored + len(self._pending) + len(self._volatile), min(times, default=None)

    def _backlog(self) -> tuple[int, float | None]:
        assert self._db is not None
        count, oldest = self._db.execute("SELECT count(*), min(created) FROM outbox").fetchone()
        return int(count), oldest

    async def close(self) -> None:
        """Write what is pending, then close. Safe to call twice."""
        await self._tasks.close()
        self._flush_task = None
        if self._db is not None:
            await self.flush()
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=False)
