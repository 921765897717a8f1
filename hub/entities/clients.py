"""Clients: agents (type 1 and 2) and their compute lanes (type 5).

Status follows clients.rst. It is derived, never stored: a client is
``online`` while it checks in within the grace period, ``offline`` after,
and ``disabled``/``disabled-offline`` when an admin disabled it. Only
``online`` (on a disabled client) and ``disabled`` (on an enabled one) can
be written. ``status_reason`` says why an online agent takes no work (outside its
schedule, its user at work): only the agent's own check-ins write it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, not_, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import aliased

from hub.bodies import check_body, expect
from hub.entities.base import AnySelect, Entity
from hub.errors import Conflict, Invalid, NotFound
from hub.query.fields import Choice, Context, Derived, Number, Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Client, Node, Site, User, iso, utcnow
from protocol import ClientStatus, ClientType

Parent = aliased(Client)


def client_status(disabled: bool, gone: bool, last_checkin: datetime | None, now: datetime,
                  grace: timedelta) -> ClientStatus:
    fresh = not gone and last_checkin is not None and last_checkin >= now - grace
    if disabled:
        return ClientStatus.DISABLED if fresh else ClientStatus.DISABLED_OFFLINE
    return ClientStatus.ONLINE if fresh else ClientStatus.OFFLINE


def status_conditions(ctx: Context) -> Mapping[str, ColumnElement[bool]]:
    cutoff = ctx.now - ctx.offline_grace
    fresh = and_(not_(Client.gone), Client.last_checkin.is_not(None), Client.last_checkin >= cutoff)
    return {
        ClientStatus.ONLINE: and_(not_(Client.disabled), fresh),
        ClientStatus.OFFLINE: and_(not_(Client.disabled), not_(fresh)),
        ClientStatus.DISABLED: and_(Client.disabled, fresh),
        ClientStatus.DISABLED_OFFLINE: and_(Client.disabled, not_(fresh)),
    }


_types: dict[str, int] = {str(int(t)): int(t) for t in ClientType}
_types.update({t.hr: int(t) for t in ClientType})

SCHEMA = Schema("Client", {
    "id": Text(Client.id),
    "code": Text(Client.code, nocase=True),
    "user": Reference(Client.user_id, User.id, (User.username, User.email)),
    "user.id": Text(Client.user_id),
    "user.username": Reference(Client.user_id, User.id, (User.username, User.email)),
    "created": Timestamp(Client.created),
    "type": Choice(Client.type, _types),
    "type_hr": Choice(Client.type, {t.hr: int(t) for t in ClientType}),
    "site": Reference(Client.site_id, Site.id, (Site.name,)),
    "site.id": Text(Client.site_id),
    "site.name": Reference(Client.site_id, Site.id, (Site.name,)),
    "site_hr": Reference(Client.site_id, Site.id, (Site.name,)),
    "description": Text(Client.description),
    "host_id": Text(Client.host_id),
    "last_checkin": Timestamp(Client.last_checkin),
    "status": Derived(status_conditions),
    "status_reason": Text(Client.status_reason),
    "os": Text(Client.os),
    "username": Text(Client.username),
    "version": Text(Client.version),
    "wan_ip": Text(Client.wan_ip),
    "parent": Text(Client.parent_id),
    "parent.id": Text(Client.parent_id),
    "node": Text(Client.node_id),
    "benchmark": Number(Client.benchmark),
    "modified": Timestamp(Client.modified),
    "modifier": Text(Client.modifier),
})

READABLE = (
    "id", "code", "user", "user_hr", "created", "type", "site", "site_hr", "description",
    "host_id", "last_checkin", "status", "status_reason", "os", "type_hr", "username", "version", "wan_ip",
    "parent", "benchmark", "metrics", "metadata", "modified", "modifier", "node", "tags",
    "transfer",
)
WRITABLE = ("status", "description", "site", "benchmark", "metadata", "tags")


def user_hr(username: str | None, role: str | None) -> str | None:
    return None if username is None else f"user:{username}({role})"


class ClientEntity(Entity):
    name = "Client"
    model = Client
    schema = SCHEMA
    fields = READABLE
    resource = "client"

    def owner(self, ctx: Ctx) -> Any:
        # an agent's own records are itself and its lanes
        return func.coalesce(Client.parent_id, Client.id) if ctx.principal.kind == "client" \
            else Client.user_id

    def organization(self) -> Any:
        return select(Node.organization_id).where(Node.id == Client.node_id).scalar_subquery()

    def collaboration(self) -> Any:
        """An agent belongs to the collaboration its node was made for."""
        return select(Node.collaboration_id).where(Node.id == Client.node_id).scalar_subquery()

    def base_select(self) -> AnySelect:
        return (
            select(Client, User.username.label("user_name"), User.role.label("user_role"),
                   Site.name.label("site_name"))
            .outerjoin(User, User.id == Client.user_id)
            .outerjoin(Site, Site.id == Client.site_id)
        )

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        c = row
        status = client_status(c["disabled"], c["gone"], c["last_checkin"], ctx.now,
                               ctx.rt.offline_grace)
        try:
            type_hr = ClientType(c["type"]).hr
        except ValueError:
            type_hr = str(c["type"])
        return {
            "id": c["id"],
            "code": c["code"],
            "user": c["user_id"],
            "user_hr": user_hr(row["user_name"], row["user_role"]),
            "created": iso(c["created"]),
            "type": c["type"],
            "site": c["site_id"],
            "site_hr": row["site_name"],
            "description": c["description"],
            "host_id": c["host_id"],
            "last_checkin": iso(c["last_checkin"]),
            "status": str(status),
            # why the agent takes no work (its schedule or NIMBY), as its check-ins say
            "status_reason": c["status_reason"],
            "os": c["os"],
            "type_hr": type_hr,
            "username": c["username"],
            "version": c["version"],
            "wan_ip": c["wan_ip"],
            "parent": c["parent_id"],
            "benchmark": c["benchmark"],
            "metrics": c["metrics"],
            "metadata": c["metadata"] or {},
            "modified": iso(c["modified"]),
            "modifier": c["modifier"],
            "node": c["node_id"],
            "tags": c["tags"] or [],
            "transfer": {"url": c["transfer_url"], "fingerprint": c["transfer_fingerprint"],
                         "pin": c["transfer_pin"]}
            if c["transfer_url"] else None,
        }

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        body = check_body(body, self.name, WRITABLE, READABLE)
        values: dict[str, Any] = {}
        if "description" in body:
            values["description"] = expect(body, "description", str, "a string", max_length=4096)
        if "benchmark" in body:
            value = expect(body, "benchmark", (int, float), "a number", nullable=True)
            if value is not None and value < 0:
                raise Invalid("invalid_value", "field 'benchmark' must not be negative", field="benchmark")
            values["benchmark"] = None if value is None else float(value)
        if "metadata" in body:
            values["meta"] = expect(body, "metadata", dict, "an object")
        if "tags" in body:
            tags = expect(body, "tags", list, "a list of strings")
            if not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tags) or len(tags) > 64:
                raise Invalid("invalid_value", "field 'tags' must be a list of at most 64 "
                              "strings of 1 to 64 characters", field="tags")
            values["tags"] = sorted(set(tags))
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "edit", entity_id)
            client = (await conn.execute(select(Client).where(Client.id == entity_id))).first()
            if client is None:
                raise NotFound("not_found", f"no Client with id '{entity_id}'")
            if "site" in body:
                values["site_id"] = await self._site_id(conn, body)
            if "status" in body:
                values["disabled"] = self._transition(client, body["status"], ctx)
            values.update(modified=utcnow(), modifier=ctx.principal.id)
            await conn.execute(update(Client).where(Client.id == entity_id).values(**values))
            if "site_id" in values:  # an agent's lanes stand where it stands
                await conn.execute(update(Client).where(Client.parent_id == entity_id)
                                   .values(site_id=values["site_id"]))
        return await self.get(ctx, entity_id)

    @staticmethod
    async def _site_id(conn: Any, body: Mapping[str, Any]) -> str | None:
        value = expect(body, "site", str, "a site name or id", nullable=True)
        if value is None:
            return None
        site = (await conn.execute(
            select(Site.id).where(or_(Site.id == value, Site.name == value)))).scalar()
        if site is None:
            raise Invalid("unknown_site", f"no site '{value}'", field="site")
        return str(site)

    def _transition(self, client: Any, wanted: Any, ctx: Ctx) -> bool:
        """The new ``disabled`` flag for a status write, per clients.rst."""
        current = client_status(client.disabled, client.gone, client.last_checkin, ctx.now,
                                ctx.rt.offline_grace)
        if wanted not in tuple(ClientStatus):
            raise Invalid("invalid_status", f"'{wanted}' is not a client status (expected "
                          "online or disabled)", field="status")
        if wanted == ClientStatus.ONLINE:
            if not client.disabled:
                raise Conflict("invalid_transition", f"only disabled clients can be set "
                               f"online; this client is {current}", field="status")
            return False
        if wanted == ClientStatus.DISABLED:
            if client.disabled:
                raise Conflict("invalid_transition",
                               f"this client is already disabled ({current})", field="status")
            return True
        raise Conflict("invalid_transition", f"status '{wanted}' cannot be set; it follows "
                       "from missed check-ins", field="status")

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "delete", entity_id)
            client = (await conn.execute(select(Client).where(Client.id == entity_id))).first()
            if client is None:
                raise NotFound("not_found", f"no Client with id '{entity_id}'")
            status = client_status(client.disabled, client.gone, client.last_checkin, ctx.now,
                                   ctx.rt.offline_grace)
            if status not in (ClientStatus.OFFLINE, ClientStatus.DISABLED_OFFLINE):
                raise Conflict("client_online", f"client is {status}; only offline clients "
                               "can be deleted")
            # lanes go with their agent (ON DELETE CASCADE, and explicitly for SQLite
            # databases created without foreign keys enforced)
            await conn.execute(delete(Client).where(Client.parent_id == entity_id))
            await conn.execute(delete(Client).where(Client.id == entity_id))
