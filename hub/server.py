"""The hub process: database, API server, dispatcher, check-in writer, webhook sender.

Startup builds them in that order. Shutdown first stops the dispatcher, so that claims
waiting for work answer at once; then requests in flight get ``shutdown_timeout``,
pending check-ins are written and the database closes, each step within a deadline.
Every background task belongs to a ``core.tasks.Supervisor`` (the dispatcher's lease
sweeper, the work channel, the check-in writer, the webhook sender, the server's own);
when a task the hub cannot serve without dies (the sweeper, the writer), the hub stops
instead of running on without it.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from core.errors import ConfigError
from core.lifecycle import Service
from core.tasks import Supervisor
from core.version import VERSION
from hub.accsyn import app as accsyn
from hub.accsyn.certificate import tls_context
from hub.app import make_app
from hub.bootstrap import bootstrap
from hub.checkins import CheckinWriter
from hub.config import HubConfig
from hub.jobs.dispatch import Dispatcher
from hub.runtime import Runtime, build_runtime
from hub.storage.db import Database
from hub.webhooks.sender import WebhookSender

log = structlog.get_logger("hub.server")


class HubServer(Service):
    """One hub process. ``on_ready`` gets the runtime facts (url, port, pid)."""

    def __init__(self, config: HubConfig, section: str, data_dir: Path, *,
                 handle_signals: bool = True, name: str | None = None,
                 on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(handle_signals=handle_signals)
        self.config = config
        self.section = section
        self.data_dir = data_dir
        self.name = name  # the instance's: the accsyn API's workspace (docs/ACCSYN.md)
        self.on_ready = on_ready
        self.db: Database | None = None
        self.runtime: Runtime | None = None
        self.dispatcher: Dispatcher | None = None
        self.writer: CheckinWriter | None = None
        self.webhooks: WebhookSender | None = None
        self.tasks = Supervisor("hub server")
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self.accsyn: web.AppRunner | None = None  # accsyn's client's listener, when configured
        self.accsyn_port: int | None = None
        self.root_password: str | None = None  # set when this start created root
        self.root_password_file: Path | None = None

    @property
    def url(self) -> str:
        host = self.config.ip
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def startup(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        self.db = Database(self.config.uri, self.data_dir)
        await self.db.migrate()
        self.runtime = rt = await build_runtime(self.config, self.section, self.db, self.data_dir)
        rt.work.start()
        self.dispatcher = Dispatcher(
            self.db, rt.work, lease=self.config.lease_seconds,
            heartbeat=self.config.heartbeat_interval, wait_max=self.config.claim_wait_max,
            ticket_key=rt.ticket_key, tokens=rt.tokens, on_failure=self._vital_task_died,
            counters=rt.counters)
        await self.dispatcher.start()
        self.writer = CheckinWriter(self.db, on_failure=self._vital_task_died)
        self.writer.start()
        # events wait in the database's outbox: the sender may start before the API does
        self.webhooks = WebhookSender(self.db, self.config, offline_grace=rt.offline_grace,
                                      on_failure=self._vital_task_died)
        self.webhooks.start()
        app = make_app(rt, self.writer, self.dispatcher)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.ip, self.config.port,
                           shutdown_timeout=self.config.shutdown_timeout)
        try:
            await site.start()
        except OSError as exc:
            in_use = exc.errno == errno.EADDRINUSE
            raise ConfigError(f"cannot listen on {self.config.ip}:{self.config.port}: "
                              f"{exc.strerror or exc}", key="port" if in_use else "ip") from None
        await self._serve_accsyn(rt)
        # root only once the hub can be reached: a failed first start prints no password
        # that was never shown, and leaves no root behind
        made = await bootstrap(self.db, self.data_dir)
        self.root_password, self.root_password_file = made.root_password, made.root_password_file
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        log.info("hub serving", url=self.url, api=self.config.api_prefix, version=VERSION,
                 database=self.db.url.split("@")[-1])
        if self.on_ready:
            self.on_ready({
                "pid": os.getpid(), "url": self.url, "port": self.port, "ip": self.config.ip,
                "api": self.config.api_prefix, "version": VERSION,
                "accsyn_port": self.accsyn_port,
                "root_password_file": str(self.root_password_file)
                if self.root_password else None,
            })

    async def _serve_accsyn(self, rt: Runtime) -> None:
        """accsyn's client's API on its TLS port (``accsyn_api``), when configured."""
        given = self.config.accsyn_api
        if given is None:
            return
        context = await asyncio.to_thread(tls_context, given, self.data_dir,
                                          self.name or "hub")
        workspaces = frozenset(w for w in (self.name, given.workspace_alias) if w)
        try:
            self.accsyn, self.accsyn_port = await accsyn.serve(
                rt, workspaces, context, self.config.ip, given.port,
                self.config.shutdown_timeout)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.config.ip}:{given.port} for the "
                              f"accsyn API: {exc.strerror or exc}", key="accsyn_api.port") from None
        log.info("accsyn API serving", port=self.accsyn_port, workspaces=sorted(workspaces))

    def _vital_task_died(self, name: str, exc: BaseException) -> None:
        """A loop the hub cannot serve without died (the check-in writer: no check-in
        would be answered again; the lease sweeper: no lost lease would come back). Stop
        the hub rather than let it run on broken; its supervisor has logged why."""
        log.error("a vital background task died; the hub stops", task=name,
                  error=f"{type(exc).__name__}: {exc}")
        self.request_stop()

    async def shutdown(self) -> None:
        if self.dispatcher is not None:  # waiting claims answer at once; no lease expires now
            await self.dispatcher.close()
            self.dispatcher = None
        if self.webhooks is not None:  # an attempt cut short is retried by the next start
            await self.webhooks.close()
            self.webhooks = None
        if self.runtime is not None:
            await self.runtime.work.close()
        if self.accsyn is not None:
            cleanup = self.tasks.spawn(self.accsyn.cleanup(), name="accsyn-cleanup")
            await self.drain([cleanup], self.config.shutdown_timeout + 1, "shutdown deadline passed")
            self.accsyn = None
        if self.runner is not None:
            # stops accepting, lets requests finish within shutdown_timeout (sooner when forced)
            cleanup = self.tasks.spawn(self.runner.cleanup(), name="http-cleanup")
            await self.drain([cleanup], self.config.shutdown_timeout + 1, "shutdown deadline passed")
            self.runner = None
        await self.tasks.close(deadline=5.0)
        if self.writer is not None:
            await self.writer.close()
            self.writer = None
        if self.db is not None:
            await self.db.close()
            self.db = None
        log.info("hub stopped")
