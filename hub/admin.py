"""Administration on a hub's database, without going through HTTP: what ``ferry hub
import`` and ``ferry hub shell`` run on.

Both act as the root user (made first, as a first start would, on a hub that was never
started), through the same entity code as the API (so the same
validation and the same rules). An import is one transaction: all of it is
committed, or nothing is; in the shell each ``save()`` is one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.bootstrap import Made, bootstrap
from hub.config import HubConfig
from hub.entities.users import ROOT_ROLE
from hub.runtime import Ctx, Runtime, build_runtime
from hub.security import Principal
from hub.storage.db import Database
from hub.storage.models import User

P = ParamSpec("P")
R = TypeVar("R")


class OneTransaction:
    """Stands in for ``Database``: every read and write runs on one connection, in one
    transaction that the owner commits or rolls back."""

    def __init__(self, db: Database, conn: AsyncConnection) -> None:
        self._db = db
        self.conn = conn
        self.url = db.url
        self.is_sqlite = db.is_sqlite
        self.file = db.file

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        yield self.conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        yield self.conn

    async def run(self, fn: Callable[Concatenate[Connection, P], R], *args: P.args,
                  **kwargs: P.kwargs) -> R:
        return await self.conn.run_sync(fn, *args, **kwargs)


class AdminSession:
    """The root user's access to a hub's database: each ``transaction()`` is one
    transaction, committed when its block ends normally and rolled back when it raises."""

    def __init__(self, config: HubConfig, section: str, data_dir: Path) -> None:
        self.config = config
        self.section = section
        self.data_dir = data_dir
        self.db: Database | None = None
        self.rt: Runtime | None = None
        self.root = ""
        self.made = Made()

    async def open(self) -> None:
        """Open the database, migrating it as a start would; on a hub that was never
        started, make what its first start would (root and hq): ``made`` tells."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        self.db = Database(self.config.uri, self.data_dir)
        await self.db.migrate()
        self.rt = await build_runtime(self.config, self.section, self.db, self.data_dir)
        self.made = await bootstrap(self.db, self.data_dir)
        async with self.db.read() as conn:
            root = (await conn.execute(select(User.id).where(User.role == ROOT_ROLE))).scalar()
        self.root = str(root)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Ctx]:
        assert self.db is not None and self.rt is not None, "open() first"
        async with self.db.engine.connect() as conn, conn.begin():
            tx = OneTransaction(self.db, conn)
            rt = replace(self.rt, db=tx)  # type: ignore[arg-type]
            yield await Ctx.of(rt, Principal("user", self.root, local=True))

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None
