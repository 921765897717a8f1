"""The agent service: enroll, run the loops, drain on stop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

import ferry
from agent.checkin import CheckinLoop
from agent.config import AgentConfig
from agent.hubclient import HubClient
from agent.identity import Identity
from agent.metrics import MetricsSampler
from agent.state import AgentState
from agent.status import StatusServer
from ferry.errors import AgentError, ConfigError, EnrollmentError
from ferry.lifecycle import Service
from protocol import ClientType, EnrollRequest, EnrollResponse

log = structlog.get_logger("agent")


def read_api_key(config: AgentConfig, config_dir: Path | None) -> str:
    if config.api_key:
        return config.api_key
    if config.api_key_file:
        path = Path(config.api_key_file)
        if not path.is_absolute() and config_dir is not None:
            path = config_dir / path
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read API key file {path}: {exc.strerror}",
                              key="api_key_file") from None
        if len(key) < 8:
            raise ConfigError(f"API key file {path} holds no key", key="api_key_file")
        return key
    raise ConfigError("the agent needs an API key: set api_key or api_key_file", key="api_key")


class Agent(Service):
    """One agent process. ``on_ready`` gets the runtime facts once it serves status."""

    def __init__(self, config: AgentConfig, name: str, data_dir: Path, *,
                 client_type: ClientType = ClientType.SERVER, config_dir: Path | None = None,
                 handle_signals: bool = True,
                 on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(handle_signals=handle_signals)
        self.config = config
        self.name = name
        self.data_dir = data_dir
        self.client_type = client_type
        self.on_ready = on_ready
        self.api_key = read_api_key(config, config_dir)
        self.lanes = config.lanes or os.cpu_count() or 1
        self.state = AgentState(name=name, hub=config.hub, lanes=self.lanes)
        self.status_server = StatusServer(self.state, config.status_ip, config.status_port)
        self.identity: Identity | None = None
        self.hub: HubClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None

    def _enroll_request(self) -> EnrollRequest:
        assert self.identity is not None
        return EnrollRequest(api_key=self.api_key, machine_id=self.identity.machine_id,
                             code=self.identity.code, type=int(self.client_type),
                             os=self.identity.os, username=self.identity.username,
                             version=ferry.__version__, host_id=self.identity.host_id,
                             site=self.config.site)

    def _enrolled(self, answer: EnrollResponse) -> None:
        self.state.client_id = answer.client_id
        self.state.checkin_interval = answer.checkin_interval
        self.state.status = str(answer.status)

    def _retrying(self, error: str) -> None:
        self.state.last_error = error

    async def startup(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.identity = await asyncio.to_thread(Identity.gather)
        sampler = await asyncio.to_thread(MetricsSampler)
        try:
            await self.status_server.start()
        except OSError as exc:
            raise ConfigError(f"cannot serve status on {self.config.status_ip}:"
                              f"{self.config.status_port}: {exc.strerror or exc}",
                              key="status_port") from None
        self.hub = HubClient(self.config.hub, self._enroll_request,
                             retry_max_delay=self.config.retry_max_delay,
                             request_timeout=self.config.request_timeout)
        self.hub.on_enrolled = self._enrolled
        self.hub.on_retry = self._retrying
        log.info("agent starting", name=self.name, hub=self.config.hub, lanes=self.lanes,
                 status=self.status_server.url, machine_id=self.identity.machine_id,
                 host_id=self.identity.host_id)
        if self.on_ready:
            self.on_ready({"pid": os.getpid(), "status_url": self.status_server.url,
                           "status_port": self.status_server.port, "hub": self.config.hub,
                           "version": ferry.__version__})
        checkins = CheckinLoop(self.hub, self.identity, sampler, self.state)
        self._tasks.append(asyncio.create_task(self._guard(checkins.run(self.should_exit)),
                                               name="checkin-loop"))

    async def _guard(self, loop: Any) -> None:
        """Run one loop; a fatal error in it stops the whole agent."""
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except EnrollmentError as exc:
            log.error("cannot enroll", error=str(exc))
            self.failure = exc
            self.request_stop()
        except Exception as exc:
            log.exception("agent loop failed")
            self.failure = exc
            self.request_stop()

    async def shutdown(self) -> None:
        self.state.status = "stopping"
        self.should_exit.set()  # the loops watch it (also when startup failed half-way)
        # loops finish their current step; past the drain deadline they are cancelled
        await self.drain(self._tasks, self.config.drain_timeout, "drain deadline passed")
        self._tasks.clear()
        if self.hub is not None:
            await self.hub.goodbye()
            await self.hub.close()
        await self.status_server.stop()
        log.info("agent stopped", name=self.name)
        if self.failure is not None:
            raise AgentError(str(self.failure)) from self.failure
