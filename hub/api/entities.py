"""Queries and the records behind them: find, create, get, update, delete."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from ferry.errors import ApiError
from hub.api.common import Route, context, json_response, read_body, read_json, refuse_nul
from hub.entities import entity
from hub.query import parse


class FindRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]
    finished: bool = False
    archived: bool = False
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    offset: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] = 0


class FindResponse(msgspec.Struct, kw_only=True):
    result: list[dict[str, Any]]


async def _find(request: web.Request, req: FindRequest) -> web.Response:
    refuse_nul(req.query, "query")  # as given in the URL
    ctx = await context(request)
    query = parse(req.query)
    found = await entity(query.entity).find(ctx, query, limit=req.limit, offset=req.offset,
                                            finished=req.finished, archived=req.archived)
    return json_response({"result": found})


async def find_post(request: web.Request) -> web.Response:
    return await _find(request, await read_body(request, FindRequest))


def _flag(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "false").lower()
    if text not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid_parameter", f"parameter '{name}' must be true or false")
    return text in ("true", "1")


def _int(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"parameter '{name}' must be an integer") from None


async def find_get(request: web.Request) -> web.Response:
    query = request.query.get("query")
    if not query:
        raise ApiError(400, "missing_parameter", "parameter 'query' is required, "
                       "e.g. ?query=Client where type=1")
    params: dict[str, Any] = {"query": query, "finished": _flag(request, "finished"),
                              "archived": _flag(request, "archived")}
    for name in ("limit", "offset"):
        value = _int(request, name)
        if value is not None:
            params[name] = value
    try:
        find = msgspec.convert(params, FindRequest)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_parameter", str(exc).replace("- at `$.", "(parameter `"
                       ) + ")") from None
    return await _find(request, find)


async def create(request: web.Request) -> web.Response:
    ctx = await context(request)
    kind = entity(request.match_info["entity"])
    return json_response(await kind.create(ctx, await read_json(request)), 201)


async def get(request: web.Request) -> web.Response:
    ctx = await context(request)
    kind = entity(request.match_info["entity"])
    return json_response(await kind.get(ctx, request.match_info["id"]))


async def related(request: web.Request) -> web.Response:
    """Records related to one: an organization's users, a collaboration's nodes…"""
    ctx = await context(request)
    kind = entity(request.match_info["entity"])
    entity_id, name = request.match_info["id"], request.match_info["relation"]
    relations = kind.relations(entity_id)
    if name not in relations:
        known = ", ".join(relations) or "none"
        raise ApiError(404, "unknown_relation", f"{kind.name} has no relation '{name}' "
                       f"(known: {known})")
    await kind.get(ctx, entity_id)  # 404, or 403 naming the rule, before any related row
    target, where = relations[name]
    limit, offset = _int(request, "limit"), _int(request, "offset") or 0
    if (limit is not None and limit < 1) or offset < 0:
        raise ApiError(400, "invalid_parameter", "limit must be positive, offset not negative")
    return json_response({"result": await entity(target).rows(ctx, where, limit, offset)})


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
    Route("POST", "/find", find_post, "Run a query, e.g. 'Client where type=1'",
          body=FindRequest, response=FindResponse),
    Route("GET", "/find", find_get, "Run a query given as ?query=…", response=FindResponse),
    Route("POST", "/{entity}", create, "Create a record (Organization, Collaboration, Role, "
          "User, Node, Site, Share, Job, ApiKey)",
          body="object", status=201),
    Route("GET", "/{entity}/{id}", get, "One record by id"),
    Route("GET", "/{entity}/{id}/{relation}", related, "Related records, e.g. "
          "/organization/<id>/users, /collaboration/<id>/nodes", response=FindResponse),
    Route("PATCH", "/{entity}/{id}", patch, "Change writable fields of a record", body="object"),
    Route("DELETE", "/{entity}/{id}", remove, "Delete a record"),
]
