"""Who is calling: the client's API key at login, its session id on every call after.

The login's ``Authorization: basic <b64 user>:<b64 key>`` is checked as ``POST
/api/v1/token`` checks an API key (``hub.api.auth.authenticate``: its user, its
password's version, its expiry; failed logins counted per address), and the name given
must be the key's user's username or email. The session id answered is a Ferry access
token for that user; each event's ``session`` is verified as a bearer token is. When it
has expired, the key the client sends with every call logs it in again, so that a
script running for days goes on. The workspace named must be the hub's name or its
``workspace_alias``; which names those are is not told to a caller who has none.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC

from aiohttp import web
from sqlalchemy import select

from core.errors import ApiError
from hub.api.auth import authenticate
from hub.api.common import client_ip, context_of, runtime
from hub.errors import Unauthenticated
from hub.runtime import Ctx
from hub.security import Principal, password_version
from hub.storage.models import User
from protocol import TokenRequest

WORKSPACES: web.AppKey[frozenset[str]] = web.AppKey("accsyn_workspaces", frozenset)
NOT_VALID = "the username or API key is not valid"


def check_workspace(request: web.Request, given: str | None) -> None:
    names = request.app[WORKSPACES]
    workspace = (given or request.headers.get("X-Accsyn-Workspace") or "").strip().lower()
    if not workspace:
        raise Unauthenticated("no_workspace", "no workspace given: name this hub (its name, "
                              "or its accsyn_api workspace_alias) as the workspace")
    if workspace not in names:
        raise Unauthenticated("wrong_workspace", f"workspace '{workspace[:64]}' is not served "
                              "here: give this hub's name, or its accsyn_api "
                              "workspace_alias, as the workspace")


def _credentials(request: web.Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    user, sep, key = value.strip().partition(":")
    if scheme.lower() != "basic" or not sep:
        raise Unauthenticated("no_credentials", "send the username and API key as the "
                              "client does (Authorization: basic <user>:<key>, each base64)")
    try:
        return (base64.b64decode(user, validate=True).decode(),
                base64.b64decode(key, validate=True).decode())
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("bad_credentials", "the Authorization header's username and "
                              "API key are not base64 text") from None


@dataclass(frozen=True)
class Login:
    ctx: Ctx
    session_id: str  # a Ferry access token of the user
    role: str  # the client's clearance: admin for root, else the user's role's name


async def log_in(request: web.Request) -> Login:
    """The key's user's context, a new session id and role; ``Unauthenticated`` (counted
    against the caller's address) for a wrong name or key."""
    rt = runtime(request)
    name, key = _credentials(request)
    source = client_ip(request)
    rt.logins.check(source)
    try:
        if not key or len(key) > 512:
            raise Unauthenticated("bad_credentials", NOT_VALID)
        try:
            user_id, password_hash, until = await authenticate(rt, TokenRequest(api_key=key))
        except ApiError as exc:
            if exc.status != 401:
                raise
            # expired, or made under an older password: said as it is; else not told apart
            raise Unauthenticated(exc.code, NOT_VALID if exc.message == "API key is not "
                                  "valid" else exc.message) from None
        async with rt.db.read() as conn:
            row = (await conn.execute(select(User.username, User.email, User.role)
                                      .where(User.id == user_id))).one()
        if name.strip().lower() not in {row.username.lower(), (row.email or "").lower()}:
            raise Unauthenticated("bad_credentials", NOT_VALID)
    except Unauthenticated:
        rt.logins.failed(source)
        raise
    version = password_version(password_hash)
    issued = rt.tokens.issue("user", user_id, version,
                             until.replace(tzinfo=UTC) if until is not None else None)
    ctx = await context_of(rt, Principal("user", user_id, version))
    return Login(ctx, issued.token, "admin" if row.role == "root" else row.role)


async def caller(request: web.Request, session: str | None) -> Ctx:
    """The context of an event: its session's, else (expired, or none) the key's."""
    if session:
        rt = runtime(request)
        try:
            return await context_of(rt, rt.tokens.verify(session))
        except (Unauthenticated, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status != 401:
                raise
    return (await log_in(request)).ctx
