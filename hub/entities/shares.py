"""Shares: named root folders that an agent serves (``share=projects/thefilm/a.mov``).

A share belongs to one agent of type 1 (server) or 2 (user server, for a
user's proxy shares). The agent learns its shares with its next check-in and
serves them on its transfer endpoint. Deleting the agent keeps the share,
with no client, until it is given another.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.access import ShareAccess, client_organization, scope_of_organization
from hub.bodies import check_body, expect
from hub.entities.base import AnySelect, Entity
from hub.errors import Conflict, Invalid, NotFound
from hub.query.fields import Reference, Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Client, Share, iso, new_id, utcnow
from protocol import ClientType
from protocol.paths import PathRefused, check_share_name

SCHEMA = Schema("Share", {
    "id": Text(Share.id),
    "name": Text(Share.name, nocase=True),
    "client": Reference(Share.client_id, Client.id, (Client.code,)),
    "path": Text(Share.path),
    "description": Text(Share.description),
    "created": Timestamp(Share.created),
    "modified": Timestamp(Share.modified),
})
READABLE = ("id", "name", "client", "client_hr", "path", "description", "created", "modified",
            "modifier")
WRITABLE = ("name", "client", "path", "description")
_ABSOLUTE = re.compile(r"^(/|[A-Za-z]:[\\/]|\\\\[^\\]+\\[^\\]+)")


class ShareEntity(ShareAccess, Entity):
    schema = SCHEMA
    fields = READABLE

    async def _need_client(self, ctx: Ctx, operation: str, client_id: str) -> None:
        """Giving a share to an agent is an ``operation`` on shares of the agent's
        organization."""
        async with ctx.db.read() as conn:
            org = (await conn.execute(select(client_organization(client_id)))).scalar()
        ctx.caller.need("share", operation, scope_of_organization(ctx, org))

    def base_select(self) -> AnySelect:
        return select(Share, Client.code.label("client_code")).outerjoin(
            Client, Client.id == Share.client_id)

    def serialize(self, row: Any, ctx: Ctx) -> dict[str, Any]:
        s = row
        return {"id": s["id"], "name": s["name"], "client": s["client_id"],
                "client_hr": f"client:{s['client_code']}" if s["client_code"] else None,
                "path": s["path"], "description": s["description"],
                "created": iso(s["created"]), "modified": iso(s["modified"]),
                "modifier": s["modifier"]}

    async def _values(self, ctx: Ctx, body: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "name" in body:
            try:
                values["name"] = check_share_name(expect(body, "name", str, "a string"))
            except PathRefused as exc:
                raise Invalid("invalid_value", f"field 'name': {exc.why}", field="name") from None
        if "path" in body:
            path = expect(body, "path", str, "a string", max_length=4096)
            if not _ABSOLUTE.match(path) or any(ord(c) < 0x20 for c in path):
                raise Invalid("invalid_value", "field 'path' must be an absolute folder on "
                              "the serving agent (/srv/projects, D:\\projects), with no control "
                              "characters", field="path")
            values["path"] = path
        if "description" in body:
            values["description"] = expect(body, "description", str, "a string",
                                           max_length=4096)
        if "client" in body:
            client_id = expect(body, "client", str, "a client id")
            async with ctx.db.read() as conn:
                client = (await conn.execute(select(Client.type, Client.parent_id).where(
                    Client.id == client_id))).first()
            if client is None:
                raise Invalid("unknown_client", f"no client with id '{client_id}'", field="client")
            if client.parent_id is not None or client.type not in (
                    ClientType.SERVER, ClientType.USER_SERVER):
                raise Invalid("invalid_value", "a share is served by an agent of type 1 "
                              "(server) or 2 (user server), not by a compute lane", field="client")
            values["client_id"] = client_id
        return values

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        self.allowed(ctx, "create")
        values = await self._values(ctx, check_body(body, self.name, WRITABLE, READABLE,
                                                    ("name", "client", "path")))
        await self._need_client(ctx, "create", values["client_id"])
        share_id, now = new_id(), utcnow()
        try:
            async with ctx.db.write() as conn:
                await conn.execute(insert(Share).values(id=share_id, created=now, modified=now,
                                                        modifier=ctx.principal.id,
                                                        **{"description": "", **values}))
        except IntegrityError:
            raise _duplicate(values) from None
        ctx.rt.shares.changed()
        return await self.get(ctx, share_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        values = await self._values(ctx, check_body(body, self.name, WRITABLE, READABLE))
        if "client_id" in values:
            await self._need_client(ctx, "edit", values["client_id"])
        try:
            async with ctx.db.write() as conn:
                await self.check(conn, ctx, "edit", entity_id)
                found = (await conn.execute(update(Share).where(Share.id == entity_id).values(
                    modified=utcnow(), modifier=ctx.principal.id, **values))).rowcount
        except IntegrityError:
            raise _duplicate(values) from None
        if not found:
            raise NotFound("not_found", f"no Share with id '{entity_id}'")
        ctx.rt.shares.changed()
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        async with ctx.db.write() as conn:
            await self.check(conn, ctx, "delete", entity_id)
            found = (await conn.execute(delete(Share).where(Share.id == entity_id))).rowcount
        if not found:
            raise NotFound("not_found", f"no Share with id '{entity_id}'")
        ctx.rt.shares.changed()


def _duplicate(values: dict[str, Any]) -> Conflict:
    return Conflict("duplicate", f"a share named '{values.get('name')}' already exists", field="name")
