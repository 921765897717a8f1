"""Which agent serves which share: a small table, read often (every check-in answers
with the agent's shares), so kept in memory and read again every few seconds."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from hub.storage.db import Database
from hub.storage.models import Share
from protocol import ShareInfo

REFRESH = 5.0  # seconds: a share changed by another hub process shows within this


class ShareDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._by_client: dict[str, list[ShareInfo]] = {}
        self._loaded = -REFRESH
        self._lock = asyncio.Lock()

    async def for_client(self, client_id: str) -> list[ShareInfo]:
        if time.monotonic() - self._loaded > REFRESH:
            async with self._lock:
                if time.monotonic() - self._loaded > REFRESH:
                    await self._reload()
        return self._by_client.get(client_id, [])

    def changed(self) -> None:
        """A share was written here: read them again at the next question."""
        self._loaded = -REFRESH

    async def _reload(self) -> None:
        async with self._db.read() as conn:
            rows = (await conn.execute(select(Share.id, Share.name, Share.path, Share.client_id)
                                       .where(Share.client_id.is_not(None))
                                       .order_by(Share.name))).all()
        by_client: dict[str, list[ShareInfo]] = {}
        for row in rows:
            by_client.setdefault(row.client_id, []).append(ShareInfo(row.id, row.name, row.path))
        self._by_client = by_client
        self._loaded = time.monotonic()
