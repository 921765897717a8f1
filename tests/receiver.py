"""A webhook receiver for tests: a real aiohttp server on a free loopback port, in a
thread of its own, that checks each delivery's signature as docs/WEBHOOKS.md shows and
answers as the test tells it (fail, hang, or take it)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.helpers import free_port


@dataclass
class Received:
    path: str
    event: str
    delivery: str
    body: dict[str, Any]
    signed: bool  # the signature matched the secret of the path's webhook
    answered: int | None  # the status it got; None: it was kept waiting


def verify(secret: str, body: bytes, header: str) -> bool:
    """The receiver's check, as in docs/WEBHOOKS.md."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


@dataclass
class Receiver:
    """``plan``: by event, what each request of it in turn gets (a status, or "hang"); then
    200. ``hang``: every request waits until the receiver closes."""

    secrets: dict[str, str] = field(default_factory=dict)  # path -> secret
    plan: dict[str, list[int | str]] = field(default_factory=dict)
    hang: bool = False
    got: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def events(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.got if path is None or r.path == path]

    def taken(self, path: str | None = None) -> list[Received]:
        return [r for r in self.events(path) if r.answered == 200]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        secret = self.secrets.get(request.path, "")
        record = Received(request.path, request.headers.get("X-Ferry-Event", ""),
                          request.headers.get("X-Ferry-Delivery", ""), json.loads(raw),
                          verify(secret, raw, request.headers.get("X-Ferry-Signature", "")),
                          None)
        with self._lock:
            self.got.append(record)
            steps = self.plan.get(record.event, [])
            step = steps.pop(0) if steps else 200
        assert self._stop is not None
        if self.hang or step == "hang":
            await self._stop.wait()
            return web.Response(status=503)
        record.answered = int(step)
        return web.Response(status=int(step))

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
