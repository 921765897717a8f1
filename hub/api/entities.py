"""Queries and the records behind them: find, create, get, update, delete."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from core.errors import ApiError
from hub.api.common import Route, context, json_response, read_body, read_json, refuse_nul
from hub.api.listing import (
    Listings,
    ListResponse,
    PageRequest,
    answer,
    from_url,
    listing_slot,
    page_of,
)
from hub.entities import entity
from hub.query import parse

LIST_ERRORS = (400, 401, 403, 404, 422, 429)


class FindRequest(PageRequest, forbid_unknown_fields=True, kw_only=True):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]
    finished: bool = False
    archived: bool = False
    inactive: bool = False  # deleted jobs (accsyn: deactivated records)


async def _find(request: web.Request, listings: Listings, req: FindRequest) -> web.Response:
    refuse_nul(req.query, "query")  # as given in the URL
    ctx = await context(request)
    query = parse(req.query)
    kind = entity(query.entity)
    page = page_of(kind, req, ctx.rt.config)
    async with listings.turn():
        return answer(await kind.find(ctx, query, page, finished=req.finished,
                                      archived=req.archived, inactive=req.inactive))


async def find_post(request: web.Request) -> web.Response:
    async with listing_slot(request) as listings:
        return await _find(request, listings, await read_body(request, FindRequest))


def _flag(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "false").lower()
    if text not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid_parameter", f"parameter '{name}' must be true or false",
                       {"field": name})
    return text in ("true", "1")


async def find_get(request: web.Request) -> web.Response:
    query = request.query.get("query")
    if not query:
        raise ApiError(400, "missing_parameter", "parameter 'query' is required, "
                       "e.g. ?query=Client where type=1")
    async with listing_slot(request) as listings:
        asked = from_url(request, FindRequest, query=query, finished=_flag(request, "finished"),
                         archived=_flag(request, "archived"),
                         inactive=_flag(request, "inactive"))
        return await _find(request, listings, asked)


async def create(request: web.Request) -> web.Response:
    ctx = await context(request)
    kind = entity(request.match_info["entity"])
    return json_response(await kind.create(ctx, await read_json(request)), 201)


async def get(request: web.Request) -> web.Response:
    ctx = await context(request)
    kind = entity(request.match_info["entity"])
    return json_response(await kind.get(ctx, request.match_info["id"]))


async def related(request: web.Request) -> web.Response:
    """Records related to one, a page at a time: an organization's users, a
    collaboration's tasks…"""
    async with listing_slot(request) as listings:
        ctx = await context(request)
        kind = entity(request.match_info["entity"])
        entity_id, name = request.match_info["id"], request.match_info["relation"]
        relations = kind.relations(entity_id)
        if name not in relations:
            known = ", ".join(relations) or "none"
            raise ApiError(404, "unknown_relation", f"{kind.name} has no relation '{name}' "
                           f"(known: {known})")
        target, where = relations[name]
        page = page_of(entity(target), from_url(request, PageRequest), ctx.rt.config)
        await kind.get(ctx, entity_id)  # 404, or 403 naming the rule, before any related row
        async with listings.turn():
            return answer(await entity(target).listing(ctx, where, page))


async def patch(request: web.Request) -> web.Response:
    ctx = await context(request)
    kind = entity(request.match_info["entity"])
    return json_response(await kind.update(ctx, request.match_info["id"], await read_json(request)))


async def remove(request: web.Request) -> web.Response:
    ctx = await context(request)
    kind = entity(request.match_info["entity"])
    await kind.delete(ctx, request.match_info["id"])
    return json_response({"success": True})


ROUTES = [
    Route("POST", "/find", find_post, "Run a query, e.g. 'Client where type=1': one page of "
          "records", body=FindRequest, response=ListResponse, errors=LIST_ERRORS),
    Route("GET", "/find", find_get, "Run a query given as ?query=…&limit=…&cursor=…",
          response=ListResponse, errors=LIST_ERRORS),
    Route("POST", "/{entity}", create, "Create a record (Organization, Collaboration, Role, "
          "User, Node, Site, Share, Job, Queue, Limit, Engine, Webhook, ApiKey)",
          body="object", status=201),
    Route("GET", "/{entity}/{id}", get, "One record by id"),
    Route("GET", "/{entity}/{id}/{relation}", related, "Related records, a page at a time, "
          "e.g. /organization/<id>/users, /collaboration/<id>/nodes", response=ListResponse,
          errors=LIST_ERRORS),
    Route("PATCH", "/{entity}/{id}", patch, "Change writable fields of a record", body="object"),
    Route("DELETE", "/{entity}/{id}", remove, "Delete a record"),
]
