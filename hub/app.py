"""The aiohttp application: routes, middleware, the OpenAPI document, and the web
dashboard at ``/`` (outside the API prefix; it reads through the API like any client)."""

from __future__ import annotations

from aiohttp import web

from hub.api import (
    agents,
    auth,
    dashboard,
    entities,
    events,
    files,
    jobs,
    links,
    openapi,
    passwords,
    work,
)
from hub.api.common import RUNTIME, Route, errors, json_response
from hub.checkins import CheckinWriter
from hub.dashboard import pages
from hub.dashboard.history import HISTORY, MetricsHistory
from hub.jobs.dispatch import Dispatcher
from hub.metrics import add_routes as add_metrics
from hub.metrics import counting_middleware
from hub.runtime import Runtime

# fixed paths first: "/{entity}" would otherwise shadow them
ROUTES: list[Route] = [*auth.ROUTES, *passwords.ROUTES, *agents.ROUTES, *work.ROUTES, *jobs.ROUTES,
                       *links.ROUTES, *files.ROUTES, *dashboard.ROUTES, *events.ROUTES, *entities.ROUTES]


def make_app(rt: Runtime, writer: CheckinWriter, dispatcher: Dispatcher) -> web.Application:
    # the counting middleware inside the errors one: a request that fails counts nothing
    app = web.Application(middlewares=[errors, counting_middleware(rt)],
                          client_max_size=rt.config.max_body_size)
    app[RUNTIME] = rt
    app[agents.WRITER] = writer
    app[work.DISPATCHER] = dispatcher
    app[HISTORY] = MetricsHistory()
    events.install(app)
    prefix = rt.config.api_prefix
    document = openapi.build(ROUTES, prefix)

    async def openapi_json(_request: web.Request) -> web.Response:
        return json_response(document)

    app.router.add_get(prefix + "/openapi.json", openapi_json)
    for route in ROUTES:
        app.router.add_route(route.method, prefix + route.path, route.handler)
    add_metrics(app, rt)  # GET /metrics, at the root (docs/METRICS.md)
    pages.install(app, prefix)
    return app
