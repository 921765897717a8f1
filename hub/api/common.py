"""What every handler shares: JSON in and out, errors, who is calling.

Every error answer is ``{"error": {"code", "message", "field"?, "position"?}}``
with a 4xx status naming what is wrong; unexpected failures are 500 with no
internals shown (they are logged).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import structlog
from aiohttp import web
from sqlalchemy import select

from core import refusals
from core.errors import ApiError, QueryError
from hub.api.errors import as_api_error
from hub.bodies import invalid
from hub.errors import Refusal, Unauthenticated
from hub.jobs.status import RUNNING_TASK
from hub.runtime import Ctx, Runtime
from hub.security import Principal, password_version
from hub.storage.models import Task, User
from protocol.routes import Endpoint, Nothing

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


async def read_json(request: web.Request) -> Any:
    """The body as plain JSON; 400 if it is not JSON, 413 if too large."""
    return await read_body(request, Any)


def refuse_nul(value: Any, where: str = "") -> None:
    """422 naming the first field whose text (or key) holds a NUL character."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiError(422, "invalid_value", f"field '{where or 'body'}' holds a NUL "
                           "character (\\u0000); text cannot contain one",
                           {"field": where or None})
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key, where)
            refuse_nul(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            refuse_nul(item, f"{where}[{n}]")


async def read_body(request: web.Request, kind: type[T], *, nul: bool = False) -> T:
    """The body validated into ``kind``; 400 if it is not JSON, 422 naming the field on a
    mismatch, 413 if too large, 422 naming the field when a text holds a NUL character
    (PostgreSQL cannot store one) unless ``nul`` (a task's output: the hub cleans it)."""
    body = await request.read()
    if not body:
        raise ApiError(400, "empty_body", "request body is empty; expected a JSON object")
    if not nul and b"\\u0000" in body:  # JSON writes NUL only so; look closer
        with contextlib.suppress(msgspec.DecodeError, RecursionError):
            refuse_nul(msgspec.json.decode(body))
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "request body is nested too deeply") from None


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


async def context(request: web.Request) -> Ctx:
    """The caller's context; a user's token counts only while that user and password stand."""
    return await context_of(runtime(request), principal(request))


async def context_of(rt: Runtime, who: Principal) -> Ctx:
    """The context of a verified token's principal, under the rules of ``context`` (the
    accsyn API's sessions are tokens too, checked alike)."""
    async with rt.db.read() as conn:
        if who.kind == "user":
            stored = (await conn.execute(select(User.password_hash)
                                         .where(User.id == who.id))).scalar()
            if stored is None:
                raise ApiError(401, "token_revoked", "the user of this token no longer exists")
            if password_version(stored) != who.version:
                raise ApiError(401, "token_revoked", "the password changed after this token "
                               "was issued; log in again")
            if who.run is not None:
                status = (await conn.execute(select(Task.status)
                                             .where(Task.id == who.run))).scalar()
                if status not in RUNNING_TASK:
                    raise ApiError(401, "token_expired", "the run this token was issued to "
                                   "has ended; its token ended with it")
        return await Ctx.of(rt, who, conn)


def client_ip(request: web.Request) -> str:
    """The caller's address.

    Behind trusted proxies, X-Forwarded-For is read from the right: each proxy
    appends the address it saw, so the first one that is not a trusted proxy
    is the client; what the client itself put further left is not believed.
    """
    trusted = runtime(request).config.trusted_proxies
    address = request.remote or ""
    if address not in trusted:
        return address
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage: keep the last address we can vouch for
        address = hop
        if hop not in trusted:
            break
    return address


def who_asked(request: web.Request) -> str:
    """The caller as a refusal's log names it: its principal, else where it came from."""
    try:
        who = principal(request)
    except (ApiError, Unauthenticated):
        return f"anonymous at {client_ip(request)}"
    return f"{who.kind} {who.id}" + (f" (run {who.run})" if who.run else "")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as an error answer: the hub's refusals (``hub/errors.py``) with the
    status of their kind, the API's own errors as they are, anything else as a 500."""
    try:
        try:
            return await handler(request)
        except Refusal as refusal:
            raise as_api_error(refusal) from refusal
    except ApiError as exc:
        if exc.status in (401, 403, 429):  # SECURITY.md: every refusal logged and counted
            refusals.refused(exc.code, who_asked(request), exc.message,
                             method=request.method, path=request.path)
        response = error_response(exc.status, exc.code, exc.message,
                                  field=exc.details.get("field"), rule=exc.details.get("rule"))
        if "retry_after" in exc.details:
            response.headers["Retry-After"] = str(exc.details["retry_after"])
        return response
    except QueryError as exc:
        return error_response(422, "query_error", str(exc), position=exc.position)
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
    body: Any = None  # a msgspec type, "object" (any JSON object) or "text"
    response: Any = None  # a msgspec type or "text"
    status: int = 200
    errors: tuple[int, ...] = (400, 401, 403, 404, 409, 413, 422)

    @classmethod
    def serving(cls, endpoint: Endpoint[Any, Any], handler: Handler, summary: str) -> Route:
        """The route of one of the agent's endpoints: method, path, who may call, request
        and answer types all come from ``protocol.routes``, the table the agent calls by."""
        body: Any = (None if endpoint.request is Nothing
                     else "text" if endpoint.request is bytes else endpoint.request)
        return cls(endpoint.method, endpoint.path, handler, summary, auth=endpoint.auth,
                   body=body, response=endpoint.answer)
