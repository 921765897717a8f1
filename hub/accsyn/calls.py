"""The client's entity calls, each onto the entity layer the native API calls.

===================  =====================================================
event ``uri``         Ferry
===================  =====================================================
``<entity>/find``     ``Entity.find`` (``get`` with an ``id``), every page
``<entity>/create``   ``Entity.create``; ``task/create``: ``TaskEntity.add``
``<entity>/edit``     ``Entity.update``; a list: ``TaskEntity.update_many``
``<entity>/delete``   ``Entity.delete``
``entitytypes``       the entities' names
``attributes``        an entity's fields
===================  =====================================================

A client's query comes lower-cased (``Job where code="X"`` arrives as
``code="x"``): Ferry's names and codes compare without regard to case, and ids are
lower-case, so the reference's queries find what they name.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from hub.accsyn.wire import Event, accsyn_times
from hub.api.listing import Listings
from hub.entities import ENTITIES, entity
from hub.entities.base import Entity
from hub.entities.paging import Page, decode_cursor
from hub.entities.tasks import TaskEntity
from hub.errors import Invalid, NotAllowed, NotFound
from hub.query import parse
from hub.runtime import Ctx

TASKS = TaskEntity()
_ID = re.compile(r"^[0-9a-z][0-9a-z_-]{0,63}$")
FLAGS = ("finished", "archived", "inactive")


def _data(event: Event, call: str) -> dict[str, Any]:
    if event.data is None:
        return {}
    if not isinstance(event.data, dict):
        raise Invalid("invalid_body", f"{call} takes an object as data", field="data")
    return event.data


def _id(event: Event, what: str) -> str:
    if not isinstance(event.id, str) or not event.id:
        raise Invalid("missing_field", f"give the {what}'s id (entityid)", field="id")
    return event.id


async def find(ctx: Ctx, listings: Listings, name: str, event: Event) -> list[dict[str, Any]]:
    kind = entity(name)
    data = _data(event, "find")
    unknown = set(data) - {*FLAGS, "parent", "limit", "skip", "attributes",
                           "single_entity_query"}
    if unknown:
        raise Invalid("unknown_field", f"find takes no '{sorted(unknown)[0]}'",
                      field=sorted(unknown)[0])
    flags = {f: _flag(data, f) for f in FLAGS}
    if event.id is not None:  # the client's get_entity: one record, or none
        try:
            return [accsyn_times(await kind.get(ctx, _id(event, kind.name)))]
        except NotFound:
            return []
    text = _query(kind, event.query, data.get("parent"))
    limit = _count(data, "limit")
    if data.get("single_entity_query") is True:
        limit = 1
    names = data.get("attributes") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise Invalid("wrong_type", "'attributes' must be a list of field names",
                      field="attributes")
    config = ctx.rt.config
    most = config.find_page_max
    if limit is not None and limit > most:
        raise Invalid("too_large", f"'limit' {limit} is above the most records one answer "
                      f"holds ({most}, the hub's find_page_max): page with limit and skip",
                      field="limit")
    want = most + 1 if limit is None else limit  # one more tells that more match
    page = Page(limit=min(want, most), skip=_count(data, "skip") or 0,
                attributes=kind.attributes(names), max_bytes=config.find_page_bytes)
    query = parse(text)
    records: list[dict[str, Any]] = []
    async with listings.slot(ctx.principal.kind, ctx.principal.id):
        while len(records) < want:
            async with listings.turn():
                listing = await kind.find(ctx, query, page, **flags)
            records.extend(listing.records)
            if listing.next is None:
                break
            page = replace(page, after=decode_cursor(listing.next), skip=0,
                           limit=min(want - len(records), most))
    if limit is None and len(records) > most:
        raise Invalid("too_many", f"more than {most} records match (the hub's "
                      "find_page_max): page through them with limit and skip",
                      field="limit")
    return [accsyn_times(r) for r in records[:want]]


def _query(kind: Entity, expression: str | None, parent: Any) -> str:
    """Ferry's query text: the entity, the client's expression, and a task's job."""
    conditions = []
    if parent is not None:
        if kind is not entity("task"):
            raise Invalid("invalid_value", f"entityid (parent) applies to tasks (their job's "
                          f"id), not to {kind.name}", field="parent")
        if not isinstance(parent, str) or not _ID.match(parent):
            raise Invalid("invalid_value", "entityid (parent) is not a job id", field="parent")
        conditions.append(f"job.id={parent}")
    if expression is not None:
        if not isinstance(expression, str):
            raise Invalid("wrong_type", "the query must be text", field="query")
        conditions.append(f"({expression})" if conditions else expression)
    return f"{kind.name} where {' and '.join(conditions)}" if conditions else kind.name


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise Invalid("wrong_type", f"'{name}' must be true or false", field=name)
    return value


def _count(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid("wrong_type", f"'{name}' must be a whole number, 0 or more", field=name)
    return value


async def create(ctx: Ctx, name: str, event: Event) -> Any:
    data = dict(_data(event, "create"))
    if data.pop("replace_duplicates", None):
        raise NotAllowed("not_supported", "replace_duplicates is not supported by Ferry "
                         "because a task's source and destination never change (jobs.rst): "
                         "exclude the task and add a new one")
    if entity(name) is entity("task"):
        added = await TASKS.add(ctx, _id(event, "job"), data)
        return added  # {"success": true, "created": [...], "retried": [...]}
    if event.id is not None:
        raise Invalid("invalid_value", f"entityid applies to tasks (their job), not to "
                      f"{entity(name).name}", field="id")
    return [accsyn_times(await entity(name).create(ctx, data))]


async def edit(ctx: Ctx, name: str, event: Event) -> list[dict[str, Any]]:
    kind = entity(name)
    if isinstance(event.data, list):  # update_many: tasks of the job ``id``
        if kind is not entity("task"):
            raise Invalid("invalid_body", f"a list of changes applies to tasks, not to "
                          f"{kind.name}", field="data")
        changed = await TASKS.update_many(ctx, _id(event, "job"), {"tasks": event.data})
        return [accsyn_times(r) for r in changed]
    return [accsyn_times(await kind.update(ctx, _id(event, kind.name),
                                           _data(event, "update")))]


async def delete(ctx: Ctx, name: str, event: Event) -> bool:
    kind = entity(name)
    options = _data(event, "delete_one")
    if options:
        raise NotAllowed("not_supported", f"delete options ({', '.join(sorted(options))}) "
                         "are not supported by Ferry because a record is deleted one way only")
    await kind.delete(ctx, _id(event, kind.name))
    return True


def entitytypes() -> list[str]:
    return sorted(ENTITIES)


def attributes(event: Event) -> list[str]:
    data = _data(event, "attributes")
    if data.get("create") or data.get("update"):
        raise NotAllowed("not_supported", "the attributes of create and update are not "
                         "supported by Ferry because its records list the fields they show "
                         "alone (docs/PROTOCOL.md names what each takes)")
    name = data.get("entitytype")
    if not isinstance(name, str):
        raise Invalid("missing_field", "name the entitytype", field="entitytype")
    return list(entity(name).fields)
