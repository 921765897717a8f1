"""The agent service: enroll, run the loops, drain on stop.

Start: kill what a killed earlier run left running, send what it left in the
outbox, hand back whatever the hub still thinks we hold, then check in,
claim, run, heartbeat and send. Stop: claim nothing more, let running tasks
finish until the drain deadline (then stop them), hand back what never
started, empty the outbox, say goodbye.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from agent.checkin import CheckinLoop
from agent.config import AgentConfig
from agent.docker_runs import DockerRuns
from agent.hubclient import HubClient
from agent.hubs import HubTarget, StatusRecorder
from agent.hubs import resolve as resolve_hubs
from agent.identity import Identity
from agent.metrics import MetricsSampler
from agent.notify import Notifier, Progress
from agent.orgkey import KEY_FILE, OrgKey
from agent.outbox import Outbox
from agent.sender import OutboxSender
from agent.state import AgentState
from agent.status import StatusServer
from agent.transfer import TransferService
from agent.work import Work
from core.errors import AgentError, ApiError, ConfigError, EnrollmentError
from core.lifecycle import Service
from core.version import VERSION
from lanes.oom import AGENT_OOM_SCORE, set_oom_score
from protocol import (
    ClientType,
    EnrollRequest,
    EnrollResponse,
    ResetRequest,
    ResetResponse,
)

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
        self.lanes = config.lanes if config.lanes is not None else os.cpu_count() or 1
        self.state = AgentState(name=name, hub=config.hubs[0], lanes=self.lanes)
        self.org_key = OrgKey(Path(config.organization_key_file).expanduser()
                              if config.organization_key_file else data_dir / KEY_FILE)
        self.state.organization_key = self.org_key.status
        self._settling: asyncio.Task[None] | None = None
        self.hub_status: StatusRecorder | None = None
        self.notifier = Notifier()  # the service manager (systemd), when there is one
        self.checkin_progress = Progress()
        self.status_server = StatusServer(self.state, config.status_ip, config.status_port)
        self.identity: Identity | None = None
        self.hub: HubClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sending = asyncio.Event()  # set: the sender loop stops
        self.failure: BaseException | None = None
        self.outbox = Outbox(data_dir / "outbox.sqlite")
        self.work: Work | None = None
        self.sender: OutboxSender | None = None
        self.transfer = TransferService(config, data_dir) if config.transfer else None
        self.docker: DockerRuns | None = None
        if self.transfer is not None:
            self.state.transfer = self.transfer.status
        # tasks carry this in their environment; a restarted agent finds its orphans by it
        self.agent_id = hashlib.sha256(str(data_dir.absolute()).encode()).hexdigest()[:12]
        if config.docker is not None:
            folder = Path(config.docker.folder).expanduser() if config.docker.folder else \
                data_dir / "docker"
            self.docker = DockerRuns(config.docker, folder, self.agent_id, self.org_key,
                                     lambda: self.hub.base_url if self.hub else "")
            self.state.docker = self.docker.status

    def _enroll_request(self) -> EnrollRequest:
        assert self.identity is not None
        return EnrollRequest(api_key=self.api_key, machine_id=self.identity.machine_id,
                             code=self.identity.code, type=int(self.client_type),
                             os=self.identity.os, username=self.identity.username,
                             version=VERSION, host_id=self.identity.host_id,
                             site=self.config.site, lanes=self.lanes,
                             transfer=self.transfer.info() if self.transfer else None)

    def _enrolled(self, answer: EnrollResponse) -> None:
        self.state.client_id = answer.client_id
        self.state.checkin_interval = answer.checkin_interval
        self.state.status = str(answer.status)
        if self.work is not None:
            self.work.set_lanes(answer.lanes)
        if self.transfer is not None:
            self.transfer.enrolled(answer.client_id, answer.ticket_key)
            self.transfer.set_shares(answer.shares)
        if answer.collaboration is not None and self.hub is not None and (
                self._settling is None or self._settling.done()):
            self._settling = asyncio.create_task(self.org_key.settle(self.hub, answer),
                                                 name="organization-key")

    def _switched(self, target: HubTarget) -> None:
        self.state.hub = target.url

    def _retrying(self, error: str) -> None:
        self.state.last_error = error
        self.checkin_progress.beat()  # trying a hub that is down is no wedge

    def _healthy(self) -> bool:
        """For the watchdog: the check-in loop runs and made progress lately (a check-in,
        or a retry while the hub is down)."""
        loop = next((t for t in self._tasks if t.get_name() == "checkin-loop"), None)
        window = 3 * self.state.checkin_interval + self.config.request_timeout + \
            self.config.retry_max_delay
        return loop is not None and not loop.done() and self.checkin_progress.fresh(window)

    async def startup(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.identity = await asyncio.to_thread(Identity.gather)
        sampler = await asyncio.to_thread(
            MetricsSampler, self.transfer.moved_bytes if self.transfer else None)
        try:
            await self.status_server.start()
        except OSError as exc:
            raise ConfigError(f"cannot serve status on {self.config.status_ip}:"
                              f"{self.config.status_port}: {exc.strerror or exc}",
                              key="status_port") from None
        if self.transfer is not None:  # listening before enrollment says where
            await self.transfer.start()
        system = self.client_type == ClientType.SERVER  # whose servers database names hubs
        targets = await asyncio.to_thread(resolve_hubs, self.config.hubs, system=system)
        self.hub_status = StatusRecorder(system=system)
        self.hub = HubClient(targets, self._enroll_request,
                             failback_interval=self.config.failback_interval,
                             retry_max_delay=self.config.retry_max_delay,
                             request_timeout=self.config.request_timeout)
        self.hub.on_enrolled = self._enrolled
        self.hub.on_retry = self._retrying
        self.hub.on_status = self.hub_status.saw
        self.hub.on_switch = self._switched
        log.info("agent starting", name=self.name, hub=self.hub.target.label, lanes=self.lanes,
                 status=self.status_server.url, machine_id=self.identity.machine_id,
                 host_id=self.identity.host_id)
        if self.on_ready:
            self.on_ready({"pid": os.getpid(), "status_url": self.status_server.url,
                           "status_port": self.status_server.port, "hub": self.hub.base_url,
                           "version": VERSION, "agent_id": self.agent_id})
        await self.outbox.open()
        self.work = Work(self.hub, self.outbox, self.state, self.data_dir, self.agent_id)
        self.work.transfer = self.transfer
        self.work.transfer_slots = self.config.transfer_slots
        self.work.docker = self.docker
        self.sender = OutboxSender(self.hub, self.outbox, self.work.idle)
        killed = await asyncio.to_thread(self.work.kill_leftovers)
        if killed:
            log.warning("killed tasks left running by an earlier run", processes=killed)
        checkins = CheckinLoop(self.hub, self.identity, sampler, self.state,
                               on_shares=self.transfer.set_shares if self.transfer else None,
                               progress=self.checkin_progress)
        if self.transfer is not None:
            self.transfer.checkin = checkins.once
        self._spawn(checkins.run(self.should_exit), "checkin-loop")
        self._spawn(self._work(), "work")
        if set_oom_score(AGENT_OOM_SCORE):
            log.info("the OOM killer spares the agent before its tasks",
                     oom_score_adj=AGENT_OOM_SCORE)
        self.notifier.ready(f"serving; status at {self.status_server.url}/status.json")
        self._spawn(self.notifier.watch(self._healthy, self.should_exit), "watchdog")

    def _spawn(self, loop: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(self._guard(loop), name=name))

    async def _work(self) -> None:
        assert self.hub is not None and self.work is not None and self.sender is not None
        # results of an earlier run go first, so they count...
        try:
            while await self.sender.send_once():
                pass
        except ApiError as exc:  # kept: the sender loop tries again
            log.error("hub refused the reports of an earlier run", error=str(exc))
        # ...then whatever the hub still thinks we hold is stale (we run nothing yet), but
        # for the runs whose containers outlived the earlier run: those are adopted
        keep = self.work.adopt(await self.docker.start()) if self.docker is not None else []
        answer = await self.hub.request("POST", "/agent/reset", ResetRequest(
            reason="restarted", keep=keep), ResetResponse)
        if keep:
            log.info("adopted runs an earlier run left running", buckets=len(keep))
        if answer.released:
            log.warning("handed back work an earlier run held", buckets=answer.released)
        self._spawn(self.sender.run(self._sending), "sender")
        self._spawn(self.work.heartbeat_loop(self.should_exit), "heartbeat-loop")
        await self.work.claim_loop(self.should_exit)

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
        self.notifier.stopping(f"draining (at most {self.config.drain_timeout:g} s)")
        self.should_exit.set()  # the loops watch it (also when startup failed half-way)
        deadline = time.monotonic() + self.config.drain_timeout
        if self.work is not None:
            await self.work.drain(deadline, self.forced)
        if self.docker is not None:
            await self.docker.close()
        # claims, heartbeats and check-ins end at once; the sender empties the outbox below
        others = [t for t in self._tasks if t.get_name() != "sender"]
        await self.drain(others, 5.0, "stopping")
        self._sending.set()
        await self.drain(self._tasks, 5.0, "stopping")
        self._tasks.clear()
        if self._settling is not None:
            self._settling.cancel()
            await asyncio.gather(self._settling, return_exceptions=True)
        if self.hub is not None:
            if self.sender is not None and self.outbox.ready and \
                    await self.sender.drain(0.5 if self.force_exit else 10.0):
                # nothing owed: anything still leased to us (a claim cut short) goes back
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.hub.request(
                        "POST", "/agent/reset", ResetRequest(reason="stopped"),
                        ResetResponse, attempts=1), timeout=3)
            await self.hub.goodbye()
            await self.hub.close()
        if self.hub_status is not None:
            await self.hub_status.close()
        await self.outbox.close()
        await self.status_server.stop()
        if self.transfer is not None:
            await self.transfer.stop()
        log.info("agent stopped", name=self.name)
        if self.failure is not None:
            raise AgentError(str(self.failure)) from self.failure
