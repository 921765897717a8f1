"""The loop that delivers webhook events, one per hub process, owned by its Supervisor.

It never stands in a request's or a claim's way: events wait in the outbox
(``webhook_deliveries``), written by the change they tell of, and this loop takes the
due ones. Each attempt is a task of its own, with a timeout, at most
``webhook_concurrency`` at once: a slow receiver holds one slot for one timeout, never
the loop.

Several hub processes share one PostgreSQL database: a process claims a due delivery
with ``FOR UPDATE SKIP LOCKED`` (as leases do, ``hub/jobs/leases.py``) and moves its
``next_at`` past the attempt's timeout, which is its lease: should the process die
mid-attempt, another tries again once it lapses. The attempt is counted at the claim.

Retries: a 2xx answer delivers; a 408, 429, 5xx, timeout or connection error is tried
again after ``webhook_backoff`` seconds, doubling each time (at most an hour, or what a
``Retry-After`` asks, up to that hour), until ``webhook_attempts`` are used; any other
answer fails at once (the receiver refused it: the same bytes would be refused again).
The schedule lives in the row rather than in a tenacity loop, so that it survives a
restart and any process may carry it on.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from core.tasks import FailureHook, Supervisor
from core.version import VERSION
from hub.config import HubConfig
from hub.storage.db import Database
from hub.storage.models import Webhook, WebhookDelivery, utcnow
from hub.webhooks import offline
from hub.webhooks.events import DeliveryStatus
from hub.webhooks.signing import DELIVERY, EVENT, SIGNATURE, signature

log = structlog.get_logger("hub.webhooks")

POLL = 0.5  # seconds between looks at the outbox when it had nothing due
OFFLINE_EVERY = 10  # polls between sweeps for agents gone offline
PRUNE_EVERY = 7200  # polls (an hour) between prunes of the delivery log
KEPT = timedelta(days=30)  # how long a delivered or failed delivery stays in the log
MAX_DELAY = 3600.0
LEASE_MARGIN = 30.0  # past an attempt's timeout, before another process may take it
ERROR_CHARS = 500


@dataclass(frozen=True)
class Attempt:
    id: str
    event: str
    body: str
    attempts: int  # this one included
    url: str
    secret: str


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        code = self.status_code
        return code is None or code in (408, 429) or code >= 500


def _claim(conn: Connection, n: int, now: datetime, lease: timedelta) -> list[Attempt]:
    due = conn.execute(
        select(WebhookDelivery.id, WebhookDelivery.webhook_id, WebhookDelivery.event,
               WebhookDelivery.body, WebhookDelivery.attempts)
        .where(WebhookDelivery.status == DeliveryStatus.PENDING,
               WebhookDelivery.next_at <= now)
        .order_by(WebhookDelivery.next_at, WebhookDelivery.id).limit(n)
        .with_for_update(skip_locked=True)).all()
    if not due:
        return []
    hooks = {r.id: r for r in conn.execute(select(Webhook.id, Webhook.url, Webhook.secret)
                                           .where(Webhook.id.in_({d.webhook_id for d in due})))}
    conn.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_([d.id for d in due]))
                 .values(next_at=now + lease, attempts=WebhookDelivery.attempts + 1))
    return [Attempt(d.id, d.event, d.body, d.attempts + 1, hooks[d.webhook_id].url,
                    hooks[d.webhook_id].secret) for d in due]


def _record(conn: Connection, attempt: Attempt, outcome: Outcome, now: datetime,
            config: HubConfig) -> None:
    values: dict[str, Any] = {"status_code": outcome.status_code, "error": outcome.error}
    if outcome.delivered:
        values.update(status=DeliveryStatus.DELIVERED, delivered=now, error="")
    elif not outcome.retryable or attempt.attempts >= config.webhook_attempts:
        values.update(status=DeliveryStatus.FAILED, delivered=now)
    else:
        delay = min(MAX_DELAY, config.webhook_backoff * 2 ** (attempt.attempts - 1))
        if outcome.retry_after is not None:
            delay = min(MAX_DELAY, max(delay, outcome.retry_after))
        values["next_at"] = now + timedelta(seconds=delay)
    conn.execute(update(WebhookDelivery).where(WebhookDelivery.id == attempt.id)
                 .values(**values))


def _prune(conn: Connection, before: datetime) -> None:
    """The log keeps what ended within ``KEPT``; a pending delivery stays, however old."""
    conn.execute(delete(WebhookDelivery).where(
        WebhookDelivery.status != DeliveryStatus.PENDING, WebhookDelivery.delivered < before))


def _retry_after(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None  # an HTTP date: the backoff's own delay then


class WebhookSender:
    """Delivers the outbox's due events, and sweeps for agents gone offline."""

    def __init__(self, db: Database, config: HubConfig, *, offline_grace: timedelta,
                 on_failure: FailureHook | None = None) -> None:
        self.db = db
        self.config = config
        self.offline_grace = offline_grace
        self._tasks = Supervisor("webhook sender", on_failure=on_failure)
        self._in_flight = 0
        self._slot_free = asyncio.Event()

    def start(self) -> None:
        self._tasks.spawn(self._run(), name="webhook-sender")

    async def close(self, deadline: float = 5.0) -> None:
        """Stop sending; an attempt cut short is tried again once its claim lapses.
        Safe to call twice."""
        await self._tasks.close(deadline)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.webhook_timeout)
        lease = timedelta(seconds=self.config.webhook_timeout + LEASE_MARGIN)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            polls = 0
            while True:
                polls += 1
                claimed: list[Attempt] = []
                free = self.config.webhook_concurrency - self._in_flight
                try:
                    if polls % OFFLINE_EVERY == 1:
                        await self.db.run(offline.sweep, utcnow(), self.offline_grace)
                    if polls % PRUNE_EVERY == 1:
                        await self.db.run(_prune, utcnow() - KEPT)
                    if free > 0:
                        claimed = await self.db.run(_claim, free, utcnow(), lease)
                except Exception:
                    log.exception("webhook outbox read failed")
                for attempt in claimed:
                    self._in_flight += 1
                    self._tasks.spawn(self._deliver(http, attempt),
                                      name=f"webhook-delivery-{attempt.id}")
                # a slot freed (maybe more is due) or a moment passed: look again
                self._slot_free.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_free.wait(), POLL)

    async def _deliver(self, http: aiohttp.ClientSession, attempt: Attempt) -> None:
        try:
            try:
                outcome = await self._post(http, attempt)
            except Exception as exc:  # whatever a receiver does, the hub serves on
                log.exception("webhook delivery attempt failed", delivery=attempt.id)
                outcome = Outcome(None, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
            try:
                await self.db.run(_record, attempt, outcome, utcnow(), self.config)
            except Exception:  # its claim lapses and it is tried again
                log.exception("webhook delivery not recorded", delivery=attempt.id)
        finally:
            self._in_flight -= 1
            self._slot_free.set()

    async def _post(self, http: aiohttp.ClientSession, attempt: Attempt) -> Outcome:
        body = attempt.body.encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"ferry-hub/{VERSION}",
                   SIGNATURE: signature(attempt.secret, body), EVENT: attempt.event,
                   DELIVERY: attempt.id}
        try:
            async with http.post(attempt.url, data=body, headers=headers,
                                 allow_redirects=False) as answer:
                # its body is never read: a receiver's answer is its status alone, and
                # an endless body costs nothing
                error = "" if 200 <= answer.status < 300 else f"HTTP {answer.status}"
                return Outcome(answer.status, error,
                               _retry_after(answer.headers.get("Retry-After")))
        except TimeoutError:
            return Outcome(None, f"no answer within {self.config.webhook_timeout:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
