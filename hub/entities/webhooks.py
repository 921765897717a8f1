"""Webhooks (issue 19): where the hub POSTs an organization's events, and their delivery
log (``hub/webhooks``: how events are queued, signed and sent).

A webhook belongs to one organization, and sees that organization's events only. One out
of the caller's sight is answered as one that does not exist (404; ``owned.py``), and so
are its deliveries. Its ``secret`` is write-only: the answer to the creation shows it
once (the hub makes one when none is given), and no answer after that.

The URL is http or https, with a host; a hub may restrict the hosts it names
(``webhook_hosts``: docs/SECURITY.md, "Webhooks").
"""

from __future__ import annotations

import fnmatch
import secrets
import urllib.parse
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.engine import RowMapping

from hub.bodies import check_body, expect
from hub.entities.base import Entity
from hub.entities.owned import OwnedRecord
from hub.errors import Invalid
from hub.query.fields import Boolean, Number, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Organization, Webhook, WebhookDelivery, iso
from hub.webhooks.events import Event

SCHEMA = Schema("Webhook", {
    "id": Text(Webhook.id),
    "name": Text(Webhook.name),
    "url": Text(Webhook.url),
    "enabled": Boolean(Webhook.enabled),
    "organization": Reference(Webhook.organization_id, Organization.id, (Organization.name,)),
    "created": Timestamp(Webhook.created),
    "modified": Timestamp(Webhook.modified),
})
WRITABLE = ("name", "url", "events", "secret", "enabled", "organization")
READABLE = (*WRITABLE, "id", "created", "modified", "modifier")
MAX_URL = 2048
SECRET_LENGTH = (16, 255)


def _url(body: dict[str, Any], ctx: Ctx) -> str:
    url: str = expect(body, "url", str, "an http or https URL", max_length=MAX_URL)
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        host, parts = "", urllib.parse.urlsplit("")
    if parts.scheme not in ("http", "https") or not host:
        raise Invalid("invalid_value", "field 'url' must be an http or https URL with a "
                      f"host, got '{url[:100]}'", field="url")
    if parts.username is not None or parts.password is not None:
        raise Invalid("invalid_value", "field 'url' must not hold credentials (the "
                      "webhook's secret signs each delivery)", field="url")
    allowed = ctx.rt.config.webhook_hosts
    if allowed and not any(fnmatch.fnmatch(host.lower(), p.lower()) for p in allowed):
        raise Invalid("invalid_value", f"field 'url' names host '{host}', which this hub "
                      "sends no webhooks to (its webhook_hosts)", field="url")
    return url.strip()


def _events(body: dict[str, Any]) -> list[str]:
    given = expect(body, "events", list, "a list of event names")
    if not given:
        raise Invalid("invalid_value", "field 'events' must name at least one event",
                      field="events")
    known = ", ".join(Event)
    for i, name in enumerate(given):
        if name not in set(Event):
            raise Invalid("invalid_value", f"events[{i}] must be one of {known}, got "
                          f"{str(name)[:100]!r}", field=f"events[{i}]")
    return list(dict.fromkeys(given))


def _values(body: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "name" in body:
        values["name"] = expect(body, "name", str, "a string").strip()
    if "url" in body:
        values["url"] = _url(body, ctx)
    if "events" in body:
        values["events"] = _events(body)
    if "enabled" in body:
        values["enabled"] = expect(body, "enabled", bool, "true or false")
    if "secret" in body:
        secret: str = expect(body, "secret", str, "a string", max_length=SECRET_LENGTH[1])
        if len(secret) < SECRET_LENGTH[0]:
            raise Invalid("too_short", f"field 'secret' must have at least "
                          f"{SECRET_LENGTH[0]} characters", field="secret")
        values["secret"] = secret
    return values


class WebhookEntity(OwnedRecord):
    name = "Webhook"
    model = Webhook
    schema = SCHEMA
    resource = "webhook"
    noun = "a webhook"
    fields = ("id", "name", "url", "events", "enabled", "organization", "created",
              "modified", "modifier")  # never the secret

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        # never the secret: it is shown once, in the answer to the creation
        return {"id": row["id"], "name": row["name"], "url": row["url"],
                "events": row["events"], "enabled": row["enabled"],
                "organization": row["organization_id"], "created": iso(row["created"]),
                "modified": iso(row["modified"]), "modifier": row["modifier"]}

    def relations(self, entity_id: str) -> dict[str, tuple[str, ColumnElement[bool]]]:
        return {"deliveries": ("webhookdelivery", WebhookDelivery.webhook_id == entity_id)}

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE, ("url", "events"))
        values = {"name": "", "enabled": True, **_values(body, ctx)}
        values.setdefault("secret", secrets.token_urlsafe(32))
        record = await self.insert(ctx, body, values)
        return {**record, "secret": values["secret"]}

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE[:-1], READABLE)
        return await self.change(ctx, entity_id, _values(body, ctx))

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        """Its delivery log goes with it; events not yet sent are not sent."""
        await self.remove(ctx, entity_id)


DELIVERY_SCHEMA = Schema("WebhookDelivery", {
    "id": Text(WebhookDelivery.id),
    "webhook": Text(WebhookDelivery.webhook_id),
    "event": Text(WebhookDelivery.event),
    "status": Text(WebhookDelivery.status),
    "attempts": Number(WebhookDelivery.attempts, integer=True),
    "status_code": Number(WebhookDelivery.status_code, integer=True),
    "created": Timestamp(WebhookDelivery.created),
    "delivered": Timestamp(WebhookDelivery.delivered),
})


class DeliveryEntity(Entity):
    """The delivery log: each event for a webhook, with its last attempt's outcome. Seen
    by those who may see the webhook; written by the hub alone."""

    name = "WebhookDelivery"
    model = WebhookDelivery
    schema = DELIVERY_SCHEMA
    resource = "webhook"
    fields = ("id", "webhook", "event", "status", "attempts", "status_code", "error",
              "next_attempt", "created", "delivered", "body")

    def organization(self) -> Any:
        return (select(Webhook.organization_id)
                .where(Webhook.id == WebhookDelivery.webhook_id).scalar_subquery())

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        return {"id": row["id"], "webhook": row["webhook_id"], "event": row["event"],
                "status": row["status"], "attempts": row["attempts"],
                "status_code": row["status_code"], "error": row["error"],
                "next_attempt": iso(row["next_at"]) if row["status"] == "pending" else None,
                "created": iso(row["created"]), "delivered": iso(row["delivered"]),
                "body": row["body"]}
