"""The accsyn API's application: ``PUT /api/v3/api/login`` and ``/api/v3/event``, on a
TLS listener of their own (``accsyn_api`` in the hub's config), in the hub's process,
on its runtime and database.

Every failure is a ``{"message": ...}`` naming the call: the hub's refusals with their
status, a malformed event or query with Ferry's own words, what Ferry does not have with
why, and anything unexpected as a message pointing at the hub's log (which has the
traceback). The client raises each as its ``AccsynException``.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from core import refusals
from core.errors import ApiError, QueryError
from hub.accsyn import calls
from hub.accsyn.files import file_call
from hub.accsyn.login import WORKSPACES, caller, check_workspace, log_in
from hub.accsyn.wire import CALL, answer, message, read_event
from hub.api.common import RUNTIME, client_ip
from hub.api.errors import status_of
from hub.api.listing import Listings
from hub.errors import NotAllowed, Refusal
from hub.runtime import Ctx, Runtime

log = structlog.get_logger("hub.accsyn")

PREFIX = "/api/v3"
LISTINGS: web.AppKey[Listings] = web.AppKey("accsyn_listings", Listings)
ENTITY_CALLS = {"find": ("GET", calls.find), "create": ("POST", calls.create),
                "edit": ("PUT", calls.edit), "delete": ("DELETE", calls.delete)}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def messages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as the client's ``{"message": ...}``."""
    call = request.get(CALL, "login" if request.path.endswith("/login") else "event")
    try:
        return await handler(request)
    except (Refusal, ApiError) as exc:
        status = exc.status if isinstance(exc, ApiError) else status_of(exc)
        if status in (401, 403, 429):  # SECURITY.md: every refusal logged and counted
            refusals.refused(exc.code, f"accsyn client at {client_ip(request)}", exc.message,
                             method=request.method, path=request.path)
        return message(request.get(CALL, call), exc.message, status)
    except QueryError as exc:
        return message(request.get(CALL, call), str(exc), 422)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status in (404, 405):
            return message(call, f"no such call: {request.method} {request.path} (Ferry "
                           f"serves PUT {PREFIX}/api/login and {PREFIX}/event)", exc.status)
        return message(call, exc.reason, exc.status)
    except Exception:
        log.exception("accsyn call failed", call=request.get(CALL, call), path=request.path)
        return message(request.get(CALL, call), "the hub failed to handle this call; see "
                       "the hub's log", 500)


async def login(request: web.Request) -> web.Response:
    check_workspace(request, None)
    done = await log_in(request)
    return answer({"role": done.role, "id": done.ctx.principal.id,
                   "session_id": done.session_id})


async def event(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    got = await read_event(request, rt.config.max_body_size)
    request[CALL] = got.uri if isinstance(got.uri, str) and len(got.uri) <= 200 else "event"
    check_workspace(request, got.workspace)
    ctx = await caller(request, got.session)
    return answer(await _dispatch(request, ctx, got))


async def _dispatch(request: web.Request, ctx: Ctx, got: Any) -> Any:
    uri = got.uri.strip("/")
    if uri == "entitytypes":
        return calls.entitytypes()
    if uri == "attributes":
        return calls.attributes(got)
    if uri == "workspace/file":
        return await file_call(ctx, got)
    name, _, action = uri.partition("/")
    method, call = ENTITY_CALLS.get(action, (None, None))
    if call is None or "/" in action:
        raise NotAllowed("not_supported", "not supported by Ferry because it has no such "
                         "call (it serves find, create, edit, delete, entitytypes, "
                         "attributes and workspace/file; docs/ACCSYN.md)")
    if request.method != method:
        raise NotAllowed("not_supported", f"{action} is sent with {method}, not "
                         f"{request.method}")
    if call is calls.find:
        return await calls.find(ctx, request.app[LISTINGS], name, got)
    return await call(ctx, name, got)  # type: ignore[operator]


def make_app(rt: Runtime, workspaces: frozenset[str]) -> web.Application:
    app = web.Application(middlewares=[messages], client_max_size=rt.config.max_body_size)
    app[RUNTIME] = rt
    app[WORKSPACES] = frozenset(w.lower() for w in workspaces)
    app[LISTINGS] = Listings(rt.config.find_concurrent_per_user, rt.config.find_concurrent)
    app.router.add_put(PREFIX + "/api/login", login)
    for method in ("GET", "POST", "PUT", "DELETE"):
        app.router.add_route(method, PREFIX + "/event", event)
    return app


async def serve(rt: Runtime, workspaces: frozenset[str], context: ssl.SSLContext,
                ip: str, port: int, shutdown_timeout: float) -> tuple[web.AppRunner, int]:
    """Start the listener; its runner (to clean up) and the port it listens on."""
    runner = web.AppRunner(make_app(rt, workspaces), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, ip, port, ssl_context=context,
                       shutdown_timeout=shutdown_timeout)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    sockets = getattr(site._server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1] if sockets else port
