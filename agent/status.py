"""The agent's local status endpoint: ``/healthz`` and ``/status.json`` on loopback.

The page is the agent's ``AgentState`` with a section per part that keeps a status of
its own (``transfer``, ``organization_key``, ``docker``; null where the part does not
run here), asked for on each request.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from aiohttp import web

from agent.state import AgentState, Section

STATE: web.AppKey[AgentState] = web.AppKey("state", AgentState)
SECTIONS: web.AppKey[Mapping[str, Section | None]] = web.AppKey("sections", Mapping)


async def healthz(request: web.Request) -> web.Response:
    ok, reason = request.app[STATE].healthy()
    return web.json_response({"ok": ok, "health": reason}, status=200 if ok else 503)


async def status_json(request: web.Request) -> web.Response:
    page = request.app[STATE].as_json(request.app[SECTIONS])
    return web.Response(body=msgspec.json.encode(page),
                        content_type="application/json")


class StatusServer:
    def __init__(self, state: AgentState, host: str, port: int,
                 sections: Mapping[str, Section | None] | None = None) -> None:
        self.state = state
        self.sections = dict(sections or {})
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app[STATE] = self.state
        app[SECTIONS] = self.sections
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/status.json", status_json)
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
