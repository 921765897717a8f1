"""The agent service: enroll, run the loops, drain on stop.

Start: make the parts (agent/assemble.py), kill what a killed earlier run left
running, judge whether work is taken now (a workstation's schedule and NIMBY,
agent/availability.py), send what it left in the outbox, hand back whatever the hub
still thinks we hold (but for docker runs whose containers outlived it: those are
adopted), then check in, claim, run, heartbeat and send. Stop: claim nothing more, let running tasks
finish until the drain deadline (then stop them), hand back what never started,
empty the outbox, say goodbye.

The loops are tasks of the agent's ``Supervisor``: one that fails stops the agent,
which then exits with an ``AgentError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent.assemble import Parts, assemble
from agent.config import AgentConfig
from agent.hubs import HubTarget
from agent.notify import Notifier, Progress
from agent.orgkey import KEY_FILE, OrgKey
from agent.state import AgentState
from agent.status import StatusServer
from core.errors import AgentError, ApiError, ConfigError, EnrollmentError
from core.lifecycle import Service
from core.memory import limit_malloc
from core.tasks import Supervisor
from core.version import VERSION
from lanes.oom import AGENT_OOM_SCORE, set_oom_score
from protocol import (
    BucketKind,
    ClientType,
    EnrollRequest,
    EnrollResponse,
    ResetRequest,
    routes,
)

if TYPE_CHECKING:
    from agent.docker_runs import DockerRuns
    from agent.hubclient import HubClient
    from agent.pins import Pins

    Settle = Callable[[OrgKey, HubClient, EnrollResponse, Pins | None],
                      Coroutine[Any, Any, None]]

log = structlog.get_logger("agent")

# settles the organization key on a node of a collaboration; loaded on the first
# enrollment answer that names one (it brings cryptography)
COLLABORATION = "agent.collaboration"
LOOPS_STOP = 5.0  # seconds the loops get to end by themselves on a stop, then the sender


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
        limit_malloc()  # transfer buffers go back to the system once freed (core.memory)
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
        self.notifier = Notifier()  # the service manager (systemd), when there is one
        self.checkin_progress = Progress()
        # tasks carry this in their environment; a restarted agent finds its orphans by it
        self.agent_id = hashlib.sha256(str(data_dir.absolute()).encode()).hexdigest()[:12]
        self.parts: Parts | None = None  # made by startup
        self.failure: BaseException | None = None
        self.tasks = Supervisor("agent", on_failure=self._failed)  # its loops
        self._loops: dict[str, asyncio.Task[None]] = {}  # to let them end by themselves
        self._keys = Supervisor("organization key")  # settling it: its failure is logged
        self._sending = asyncio.Event()  # set: the sender loop stops

    @property
    def status_server(self) -> StatusServer:
        assert self.parts is not None, "the agent has not started"
        return self.parts.status

    @property
    def docker(self) -> DockerRuns | None:
        """The docker runs (None before the start, or with no ``docker:`` section)."""
        return self.parts.docker.runs if self.parts and self.parts.docker else None

    # -- what the parts ask of the agent (agent/assemble.py, Hooks)
    def enroll_request(self) -> EnrollRequest:
        assert self.parts is not None
        identity, service = self.parts.identity, self.parts.service
        return EnrollRequest(api_key=self.api_key, machine_id=identity.machine_id,
                             code=identity.code, type=int(self.client_type),
                             os=identity.os, username=identity.username,
                             version=VERSION, host_id=identity.host_id,
                             site=self.config.site, lanes=self.lanes,
                             transfer=service.info() if service else None)

    def enrolled(self, answer: EnrollResponse) -> None:
        self.state.client_id = answer.client_id
        self.state.checkin_interval = answer.checkin_interval
        self.state.status = str(answer.status)
        parts = self.parts
        if parts is None:
            return
        parts.compute.set_lanes(answer.lanes)
        parts.pool.wake(BucketKind.COMPUTE)
        if parts.service is not None:
            parts.service.enrolled(answer.client_id, answer.ticket_key)
            parts.service.set_shares(answer.shares)
        if answer.collaboration is not None and not self._keys.names and not self._keys.closed:
            settle: Settle = importlib.import_module(COLLABORATION).settle
            self._keys.spawn(settle(self.org_key, parts.hub, answer, parts.pins),
                             name="organization-key")

    def switched(self, target: HubTarget) -> None:
        self.state.hub = target.url
        self.state.hub_switches += 1

    def retrying(self, error: str) -> None:
        self.state.last_error = error
        self.checkin_progress.beat()  # trying a hub that is down is no wedge

    async def check_in_now(self) -> None:
        if self.parts is not None:
            await self.parts.checkins.once()

    # -- the loops
    def _failed(self, name: str, exc: BaseException) -> None:
        """A loop failed: the agent stops, and exits with the failure."""
        if isinstance(exc, EnrollmentError):
            log.error("cannot enroll", error=str(exc))
        self.failure = exc
        self.request_stop()

    def _spawn(self, loop: Coroutine[Any, Any, None], name: str) -> None:
        self._loops[name] = self.tasks.spawn(loop, name=name)

    def _healthy(self) -> bool:
        """For the watchdog: the check-in loop runs and made progress lately (a check-in,
        or a retry while the hub is down)."""
        window = 3 * self.state.checkin_interval + self.config.request_timeout + \
            self.config.retry_max_delay
        return "checkin-loop" in self.tasks.names and self.checkin_progress.fresh(window)

    async def startup(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        parts = self.parts = await assemble(
            self.config, self.data_dir, agent_id=self.agent_id,
            system=self.client_type == ClientType.SERVER, state=self.state,
            org_key=self.org_key, progress=self.checkin_progress, hooks=self)
        try:
            await parts.status.start()
        except OSError as exc:
            raise ConfigError(f"cannot serve status on {self.config.status_ip}:"
                              f"{self.config.status_port}: {exc.strerror or exc}",
                              key="status_port") from None
        if parts.service is not None:  # listening before enrollment says where
            await parts.service.start()
        log.info("agent starting", name=self.name, hub=parts.hub.target.label, lanes=self.lanes,
                 status=parts.status.url, machine_id=parts.identity.machine_id,
                 host_id=parts.identity.host_id)
        if self.on_ready:
            self.on_ready({"pid": os.getpid(), "status_url": parts.status.url,
                           "status_port": parts.status.port, "hub": parts.hub.base_url,
                           "version": VERSION, "agent_id": self.agent_id})
        await parts.outbox.open()
        killed = await asyncio.to_thread(parts.compute.kill_leftovers)
        if killed:
            log.warning("killed tasks left running by an earlier run", processes=killed)
        if parts.availability is not None:  # judged before the first check-in and claim
            await parts.availability.check()
            self._spawn(parts.availability.run(self.should_exit), "availability")
        self._spawn(parts.checkins.run(self.should_exit), "checkin-loop")
        self._spawn(self._work(parts), "work")
        if set_oom_score(AGENT_OOM_SCORE):
            log.info("the OOM killer spares the agent before its tasks",
                     oom_score_adj=AGENT_OOM_SCORE)
        self.notifier.ready(f"serving; status at {parts.status.url}/status.json")
        self._spawn(self.notifier.watch(self._healthy, self.should_exit), "watchdog")

    async def _work(self, parts: Parts) -> None:
        # results of an earlier run go first, so they count...
        try:
            while await parts.sender.send_once():
                pass
        except ApiError as exc:  # kept: the sender loop tries again
            log.error("hub refused the reports of an earlier run", error=str(exc))
        # ...then whatever the hub still thinks we hold is stale (we run nothing yet), but
        # for the runs whose containers outlived the earlier run: those are adopted
        keep = await parts.docker.start(parts.pool) if parts.docker is not None else []
        answer = await parts.hub.call(routes.RESET, ResetRequest(reason="restarted", keep=keep))
        if keep:
            log.info("adopted runs an earlier run left running", buckets=len(keep))
        if answer.released:
            log.warning("handed back work an earlier run held", buckets=answer.released)
        self._spawn(parts.sender.run(self._sending), "sender")
        self._spawn(parts.heartbeats.run(self.should_exit), "heartbeat-loop")
        await parts.claims.run(self.should_exit)

    async def shutdown(self) -> None:
        self.state.status = "stopping"
        self.notifier.stopping(f"draining (at most {self.config.drain_timeout:g} s)")
        self.should_exit.set()  # the loops watch it (also when startup failed half-way)
        deadline = time.monotonic() + self.config.drain_timeout
        parts = self.parts
        if parts is not None:
            await parts.pool.drain(deadline, self.forced)
        # claims, heartbeats and check-ins end at once; the sender empties the outbox below
        others = [task for name, task in self._loops.items() if name != "sender"]
        await self.drain(others, LOOPS_STOP, "stopping")
        self._sending.set()
        await self.drain(list(self._loops.values()), LOOPS_STOP, "stopping")
        await self.tasks.close()
        self._loops.clear()
        await self._keys.close()
        if parts is not None:
            await self._leave(parts)
        log.info("agent stopped", name=self.name)
        if self.failure is not None:
            raise AgentError(str(self.failure)) from self.failure

    async def _leave(self, parts: Parts) -> None:
        """Empty the outbox, give back what is still leased, say goodbye, close."""
        if parts.outbox.ready and await parts.sender.drain(0.5 if self.force_exit else 10.0):
            # nothing owed: anything still leased to us (a claim cut short) goes back
            with contextlib.suppress(Exception):
                await asyncio.wait_for(parts.hub.call(
                    routes.RESET, ResetRequest(reason="stopped"), attempts=1), timeout=3)
        await parts.hub.goodbye()
        await parts.hub.close()
        await parts.hub_status.close()
        await parts.outbox.close()
        await parts.status.stop()
        if parts.service is not None:
            await parts.service.stop()
