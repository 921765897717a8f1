"""The agent's local status endpoint: ``/healthz``, ``/status.json`` and ``/metrics`` on
loopback.

The page is the agent's ``AgentState`` with a section per part that keeps a status of
its own (``transfer``, ``organization_key``, ``docker``; null where the part does not
run here), asked for on each request. ``/metrics`` is the same agent for Prometheus
(agent/readings.py, agent/exporter.py; docs/METRICS.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from agent.readings import Readings
from agent.state import AgentState, Section
from core.exposition import NotAcceptable, acceptable

STATE: web.AppKey[AgentState] = web.AppKey("state", AgentState)
SECTIONS: web.AppKey[Mapping[str, Section | None]] = web.AppKey("sections", Mapping)
READINGS: web.AppKey[Readings] = web.AppKey("readings", Readings)


async def healthz(request: web.Request) -> web.Response:
    ok, reason = request.app[STATE].healthy()
    return web.json_response({"ok": ok, "health": reason}, status=200 if ok else 503)


async def status_json(request: web.Request) -> web.Response:
    page = request.app[STATE].as_json(request.app[SECTIONS])
    return web.Response(body=msgspec.json.encode(page),
                        content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    accept = request.headers.get("Accept", "")
    if not acceptable(accept):
        return web.json_response({"error": {"code": "not_acceptable",
                                            "message": str(NotAcceptable(accept))}}, status=406)
    # prometheus_client loads on the first scrape: an agent nobody scrapes never carries it
    from agent.exporter import page  # noqa: PLC0415
    body, content_type = page(await request.app[READINGS].read(), accept)
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


@web.middleware
async def clear_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A wrong method or path is told so in JSON, as the hub does (and the server runs on)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = f"no such page: {request.path}" if exc.status == 404 else \
            f"method {request.method} is not allowed on {request.path}" \
            if exc.status == 405 else exc.reason
        return web.json_response({"error": {"code": exc.reason.lower().replace(" ", "_"),
                                            "message": message}}, status=exc.status,
                                 headers={k: v for k, v in exc.headers.items()
                                          if k == "Allow"})


class StatusServer:
    def __init__(self, state: AgentState, host: str, port: int,
                 sections: Mapping[str, Section | None] | None = None,
                 readings: Readings | None = None) -> None:
        self.state = state
        self.readings = readings
        self.sections = dict(sections or {})
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[clear_errors])
        app[STATE] = self.state
        app[SECTIONS] = self.sections
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/status.json", status_json)
        if self.readings is not None:
            app[READINGS] = self.readings
            app.router.add_get("/metrics", metrics, allow_head=False)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
