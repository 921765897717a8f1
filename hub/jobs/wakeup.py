"""News of work between hub processes on one PostgreSQL database: LISTEN/NOTIFY.

A claim that finds no work waits on an event of its own process (``dispatch.py``). Work
may appear in any hub process that shares the database: a job created there, a task
released, a lease expired. So each process sends ``NOTIFY ferry_work`` when it sets its
own event, and listens on one connection of its own to set that event when another
process does. A lost notice costs a waiting claim at most its recheck (a second), so the
channel is best-effort: when its connection breaks, it is opened again in the background,
and the claims of this process look again at once for what they may have missed.

SQLite has one hub process, and no channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.engine import make_url

log = structlog.get_logger("hub.wakeup")

CHANNEL = "ferry_work"
RECONNECT = 1.0  # seconds between tries to open the listening connection again


def plain_dsn(url: str) -> str:
    """The ``postgresql://`` DSN asyncpg takes, from the engine's URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class WorkChannel:
    """One listening connection per hub process; owns one background task."""

    def __init__(self, dsn: str, on_notice: Callable[[], None]) -> None:
        self._dsn = dsn
        self._on_notice = on_notice
        self._outgoing = asyncio.Event()  # a notice to send (or the connection ended)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="work-channel")

    def announce(self) -> None:
        """Tell the other hub processes that work may have appeared. Calls made while a
        notice is on its way make one more notice, not one each."""
        self._outgoing.set()

    async def close(self) -> None:
        """Stop listening. Safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
            except Exception as exc:  # the database is away: claims recheck meanwhile
                log.warning("work channel: cannot connect", error=repr(exc))
                await asyncio.sleep(RECONNECT)
                continue
            try:
                conn.add_termination_listener(lambda _conn: self._outgoing.set())
                await conn.add_listener(CHANNEL, self._heard)
                self._on_notice()  # what was announced while no one listened
                await self._send(conn)
            except asyncio.CancelledError:
                conn.terminate()
                raise
            except Exception as exc:
                log.warning("work channel lost", error=repr(exc))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)
            await asyncio.sleep(RECONNECT)

    async def _send(self, conn: Any) -> None:
        """Send notices until the connection ends."""
        while True:
            await self._outgoing.wait()
            self._outgoing.clear()
            if conn.is_closed():
                return
            await conn.execute("SELECT pg_notify($1, '')", CHANNEL)

    def _heard(self, conn: Any, pid: int, _channel: str, _payload: str) -> None:
        if pid != conn.get_server_pid():  # our own notices reach us too: we knew already
            self._on_notice()
