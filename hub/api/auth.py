"""Logging in: a token for a username and password, or for a user API key."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy import select

from core import refusals
from core.errors import ApiError
from core.version import VERSION
from hub import permissions
from hub.api.common import Route, client_ip, context, json_response, read_body, runtime
from hub.entities import entity
from hub.keys import match_key
from hub.runtime import Ctx, Runtime
from hub.security import Principal, password_version, verify_secret_async
from hub.storage.models import User, iso, utcnow
from protocol import PROTOCOL_VERSION, TokenRequest, TokenResponse, routes

# verified when the username is unknown, so both failures take the same time
DUMMY_HASH = ("$argon2id$v=19$m=19456,t=2,p=1$1twZRIK3nW63WScuBFvB0g$"
               "NJYg9hrsKQ3Lvg1ySwJoJ+xl7LkmUNZYD7gS5Ia5BK4")


async def token(request: web.Request) -> web.Response:
    rt = runtime(request)
    body = await read_body(request, TokenRequest)
    source = client_ip(request)
    rt.logins.check(source)
    try:
        user_id, password_hash, until = await authenticate(rt, body)
    except ApiError as exc:
        if exc.status == 401:
            rt.logins.failed(source)
        raise
    issued = rt.tokens.issue("user", user_id, password_version(password_hash),
                             until.replace(tzinfo=UTC) if until is not None else None)
    user = await entity("user").get(await Ctx.of(rt, Principal("user", user_id)), user_id)
    return json_response(TokenResponse(token=issued.token,
                                       expires=iso(issued.expires.replace(tzinfo=None)) or "",
                                       user=user))


async def authenticate(rt: Runtime, body: TokenRequest
                        ) -> tuple[str, str, datetime | None]:
    """The user id and password hash for these credentials (the accsyn API's login
    checks its API keys here too), and when an API key among
    them expires (its token must not outlive it); 401 when they are wrong."""
    if body.api_key is not None:
        if body.password is not None:
            raise ApiError(422, "invalid_body", "send either api_key or username and password")
        key = await match_key(rt, body.api_key)
        if key is None or key.user_id is None:
            raise ApiError(401, "bad_credentials", "API key is not valid")
        user_id = key.user_id
        async with rt.db.read() as conn:
            password_hash = (await conn.execute(select(User.password_hash)
                                                .where(User.id == user_id))).scalar_one()
        # (refused with 401: the error middleware logs and counts it)
        if key.password_version != password_version(password_hash):
            raise ApiError(401, "bad_credentials", "API key is not valid any more: its user's "
                           "password changed after it was made; make a new one")
        if key.expires is not None and key.expires <= utcnow():
            raise ApiError(401, "bad_credentials", "API key expired; make a new one")
        return user_id, password_hash, key.expires
    else:
        if not body.username or body.password is None:
            raise ApiError(422, "invalid_body", "send username and password, or api_key")
        async with rt.db.read() as conn:
            row = (await conn.execute(select(User.id, User.password_hash,
                                             User.password_change_required)
                                      .where(User.username == body.username))).first()
        ok = await verify_secret_async(row.password_hash if row else DUMMY_HASH, body.password)
        if row is None or not ok:
            raise ApiError(401, "bad_credentials", "wrong username or password")
        if row.password_change_required:
            raise ApiError(403, "password_change_required", "this password must be changed "
                           "before use: POST /api/v1/password/change with username, password "
                           "and new_password")
        user_id, password_hash = row.id, row.password_hash
    return user_id, password_hash, None


async def version(request: web.Request) -> web.Response:
    rt = runtime(request)
    return json_response({"version": VERSION, "protocol": PROTOCOL_VERSION,
                          "description": rt.config.description,
                          "environment": rt.config.environment_type(rt.section)})


async def refused(request: web.Request) -> web.Response:
    """What this hub process has refused since it started, by kind (root only)."""
    ctx = await context(request)
    if ctx.principal.run is not None or permissions.role_id(permissions.ROOT) \
            not in ctx.caller.roles:
        raise ApiError(403, "forbidden", "only root reads the hub's refusals",
                       {"field": None, "rule": None})
    return json_response({"refusals": refusals.counts()})


ROUTES = [
    Route.serving(routes.TOKEN, token, "Log in: a token for username and password, or an "
                  "API key"),
    Route.serving(routes.VERSION, version, "The hub's version and protocol"),
    Route("GET", "/refusals", refused, "Refusals of this hub process by kind (root only)"),
]
