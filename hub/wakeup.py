"""News of work: what wakes the claims waiting for it, in this hub process and the others.

A claim that finds no work waits on the :class:`WorkSignal` of its process
(``hub/jobs/dispatch.py``). Whatever may make work appear (a job created, tasks added, a task
released, a lease expired) calls ``notify``: job logic through the runtime
(``ctx.rt.work``), the dispatcher itself for what it releases.

Work may appear in any hub process that shares a PostgreSQL database. So each process
sends ``NOTIFY ferry_work`` when it is notified, and listens on one connection of its own
(:class:`WorkChannel`) to wake its claims when another process is. A lost notice costs a
waiting claim at most its recheck (a second), so the channel is best-effort: when its
connection breaks, it is opened again in the background, and the claims of this process
look again at once for what they may have missed.

SQLite has one hub process, and no channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.engine import make_url

from core.tasks import Supervisor

log = structlog.get_logger("hub.wakeup")

CHANNEL = "ferry_work"
RECONNECT = 1.0  # seconds between tries to open the listening connection again


def plain_dsn(url: str) -> str:
    """The ``postgresql://`` DSN asyncpg takes, from the engine's URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class WorkSignal:
    """Work may have appeared: one per hub process, shared by its job logic and its
    dispatcher. ``dsn``: the database to tell the other hub processes through (None with
    SQLite: one process)."""

    def __init__(self, dsn: str | None = None) -> None:
        self._event = asyncio.Event()
        self._channel = None if dsn is None else WorkChannel(dsn, self._event.set)

    def notify(self) -> None:
        """Work may have appeared: wake the waiting claims, in every hub process."""
        self._event.set()
        if self._channel is not None:
            self._channel.announce()

    def wake(self) -> None:
        """Wake the claims waiting in this process only (it stops: they answer now)."""
        self._event.set()

    def clear(self) -> None:
        """A claim is about to look for work: news from before it looked is no news."""
        self._event.clear()

    async def wait(self, seconds: float) -> None:
        """Until news comes, or ``seconds`` have passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout=seconds)

    def start(self) -> None:
        """Hear the other hub processes' news (and send ours) from now on."""
        if self._channel is not None:
            self._channel.start()

    async def close(self, deadline: float = 5.0) -> None:
        """Stop hearing and sending news. Safe to call twice."""
        if self._channel is not None:
            await self._channel.close(deadline)


class WorkChannel:
    """One listening connection per hub process, kept open by one background task."""

    def __init__(self, dsn: str, on_notice: Callable[[], None]) -> None:
        self._dsn = dsn
        self._on_notice = on_notice
        self._outgoing = asyncio.Event()  # a notice to send (or the connection ended)
        self._tasks = Supervisor("work channel")

    def start(self) -> None:
        self._tasks.spawn(self._run(), name="work-channel")

    def announce(self) -> None:
        """Tell the other hub processes that work may have appeared. Calls made while a
        notice is on its way make one more notice, not one each."""
        self._outgoing.set()

    async def close(self, deadline: float = 5.0) -> None:
        """Stop listening. Safe to call twice; a closer that is cancelled meanwhile stays
        cancelled (the channel's task is cancelled all the same)."""
        await self._tasks.close(deadline)

    async def _run(self) -> None:
        # only a hub on PostgreSQL listens: one on SQLite never loads the driver
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415

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
