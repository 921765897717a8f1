"""API keys of users and nodes: issued once, stored hashed, found by lookup.

Hashing is slow on purpose, so a new key is hashed before its write
transaction starts (never while holding SQLite's single writer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, insert, select, update

from hub.runtime import Runtime
from hub.security import hash_secret_async, key_lookup, new_api_key, verify_secret_async
from hub.storage.models import ApiKey, new_id, utcnow


@dataclass(frozen=True)
class NewKey:
    id: str
    plain: str
    lookup: str
    hash: str

    def insert(self, *, user_id: str | None = None, node_id: str | None = None,
               description: str = "", password_version: str | None = None,
               expires: datetime | None = None) -> Insert:
        return insert(ApiKey).values(id=self.id, user_id=user_id, node_id=node_id,
                                     description=description, lookup=self.lookup,
                                     hash=self.hash, created=utcnow(),
                                     password_version=password_version, expires=expires)


async def new_key(rt: Runtime, plain: str | None = None) -> NewKey:
    """A random key (or ``plain``), hashed and ready to insert."""
    plain = plain or new_api_key()
    return NewKey(new_id(), plain, key_lookup(rt.pepper, plain), await hash_secret_async(plain))


async def match_key(rt: Runtime, plain: str) -> Any | None:
    """The ApiKey row ``plain`` belongs to, or None. Marks it used."""
    async with rt.db.read() as conn:
        candidates = (await conn.execute(
            select(ApiKey).where(ApiKey.lookup == key_lookup(rt.pepper, plain))
        )).all()
    for row in candidates:
        if await verify_secret_async(row.hash, plain):
            async with rt.db.write() as conn:
                await conn.execute(update(ApiKey).where(ApiKey.id == row.id)
                                   .values(last_used=utcnow()))
            return row
    return None
