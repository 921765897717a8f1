"""The queue a job waits in: one of its own organization's (``Queue``).

A job names its queue (``"queue": "comp"``, default ``default``). Only the queues of the
job's organization are looked at, so naming another organization's queue gets the same
answer as naming none that exists (``422 unknown_queue``, nothing to probe). The
``default`` queue is made the first time a job of an organization needs it.
"""

from __future__ import annotations

import enum

from sqlalchemy import Select, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import Invalid
from hub.storage.models import Queue, new_id, utcnow

DEFAULT_QUEUE = "default"
DEFAULT_PRIORITY = 500


class QueueStatus(enum.StrEnum):
    OPEN = "open"  # its jobs are dispatched
    PAUSED = "paused"  # its jobs wait; what runs finishes, nothing new starts


def _named(organization: str | None, name: str) -> Select[str]:
    org = Queue.organization_id.is_(None) if organization is None \
        else Queue.organization_id == organization
    return select(Queue.id).where(org, Queue.name == name)


async def queue_for(conn: AsyncConnection, organization: str | None, name: str,
                    field: str = "queue") -> str:
    """The id of ``organization``'s queue ``name`` (``default`` is made when missing);
    ``Invalid`` naming ``field`` otherwise."""
    query = _named(organization, name)
    found = (await conn.execute(query)).scalar()
    if found is None and name == DEFAULT_QUEUE:
        now = utcnow()
        try:
            async with conn.begin_nested():  # another request may make it at the same time
                await conn.execute(insert(Queue).values(
                    id=new_id(), name=name, priority=DEFAULT_PRIORITY,
                    status=QueueStatus.OPEN, organization_id=organization, created=now,
                    modified=now))
        except IntegrityError:
            pass
        found = (await conn.execute(query)).scalar()
    if found is None:
        raise Invalid("unknown_queue", f"your organization has no queue '{name}'", field=field)
    return str(found)
