"""What a running hub holds: config, database, token service, secrets, news of work.

Job logic and the entities reach it through a request's :class:`Ctx`. The dispatcher is
not in it: the dispatcher is built on it (``hub/server.py``), and job logic tells it of
new work through ``work`` alone.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.callers import load_caller
from hub.config import HubConfig
from hub.counting import HubCounters
from hub.permissions import Caller
from hub.security import FailureLimiter, Principal, TokenService
from hub.shares import ShareDirectory
from hub.storage.db import Database
from hub.storage.models import HubState, utcnow
from hub.wakeup import WorkSignal, plain_dsn
from protocol import tickets


@dataclass
class Runtime:
    config: HubConfig
    section: str
    db: Database
    tokens: TokenService
    pepper: bytes
    logins: FailureLimiter
    data_dir: Path
    work: WorkSignal  # news of work, for the claims waiting for it (in every hub process)
    ticket_key: Ed25519PrivateKey  # signs transfer tickets; agents hold the public half
    shares: ShareDirectory
    counters: HubCounters = field(default_factory=HubCounters)  # this process's, for /metrics

    @property
    def offline_grace(self) -> timedelta:
        return timedelta(seconds=self.config.offline_grace)


async def state_secret(db: Database, key: str) -> str:
    """A random secret kept in the database, created on first use.

    Kept in the database rather than a file so that several hub processes
    sharing one database agree on it, and restarts keep tokens valid.
    """
    async with db.read() as conn:
        value = (await conn.execute(select(HubState.value).where(HubState.key == key))).scalar()
    if value is not None:
        return value
    try:
        async with db.write() as conn:
            value = (await conn.execute(select(HubState.value).where(HubState.key == key))
                     ).scalar()
            if value is None:
                value = secrets.token_hex(32)
                await conn.execute(insert(HubState).values(key=key, value=value))
    except IntegrityError:  # another hub process, starting at the same time, made it first
        async with db.read() as conn:
            value = (await conn.execute(select(HubState.value).where(HubState.key == key))
                     ).scalar_one()
    return value


async def build_runtime(config: HubConfig, section: str, db: Database, data_dir: Path
                        ) -> Runtime:
    jwt_secret = config.jwt_secret_key or await state_secret(db, "jwt_secret")
    pepper = bytes.fromhex(await state_secret(db, "lookup_pepper"))
    tokens = TokenService(
        jwt_secret,
        user_lifetime=config.user_token_lifetime(section),
        client_lifetime=timedelta(minutes=config.agent_token_minutes),
    )
    ticket_key = tickets.private_key(bytes.fromhex(await state_secret(db, "ticket_seed")))
    work = WorkSignal(None if db.is_sqlite else plain_dsn(db.url))
    return Runtime(config, section, db, tokens, pepper,
                   FailureLimiter(config.login_failures_per_minute), data_dir, work,
                   ticket_key, ShareDirectory(db))


@dataclass(frozen=True)
class Ctx:
    """One request's view: the runtime, who is asking (and what they may do), and when."""

    rt: Runtime
    principal: Principal
    now: datetime
    caller: Caller

    @classmethod
    async def of(cls, rt: Runtime, principal: Principal, conn: AsyncConnection | None = None
                 ) -> Ctx:
        """The context of ``principal``, its rules read on ``conn`` (or a connection of its
        own)."""
        if conn is None:
            async with rt.db.read() as own:
                return await cls.of(rt, principal, own)
        return cls(rt, principal, utcnow(), await load_caller(conn, principal.kind,
                                                              principal.id, principal.run))

    @property
    def db(self) -> Database:
        return self.rt.db
