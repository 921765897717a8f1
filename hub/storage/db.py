"""The hub's database handle: engine, transactions, migrations.

SQLite (the default) takes one writer at a time; rather than letting
concurrent writers collide on SQLite's lock and retry, every write
transaction in this process queues on one ``asyncio.Lock``. PostgreSQL
needs no such lock.

Busy paths (check-ins, claims, heartbeats, reports) are plain functions of
a synchronous connection, run by ``Database.run``: on SQLite the whole
transaction runs in the database's own thread, one hop there and back
(the async driver hops for every statement, and each hop waits for the
GIL while the event loop is busy); on PostgreSQL the same function runs on
the event loop through the async driver, which has no threads.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from core.errors import ConfigError
from hub.storage.defaults import sync_defaults

MIGRATIONS = Path(__file__).parent / "migrations"
P = ParamSpec("P")
R = TypeVar("R")


def async_url(uri: str, data_dir: Path) -> str:
    """Turn a reference-style URI into an async driver URL.

    ``sqlite:///hub.sqlite`` is relative to the instance's data folder;
    ``postgresql://…`` uses asyncpg.
    """
    try:
        url = make_url(uri)
    except ArgumentError:
        raise ConfigError(f"not a database URI: {uri!r}", key="uri") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ":memory:"
        if database != ":memory:" and not Path(database).is_absolute():
            database = str((data_dir / database).absolute())
        return str(url.set(drivername="sqlite+aiosqlite", database=database))
    if backend == "postgresql":
        return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ConfigError(f"unsupported database {backend!r} (use sqlite or postgresql)", key="uri")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    """One engine for one hub process."""

    def __init__(self, uri: str, data_dir: Path) -> None:
        self.url = async_url(uri, data_dir)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite and ":memory:" in self.url:
            kwargs["poolclass"] = StaticPool
        self.file: Path | None = None
        if self.is_sqlite:
            database = make_url(self.url).database
            if database and database != ":memory:":
                self.file = Path(database)
                try:
                    self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                except OSError as exc:
                    raise ConfigError(f"cannot create the database folder {self.file.parent}: "
                                      f"{exc.strerror or exc}", key="uri") from None
        try:
            # hide_parameters: a logged SQL error must not carry password or key hashes
            self.engine: AsyncEngine = create_async_engine(self.url, hide_parameters=True,
                                                           **kwargs)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"database driver missing: {exc.name}", key="uri") from None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._write_lock = asyncio.Lock()
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        if self.is_sqlite and self.file is not None:
            # one connection, used only from one thread: the transactions of ``run``
            self._sync = create_engine(str(make_url(self.url).set(drivername="sqlite")),
                                       poolclass=StaticPool, hide_parameters=True,
                                       connect_args={"check_same_thread": False})
            event.listen(self._sync, "connect", _sqlite_pragmas)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed on success, rolled back on error."""
        if self.is_sqlite:
            async with self._write_lock, self.engine.begin() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def run(self, fn: Callable[Concatenate[Connection, P], R], *args: P.args,
                  **kwargs: P.kwargs) -> R:
        """Run ``fn(connection, ...)`` as one write transaction (see the module's doc)."""
        if self._sync is not None and self._thread is not None:
            sync = self._sync

            def transaction() -> R:
                with sync.begin() as conn:
                    return fn(conn, *args, **kwargs)

            # in the caller's context, as asyncio.to_thread runs a function: what the
            # transaction notes for the hub's metrics reaches its caller (hub/counting.py)
            context = contextvars.copy_context()
            async with self._write_lock:
                return await asyncio.get_running_loop().run_in_executor(
                    self._thread, context.run, transaction)
        async with self.write() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def migrate(self) -> None:
        """Bring the schema to the newest revision; the SQLite files are made owner-only."""
        try:
            async with self.write() as conn:
                await conn.run_sync(_upgrade)
        except (OSError, OperationalError) as exc:
            reason = getattr(exc, "orig", None) or getattr(exc, "strerror", None) or exc
            raise ConfigError(f"cannot open the database: {reason}", key="uri") from None
        if self.file is not None:
            # it holds the token secret and the hashes: nobody but the hub's user reads it
            for path in (self.file, *(self.file.with_name(self.file.name + s)
                                      for s in ("-wal", "-shm"))):
                if path.exists():
                    path.chmod(0o600)

    async def close(self) -> None:
        await self.engine.dispose()
        if self._sync is not None and self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._sync.dispose)
            self._thread.shutdown(wait=True)
            self._sync = self._thread = None


def alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    """Migrate, then write this version's rules and default roles. On PostgreSQL, hub
    processes starting together take turns (a transaction-scoped advisory lock)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("select pg_advisory_xact_lock(7700001)"))
    command.upgrade(alembic_config(connection), "head")
    sync_defaults(connection)
