"""The agent's local status endpoint: ``/healthz`` and ``/status.json`` on loopback."""

from __future__ import annotations

import msgspec
from aiohttp import web

from agent.state import AgentState

STATE: web.AppKey[AgentState] = web.AppKey("state", AgentState)


async def healthz(request: web.Request) -> web.Response:
    ok, reason = request.app[STATE].healthy()
    return web.json_response({"ok": ok, "health": reason}, status=200 if ok else 503)


async def status_json(request: web.Request) -> web.Response:
    return web.Response(body=msgspec.json.encode(request.app[STATE].as_json()),
                        content_type="application/json")


class StatusServer:
    def __init__(self, state: AgentState, host: str, port: int) -> None:
        self.state = state
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
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/status.json", status_json)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=1)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
