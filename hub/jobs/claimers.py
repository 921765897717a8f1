"""Who asked for work lately: the memory behind benchmark weighting (``dispatch.py``).

Each agent that claimed in the last ``MEMORY`` seconds counts, with the free lanes it
named then and its weight. With SQLite there is one hub process, and it keeps them in a
dict. On PostgreSQL several hub processes serve the same agents, and one agent's claims
may reach any of them, so the memory lives in the database: one ``hub_state`` row per
agent (``claimer:<id>``), written in the claim's own transaction when the agent's lanes or
weight change, or once every ``STEP`` seconds, and read by each process at most once a
``READ_EVERY``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from hub.storage.models import HubState

MEMORY = 60.0  # seconds an agent counts as asking for work after its last claim
STEP = 10.0  # seconds: how stale a shared row's time may be (it is rewritten this often)
READ_EVERY = 1.0  # seconds a process uses the shared rows it read before reading again
PREFIX = "claimer:"

_upsert = pg_insert(HubState).values(key=bindparam("key"), value=bindparam("value"))
# an unchanged row is not written again (the time in it moves once a STEP)
_upsert = _upsert.on_conflict_do_update(index_elements=[HubState.key],
                                        set_={"value": _upsert.excluded.value},
                                        where=HubState.value != _upsert.excluded.value)
_rows = select(HubState.key, HubState.value).where(HubState.key.like(PREFIX + "%"))


@dataclass
class Claimer:
    weight: float
    lanes: int
    seen: float
    # where its node stands: only agents that may run the same compute jobs share them
    # (hub/jobs/targets.py); another organization's agents asking for work take none of it
    organization: str | None = None
    collaboration: str | None = None

    def competes(self, organization: str | None, collaboration: str | None) -> bool:
        return self.organization == organization or (
            collaboration is not None and self.collaboration == collaboration)


class Claimers:
    def __init__(self, *, shared: bool) -> None:
        self.shared = shared  # in the database (PostgreSQL), else in this process
        self._known: dict[str, Claimer] = {}
        self._read = -READ_EVERY

    def remember(self, conn: Connection, client_id: str, weight: float, lanes: int,
                 organization: str | None = None, collaboration: str | None = None) -> None:
        if not self.shared:
            now = time.monotonic()
            self._known[client_id] = Claimer(weight, lanes, now, organization, collaboration)
            for other in [c for c, v in self._known.items() if now - v.seen > MEMORY]:
                del self._known[other]
            return
        seen = time.time() // STEP * STEP
        conn.execute(_upsert, {"key": PREFIX + client_id, "value": json.dumps(
            [weight, lanes, seen, organization, collaboration])})

    def others(self, conn: Connection, client_id: str, organization: str | None = None,
               collaboration: str | None = None) -> list[Claimer]:
        """The other agents that asked lately, had free lanes then, and may run the same
        compute jobs as an agent of ``organization`` in ``collaboration``."""
        if self.shared:
            if time.monotonic() - self._read > READ_EVERY:
                self._known = _load(conn)
                self._read = time.monotonic()
            now = time.time()
        else:
            now = time.monotonic()
        return [c for cid, c in self._known.items()
                if cid != client_id and c.lanes and now - c.seen <= MEMORY
                and c.competes(organization, collaboration)]

    def forget(self, conn: Connection) -> int:
        """Drop the shared rows of agents that stopped asking (run now and then)."""
        if not self.shared:
            return 0
        now = time.time()
        old = [PREFIX + cid for cid, c in _load(conn).items() if now - c.seen > MEMORY + STEP]
        if old:
            conn.execute(delete(HubState).where(HubState.key.in_(old)))
        return len(old)


def _load(conn: Connection) -> dict[str, Claimer]:
    known = {}
    for row in conn.execute(_rows):
        try:
            weight, lanes, seen, *where = json.loads(row.value)
            org, collab = [*where, None, None][:2]
            known[row.key.removeprefix(PREFIX)] = Claimer(float(weight), int(lanes),
                                                          float(seen), org, collab)
        except (ValueError, TypeError):
            continue  # not a row of ours: ignore it
    return known
