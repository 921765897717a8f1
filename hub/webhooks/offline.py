"""``client.offline``: an agent's status is not stored (``hub/entities/clients.py``), it
follows from its last check-in, so no request ever makes an agent go offline. The sender
(``sender.py``) sweeps for agents that did since the webhooks were last told.

An agent is told offline once per absence: ``offline_told`` is set when it is, and it is
news again only after a check-in later than that. Several hub processes sweep: each takes
rows no other holds (``FOR UPDATE SKIP LOCKED``), and a row told meanwhile no longer
matches.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection

from hub.storage.models import Client
from hub.webhooks import events

BATCH = 500  # agents told per sweep (a whole farm losing power is told in a few sweeps)


def sweep(conn: Connection, now: datetime, grace: timedelta) -> int:
    """Tell the webhooks of the agents (not their lanes) that went offline; how many."""
    ids = [r.id for r in conn.execute(
        select(Client.id).where(
            Client.parent_id.is_(None), Client.last_checkin.is_not(None),
            or_(Client.gone.is_(True), Client.last_checkin < now - grace),
            or_(Client.offline_told.is_(None), Client.offline_told < Client.last_checkin))
        .order_by(Client.id).limit(BATCH).with_for_update(skip_locked=True))]
    if ids:
        conn.execute(update(Client).where(Client.id.in_(ids)).values(offline_told=now))
        events.clients_offline(conn, ids, now)
    return len(ids)
