"""Check-ins, written by group commit.

Each check-in waits until its row is committed (an answered check-in survives
a hub crash; with SQLite's WAL at ``synchronous=NORMAL`` an OS crash may lose
the last ones, which the next check-in rewrites anyway), but check-ins that
arrive while a transaction is in flight are written together in the next
one. Under light load that is one transaction per check-in; under heavy
load, one per batch. SQLite pays its commit cost once per batch instead of
once per agent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from core.tasks import FailureHook, Supervisor
from hub.errors import ShuttingDown
from hub.storage.db import Database
from hub.storage.models import Client

log = structlog.get_logger("hub.checkins")

MAX_BATCH = 2000
CLOSE_DEADLINE = 10.0  # seconds a closing writer has to write what is pending


@dataclass
class _Pending:
    values: dict[str, Any]
    waiters: list[asyncio.Future[bool | None]]


_update = (
    update(Client)
    .where(Client.id == bindparam("b_id"))
    .values(
        last_checkin=bindparam("b_last_checkin"),
        gone=False,
        metrics=bindparam("b_metrics"),
        status_reason=bindparam("b_status_reason"),
        host_id=func.coalesce(bindparam("b_host_id"), Client.host_id),
        wan_ip=bindparam("b_wan_ip"),
        code=func.coalesce(bindparam("b_code"), Client.code),
        os=func.coalesce(bindparam("b_os"), Client.os),
        username=func.coalesce(bindparam("b_username"), Client.username),
        version=func.coalesce(bindparam("b_version"), Client.version),
    )
)


_lanes = (
    update(Client)
    .where(Client.parent_id == bindparam("b_parent"))
    .values(last_checkin=bindparam("b_last_checkin"), gone=False)
)


class CheckinWriter:
    """Collects check-ins and writes them in batches; owns one background task.
    ``on_failure``: told when that task dies of something it did not expect (then no
    check-in would ever be answered again)."""

    def __init__(self, db: Database, *, on_failure: FailureHook | None = None) -> None:
        self._db = db
        self._pending: dict[str, _Pending] = {}
        self._wake = asyncio.Event()
        self._tasks = Supervisor("check-in writer", on_failure=on_failure)
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = self._tasks.spawn(self._run(), name="checkin-writer")

    async def record(self, client_id: str, at: datetime, metrics: dict[str, Any], host_id: str | None,
                     wan_ip: str, code: str | None, os: str | None, username: str | None,
                     version: str | None, status_reason: str | None = None) -> bool | None:
        """Store one check-in; returns the client's ``disabled`` flag, None if it is gone.

        ``None`` for host_id, code, os, username or version keeps the stored value; for
        ``status_reason`` it clears it (the agent takes work).
        """
        if self._closing:
            raise ShuttingDown("the check-in writer is closed: the hub is stopping")
        future: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        values = {
            "b_id": client_id, "b_last_checkin": at, "b_metrics": metrics, "b_host_id": host_id,
            "b_wan_ip": wan_ip, "b_code": code, "b_os": os, "b_username": username,
            "b_version": version, "b_status_reason": status_reason,
        }
        pending = self._pending.get(client_id)
        if pending is None:
            self._pending[client_id] = _Pending(values, [future])
        else:  # the same client twice in one batch: the newest values win
            pending.values = values
            pending.waiters.append(future)
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._settle(self._take())
            if self._closing:
                return

    async def _settle(self, batch: dict[str, _Pending]) -> None:
        """Write a batch; if it fails, write its rows one by one so one bad row fails alone."""
        failure: Exception | None = None
        flags: dict[str, bool] = {}
        try:
            flags = await self._write(batch)
        except Exception as exc:
            if len(batch) > 1:
                log.warning("check-in batch failed, writing its rows one by one",
                            size=len(batch), error=repr(exc))
                for client_id, item in batch.items():
                    await self._settle({client_id: item})
                return
            log.error("check-in failed", client_id=next(iter(batch)), error=repr(exc))
            failure = exc
        for client_id, item in batch.items():
            for w in item.waiters:
                if w.done():
                    continue
                if failure is not None:
                    w.set_exception(failure)
                else:
                    w.set_result(flags.get(client_id))

    def _take(self) -> dict[str, _Pending]:
        if len(self._pending) <= MAX_BATCH:
            batch, self._pending = self._pending, {}
            return batch
        keys = list(self._pending)[:MAX_BATCH]
        return {k: self._pending.pop(k) for k in keys}

    async def _write(self, batch: dict[str, _Pending]) -> dict[str, bool]:
        return await self._db.run(_write_batch, [p.values for p in batch.values()])

    async def close(self, deadline: float = CLOSE_DEADLINE) -> None:
        """Write what is pending (for up to ``deadline`` seconds), then stop. Safe to call
        twice; a closer cancelled meanwhile stays cancelled, and the writer is stopped
        all the same."""
        self._closing = True
        self._wake.set()
        try:
            if self._task is not None:  # it returns once nothing is pending
                await asyncio.wait({self._task}, timeout=deadline)
        finally:
            await self._tasks.close(deadline=1.0)


def _write_batch(conn: Connection, values: list[dict[str, Any]]) -> dict[str, bool]:
    """One transaction of ``Database.run``: the check-ins, their agents' lanes, and who is
    disabled now. Rows are written in the order of their ids: two hub processes whose
    batches share agents (one agent's check-ins may reach either) take the row locks in the
    same order, and never wait for each other in a circle."""
    values = sorted(values, key=lambda v: str(v["b_id"]))
    conn.execute(_update, values)
    # an agent's lanes live and die with it
    conn.execute(_lanes, [{"b_parent": v["b_id"], "b_last_checkin": v["b_last_checkin"]}
                          for v in values])
    rows = conn.execute(select(Client.id, Client.disabled).where(
        Client.id.in_([v["b_id"] for v in values])))
    return {r.id: bool(r.disabled) for r in rows}
