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

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from core.errors import ConfigError
from core.lifecycle import Service
from core.tasks import Supervisor
from core.version import VERSION
from hub.app import make_app
from hub.checkins import CheckinWriter
from hub.config import HubConfig
from hub.entities.sites import DEFAULT_SITE
from hub.entities.users import ROOT, ROOT_ROLE
from hub.errors import Invalid
from hub.jobs.dispatch import Dispatcher
from hub.permissions import ROOT_ORGANIZATION, role_id
from hub.runtime import Runtime, build_runtime
from hub.security import check_password_strength, hash_secret_async, new_password
from hub.storage.db import Database
from hub.storage.models import Organization, Site, User, new_id, user_roles, utcnow
from hub.webhooks.sender import WebhookSender

log = structlog.get_logger("hub.server")

ROOT_PASSWORD_ENV = "FERRY_ROOT_PASSWORD"
ROOT_PASSWORD_FILE = "root-password.txt"


def write_secret_file(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (never group or world)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    os.chmod(path, 0o600)


class HubServer(Service):
    """One hub process. ``on_ready`` gets the runtime facts (url, port, pid)."""

    def __init__(self, config: HubConfig, section: str, data_dir: Path, *,
                 handle_signals: bool = True,
                 on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(handle_signals=handle_signals)
        self.config = config
        self.section = section
        self.data_dir = data_dir
        self.on_ready = on_ready
        self.db: Database | None = None
        self.runtime: Runtime | None = None
        self.dispatcher: Dispatcher | None = None
        self.writer: CheckinWriter | None = None
        self.webhooks: WebhookSender | None = None
        self.tasks = Supervisor("hub server")
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
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
        # root only once the hub can be reached: a failed first start prints no password
        # that was never shown, and leaves no root behind
        await self._bootstrap(self.db)
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        log.info("hub serving", url=self.url, api=self.config.api_prefix, version=VERSION,
                 database=self.db.url.split("@")[-1])
        if self.on_ready:
            self.on_ready({
                "pid": os.getpid(), "url": self.url, "port": self.port, "ip": self.config.ip,
                "api": self.config.api_prefix, "version": VERSION,
                "root_password_file": str(self.root_password_file)
                if self.root_password else None,
            })

    async def _bootstrap(self, db: Database) -> None:
        """The first start creates user ``root`` and site ``hq``; later starts change nothing."""
        async with db.read() as conn:
            has_root = (await conn.execute(select(User.id).where(User.role == ROOT_ROLE))).first()
            has_site = (await conn.execute(select(Site.id).where(Site.name == DEFAULT_SITE))).first()
        now = utcnow()
        if has_root is None:
            given = os.environ.get(ROOT_PASSWORD_ENV)
            if given is not None:
                try:
                    check_password_strength(given)
                except Invalid as exc:
                    raise ConfigError(f"{ROOT_PASSWORD_ENV} is refused: {exc.message}") from None
                password = given
            else:
                password = new_password()
                self.root_password_file = self.data_dir / ROOT_PASSWORD_FILE
                write_secret_file(self.root_password_file, password)
                self.root_password = password
            hashed = await hash_secret_async(password)
            try:
                async with db.write() as conn:
                    org = (await conn.execute(select(Organization.id).where(
                        Organization.name == ROOT_ORGANIZATION))).scalar()
                    if org is None:
                        org = new_id()
                        await conn.execute(insert(Organization).values(
                            id=org, name=ROOT_ORGANIZATION, domain="", address1="",
                            address2="", zipcode="", country="", public_key="",
                            created=now, modified=now))
                    user_id = new_id()
                    await conn.execute(insert(User).values(
                        id=user_id, username=ROOT, password_hash=hashed, role=ROOT_ROLE,
                        organization_id=org, firstname="", lastname="", created=now,
                        modified=now))
                    await conn.execute(insert(user_roles).values(user_id=user_id,
                                                                 role_id=role_id(ROOT_ROLE)))
            except IntegrityError:  # another hub process on this database made root first
                if self.root_password_file is not None:
                    self.root_password_file.unlink(missing_ok=True)
                    self.root_password_file = None
                self.root_password = None
                log.info("user root was made by another hub process")
            else:
                log.info("created user root", password_from=ROOT_PASSWORD_ENV
                         if given is not None else str(self.root_password_file))
        if has_site is None:
            try:
                async with db.write() as conn:
                    await conn.execute(insert(Site).values(
                        id=new_id(), name=DEFAULT_SITE, description="main site", created=now,
                        modified=now))
            except IntegrityError:
                pass  # another hub process on this database made it first

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
