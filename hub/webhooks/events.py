"""Events into the outbox: one ``webhook_deliveries`` row per enabled webhook of the
organization that asked for the event, written on the connection of the change itself.

These are functions of a synchronous connection (they run inside ``Database.run`` and
``run_sync`` transactions, as ``hub/jobs/status.py`` does). The body is made once, when
the event happens: every attempt sends the same bytes, with the same delivery id, so a
receiver can tell a retry from a new event.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Connection

from hub.access import client_organization
from hub.storage.models import Client, Job, Task, Webhook, WebhookDelivery, iso, new_id


class Event(enum.StrEnum):
    JOB_CREATED = "job.created"
    JOB_DONE = "job.done"
    JOB_FAILED = "job.failed"
    TASK_FAILED = "task.failed"
    CLIENT_OFFLINE = "client.offline"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # to be tried at ``next_at`` (or being tried; see sender.py)
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # every attempt used up


_HOOKS = (select(Webhook.id, Webhook.events, Webhook.organization_id)
          .where(Webhook.organization_id.in_(bindparam("orgs", expanding=True)),
                 Webhook.enabled.is_(True)).order_by(Webhook.id))
_JOBS = select(Job.id, Job.code, Job.kind, Job.status, Job.status_reason, Job.user_id,
               Job.organization_id, Job.created, Job.started, Job.finished).where(
    Job.id.in_(bindparam("ids", expanding=True)))
_TASKS = select(Task.id, Task.job_id, Task.uri, Task.item, Task.status, Task.message,
                Task.exit_code, Task.attempts, Task.finished, Job.organization_id).join(
    Job, Job.id == Task.job_id).where(Task.id.in_(bindparam("ids", expanding=True)))


def emit(conn: Connection, events: list[tuple[str | None, Event, dict[str, Any]]],
         now: datetime) -> int:
    """Queue each ``(organization, event, record)`` for the webhooks of that organization
    that asked for the event; how many deliveries were queued."""
    orgs = sorted({org for org, _, _ in events if org is not None})
    if not orgs:
        return 0
    hooks: dict[str | None, list[tuple[str, list[str]]]] = {}
    for hook_id, wanted, org in conn.execute(_HOOKS, {"orgs": orgs}):
        hooks.setdefault(org, []).append((hook_id, wanted))
    rows = []
    for org, event, record in events:
        for hook_id, wanted in hooks.get(org, []):
            if event in wanted:
                delivery = new_id()
                body = json.dumps({"event": str(event), "id": delivery, "time": iso(now),
                                   "data": record}, separators=(",", ":"))
                rows.append({"id": delivery, "webhook_id": hook_id, "event": str(event),
                             "body": body, "status": DeliveryStatus.PENDING, "attempts": 0,
                             "next_at": now, "status_code": None, "error": "",
                             "created": now, "delivered": None})
    if rows:
        conn.execute(insert(WebhookDelivery), rows)
    return len(rows)


def job_record(row: Any) -> dict[str, Any]:
    return {"id": row.id, "code": row.code, "kind": row.kind, "status": row.status,
            "status_reason": row.status_reason, "user": row.user_id,
            "organization": row.organization_id, "created": iso(row.created),
            "started": iso(row.started), "finished": iso(row.finished)}


def jobs_event(conn: Connection, event: Event, job_ids: Iterable[str], now: datetime) -> None:
    """``event`` of each of these jobs, as they are now in this transaction."""
    ids = list(job_ids)
    if ids:
        emit(conn, [(r.organization_id, event, job_record(r))
                    for r in conn.execute(_JOBS, {"ids": ids})], now)


def tasks_failed(conn: Connection, task_ids: Iterable[str], now: datetime) -> None:
    """``task.failed`` of each of these tasks (each failed in this transaction)."""
    ids = list(task_ids)
    if not ids:
        return
    emit(conn, [(r.organization_id, Event.TASK_FAILED, {
        "id": r.id, "job": r.job_id, "uri": r.uri, "item": r.item, "status": r.status,
        "message": r.message, "exit_code": r.exit_code, "attempts": r.attempts,
        "finished": iso(r.finished)}) for r in conn.execute(_TASKS, {"ids": ids})], now)


def clients_offline(conn: Connection, client_ids: Iterable[str], now: datetime) -> None:
    """``client.offline`` of each of these agents."""
    ids = list(client_ids)
    if not ids:
        return
    rows = conn.execute(select(Client.id, Client.code, Client.type, Client.last_checkin,
                               Client.gone, client_organization(Client.id).label("org"))
                        .where(Client.id.in_(ids)))
    emit(conn, [(r.org, Event.CLIENT_OFFLINE, {
        "id": r.id, "code": r.code, "type": r.type, "status": "offline",
        "last_checkin": iso(r.last_checkin), "said_goodbye": bool(r.gone)}) for r in rows], now)
