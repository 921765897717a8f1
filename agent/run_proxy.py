"""The hub, as a docker run reaches it: a Unix socket in every run's container.

Runs have no network. A parent run creates child jobs, and reads how they
went, through ``/ferry/hub/hub.sock`` (``$FERRY_HUB_SOCKET``): plain HTTP with the run's own token (the
file ``/ferry/token``) as ``Authorization: Bearer``. The agent passes those
calls to its hub unchanged and passes nothing else: only the job and task
calls of the hub's API, and only with a token, which the hub checks (a run's
token creates child jobs of its own job, reads jobs and tasks, and ends with
the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web
from yarl import URL

from protocol import API_PREFIX

log = structlog.get_logger("agent.proxy")

# the calls a run may make: jobs (create, read), a job's tasks, tasks, and finds
ALLOWED = re.compile(rf"^{re.escape(API_PREFIX)}/(job|task)(/[A-Za-z0-9_.-]+(/tasks)?)?$|"
                     rf"^{re.escape(API_PREFIX)}/find$")
METHODS = {"GET", "POST"}
MAX_BODY = 8 << 20


class RunProxy:
    """Serves ``socket`` for the containers; forwards to the hub ``hub()`` names."""

    def __init__(self, hub: Callable[[], str], socket: Path, timeout: float = 60.0) -> None:
        self.hub = hub  # the base URL of the hub the agent talks to now
        self.socket = socket
        self.timeout = timeout
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await asyncio.to_thread(self.socket.parent.mkdir, parents=True, exist_ok=True)
        # whatever the agent's umask: a container's user enters it (and nothing more)
        await asyncio.to_thread(os.chmod, self.socket.parent, 0o755)
        await web.SockSite(self._runner, await asyncio.to_thread(self._bind)).start()

    def _bind(self) -> socket.socket:
        """The listening socket, bound through the folder's descriptor: a data folder's
        path may be longer than a socket address takes (108 bytes)."""
        folder = os.open(self.socket.parent, os.O_RDONLY | os.O_DIRECTORY)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):  # one an earlier agent left
                os.unlink(self.socket.name, dir_fd=folder)
            sock.bind(f"/proc/self/fd/{folder}/{self.socket.name}"
                      if os.path.isdir("/proc/self/fd") else str(self.socket))
            os.chmod(self.socket.name, 0o666, dir_fd=folder)  # a container's user connects
        except BaseException:
            sock.close()
            raise
        finally:
            os.close(folder)
        return sock

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()
        with contextlib.suppress(OSError):
            self.socket.unlink()

    async def _forward(self, request: web.Request) -> web.Response:
        if request.method not in METHODS or not ALLOWED.match(request.path):
            return _refuse(403, "not_proxied", f"{request.method} {request.path} is not passed "
                           f"to the hub (runs may call {API_PREFIX}/job, /job/<id>, "
                           "/job/<id>/tasks, /task/<id> and /find)")
        token = request.headers.get("Authorization", "")
        if not token.lower().startswith("bearer "):
            return _refuse(401, "no_credentials", "send 'Authorization: Bearer <the contents "
                           "of /ferry/token>'")
        assert self._client is not None
        body = await request.read()
        try:
            async with self._client.request(
                    request.method, URL(self.hub().rstrip("/") + request.path).with_query(request.query),
                    data=body or None, headers={"Authorization": token,
                                                "Content-Type": "application/json"}) as answer:
                return web.Response(status=answer.status, body=await answer.read(),
                                    content_type="application/json")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("a run's call to the hub failed", path=request.path, error=str(exc))
            return _refuse(502, "hub_unreachable", f"the agent cannot reach the hub: {exc}")


def _refuse(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
