"""The OpenAPI 3.1 document, built from the same route table aiohttp serves."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from core.version import VERSION
from hub.api.common import Route
from protocol import ErrorBody

_STATUS_TEXT = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden",
                404: "Not found", 409: "Conflict", 413: "Body too large",
                422: "Invalid field"}


def build(routes: list[Route], prefix: str) -> dict[str, Any]:
    types = {r.body for r in routes if isinstance(r.body, type)}
    types |= {r.response for r in routes if isinstance(r.response, type)}
    types.add(ErrorBody)
    ordered = sorted(types, key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(
        ordered, ref_template="#/components/schemas/{name}")
    ref_of = dict(zip(ordered, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__ +
                              "_" + route.method.lower()}
        params = re.findall(r"{(\w+)}", route.path)
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": {"type": "string"}} for p in params]
        if route.body == "text":
            op["requestBody"] = {"required": True, "content": {
                "text/plain": {"schema": {"type": "string"}}}}
        elif route.body is not None:
            schema = ref_of[route.body] if isinstance(route.body, type) else {"type": "object"}
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": schema}}}
        if route.response == "text":
            content = {"text/plain": {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": ref_of.get(route.response,
                                                                 {"type": "object"})}}
        op["responses"] = {str(route.status): {"description": "Success", "content": content}}
        for status in route.errors:
            if route.auth is None and status in (401, 403):
                continue
            op["responses"][str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": ref_of[ErrorBody]}}}
        if route.auth is not None:
            op["security"] = [{"bearer": []}]
        paths.setdefault(prefix + route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Ferry hub API", "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }
