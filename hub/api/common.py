"""What every handler shares: JSON in and out, errors, who is calling.

Every error answer is ``{"error": {"code", "message", "field"?, "position"?}}``
with a 4xx status naming what is wrong; unexpected failures are 500 with no
internals shown (they are logged).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import structlog
from aiohttp import web

from ferry.errors import ApiError, QueryError
from hub.runtime import Ctx, Runtime
from hub.security import Principal

log = structlog.get_logger("hub.api")

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_encoder = msgspec.json.Encoder()


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status,
                        content_type="application/json")


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    detail: dict[str, Any] = {"code": code, "message": message}
    detail.update({k: v for k, v in extra.items() if v is not None})
    return json_response({"error": detail}, status)


_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


async def read_json(request: web.Request) -> Any:
    """The body as plain JSON; 400 if it is not JSON, 413 if too large."""
    body = await request.read()
    if not body:
        raise ApiError(400, "empty_body", "request body is empty; expected a JSON object")
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None


async def read_body(request: web.Request, kind: type[T]) -> T:
    """The body validated into ``kind``; 422 naming the field on a mismatch."""
    body = await request.read()
    if not body:
        raise ApiError(400, "empty_body", "request body is empty; expected a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = _AT.search(text)
        field = at.group("path") if at else None
        named = re.search(r"(?:unknown|missing required) field `([^`]+)`", text)
        if named:
            field = f"{field}.{named.group(1)}" if field else named.group(1)
        message = _AT.sub("", text)
        raise ApiError(422, "invalid_body", f"{message}" + (f" (field '{field}')" if field else ""),
                       {"field": field}) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None


def runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def principal(request: web.Request) -> Principal:
    """Who is calling, from ``Authorization: Bearer <token>``; 401 otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise ApiError(401, "no_credentials", "missing credentials: send 'Authorization: Bearer "
                       "<token>' (get a token from POST /api/v1/token)")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "bad_credentials", "Authorization header must be 'Bearer <token>'")
    return runtime(request).tokens.verify(token.strip())


def context(request: web.Request) -> Ctx:
    return Ctx.of(runtime(request), principal(request))


def client_ip(request: web.Request) -> str:
    """The caller's address; X-Forwarded-For counts only from a trusted proxy."""
    remote = request.remote or ""
    if remote in runtime(request).config.trusted_proxies:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return remote


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, field=exc.details.get("field"))
    except QueryError as exc:
        return error_response(400, "query_error", str(exc), position=exc.position)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "body_too_large", f"request body is larger than the hub "
                              f"accepts ({exc.text})")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason
        if exc.status == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} is not allowed on {request.path}"
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), message)
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        return error_response(500, "internal_error", "the hub failed to handle this request; "
                              "see the hub's log")


@dataclass(frozen=True)
class Route:
    """One endpoint: how aiohttp routes it and how the OpenAPI document shows it."""

    method: str
    path: str
    handler: Handler
    summary: str
    auth: str | None = "user"  # "user", "client", "any" or None
    body: Any = None  # a msgspec type, or "object" for a free JSON object
    response: Any = None
    status: int = 200
    errors: tuple[int, ...] = (400, 401, 403, 404, 409, 413, 422)
