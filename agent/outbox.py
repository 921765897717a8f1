"""The agent's outbox: everything it owes the hub, on disk until the hub acknowledges it.

Reports and log uploads are appended with an idempotency key (a key already
queued is not queued twice) and stay in SQLite until the hub has answered
for them, across hub outages and agent restarts. Appends are written by
group commit on one thread of their own, so lanes never wait on the disk.
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

SCHEMA_VERSION = 1
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
        self._lock = asyncio.Lock()
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

    def add(self, kind: str, key: str, body: bytes) -> None:
        """Queue an item; it is on disk after the next ``flush`` (soon, and before ``take``)."""
        self._pending.append((key, kind, body, time.time()))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.flush()))

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                await self._run(self._insert, batch)
                self.changed.set()

    def _insert(self, batch: list[tuple[str, str, bytes, float]]) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO outbox (key, kind, body, created) "
                                 "VALUES (?, ?, ?, ?)", batch)

    async def take(self, limit: int = 500, kind: str | None = None) -> list[Item]:
        await self.flush()
        return await self._run(self._select, limit, kind)

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
        if ids:
            await self._run(self._delete, ids)

    def _delete(self, ids: list[int]) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    async def count(self) -> int:
        await self.flush()
        return await self._run(self._count)

    def _count(self) -> int:
        assert self._db is not None
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    async def close(self) -> None:
        """Write what is pending, then close. Safe to call twice."""
        if self._db is not None:
            await self.flush()
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=False)
