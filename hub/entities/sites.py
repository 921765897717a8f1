"""Sites: where clients stand (``hq``, ``stockholm``). ``hq`` always exists."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from hub.bodies import check_body, expect, name_value
from hub.entities.base import Entity
from hub.errors import Conflict, NotFound
from hub.query.fields import Schema, Text, Timestamp
from hub.runtime import Ctx
from hub.storage.models import Client, Site, iso, new_id, utcnow

DEFAULT_SITE = "hq"

SCHEMA = Schema("Site", {
    "id": Text(Site.id),
    "name": Text(Site.name, nocase=True),
    "description": Text(Site.description),
    "created": Timestamp(Site.created),
    "modified": Timestamp(Site.modified),
})
READABLE = ("id", "name", "description", "created", "modified", "modifier")


class SiteEntity(Entity):
    name = "Site"
    model = Site
    schema = SCHEMA
    fields = READABLE
    resource = "site"

    def serialize(self, row: RowMapping, ctx: Ctx) -> dict[str, Any]:
        s = row
        return {"id": s["id"], "name": s["name"], "description": s["description"],
                "created": iso(s["created"]), "modified": iso(s["modified"]), "modifier": s["modifier"]}

    def _values(self, body: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "name" in body:
            values["name"] = name_value(body)
        if "description" in body:
            values["description"] = expect(body, "description", str, "a string", max_length=4096)
        return values

    async def create(self, ctx: Ctx, body: Any) -> dict[str, Any]:
        ctx.caller.need("site", "create", "global")
        values = self._values(check_body(body, self.name, ("name", "description"), READABLE,
                                         ("name",)))
        site_id, now = new_id(), utcnow()
        try:
            async with ctx.db.write() as conn:
                await conn.execute(insert(Site).values(id=site_id, created=now, modified=now,
                                                       modifier=ctx.principal.id, **values))
        except IntegrityError:
            raise Conflict("duplicate", f"a site named '{values['name']}' already exists",
                           field="name") from None
        return await self.get(ctx, site_id)

    async def update(self, ctx: Ctx, entity_id: str, body: Any) -> dict[str, Any]:
        ctx.caller.need("site", "edit", "global")
        values = self._values(check_body(body, self.name, ("name", "description"), READABLE))
        try:
            async with ctx.db.write() as conn:
                current = (await conn.execute(select(Site.name).where(Site.id == entity_id))).scalar()
                if current is None:
                    raise NotFound("not_found", f"no Site with id '{entity_id}'")
                if current == DEFAULT_SITE and values.get("name", DEFAULT_SITE) != DEFAULT_SITE:
                    raise Conflict("protected", "the default site 'hq' cannot be renamed")
                values.update(modified=utcnow(), modifier=ctx.principal.id)
                await conn.execute(update(Site).where(Site.id == entity_id).values(**values))
        except IntegrityError:
            raise Conflict("duplicate", f"a site named '{values.get('name')}' already "
                           "exists", field="name") from None
        return await self.get(ctx, entity_id)

    async def delete(self, ctx: Ctx, entity_id: str) -> None:
        ctx.caller.need("site", "delete", "global")
        async with ctx.db.write() as conn:
            current = (await conn.execute(select(Site.name).where(Site.id == entity_id))).scalar()
            if current is None:
                raise NotFound("not_found", f"no Site with id '{entity_id}'")
            if current == DEFAULT_SITE:
                raise Conflict("protected", "the default site 'hq' cannot be deleted")
            used = (await conn.execute(select(Client.id).where(Client.site_id == entity_id)
                                       .limit(1))).first()
            if used is not None:
                raise Conflict("in_use", f"site '{current}' still has clients; move them "
                               "first")
            await conn.execute(delete(Site).where(Site.id == entity_id))
