"""Making one agent's parts and wiring them: the only place that does.

Every part gets its collaborators in its constructor; none is set afterwards. What
only some agents run is loaded when their settings ask for it (runners by kind,
agent/buckets/registry.py): an agent with ``transfer: false`` and no ``docker:``
imports neither the transports nor the Docker SDK, and cryptography only as a node of
a collaboration (to settle its organization's key, agent/collaboration.py).

The parts depend on one another in one order (the hub client first, the status page
last), except where a part needs the agent itself, which comes back to them once
they run: its enroll request and its answer to an enrollment read parts made after
the hub client, and the transfer endpoint asks for a check-in made by a loop that
reports the endpoint's bytes. Those are the agent's ``Hooks``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from agent.availability import AvailabilityLoop
from agent.buckets.claim import ClaimLoop
from agent.buckets.heartbeat import HeartbeatLoop
from agent.buckets.pool import BucketPool
from agent.buckets.registry import runner_class
from agent.buckets.reports import Reporter
from agent.checkin import CheckinLoop
from agent.config import AgentConfig
from agent.hubclient import HubClient
from agent.hubs import HubTarget, StatusRecorder
from agent.hubs import resolve as resolve_hubs
from agent.identity import Identity
from agent.metrics import MetricsSampler
from agent.notify import Progress
from agent.orgkey import OrgKey
from agent.outbox import Outbox
from agent.readings import Readings
from agent.sender import OutboxSender
from agent.state import AgentState
from agent.status import StatusServer
from lanes.accounting import CgroupTree
from protocol import BucketKind, EnrollRequest, EnrollResponse

if TYPE_CHECKING:  # loaded by kind, when the settings ask for them
    from agent.buckets.base import Runner
    from agent.buckets.compute import ComputeRunner
    from agent.buckets.docker import DockerRunner
    from agent.buckets.transfer import TransferRunner
    from agent.pins import Pins
    from agent.transfer import TransferService


class Hooks(Protocol):
    """What the agent itself answers, once its parts run."""

    def enroll_request(self) -> EnrollRequest:
        """The body of an enrollment (whenever the hub client enrolls)."""
        ...

    def enrolled(self, answer: EnrollResponse) -> None:
        """An enrollment's answer: the agent's lanes, shares and organization."""
        ...

    def retrying(self, error: str) -> None:
        """A request to the hub failed and is tried again."""
        ...

    def switched(self, target: HubTarget) -> None:
        """Another hub took over."""
        ...

    async def check_in_now(self) -> None:
        """One check-in at once (the transfer endpoint does not know a share yet)."""
        ...


@dataclass(frozen=True)
class Parts:
    """One agent's parts, made by ``assemble``."""

    identity: Identity
    hub: HubClient
    hub_status: StatusRecorder  # named hubs' status, in the servers database
    outbox: Outbox
    sender: OutboxSender
    pool: BucketPool
    compute: ComputeRunner
    transfer: TransferRunner | None  # transfer: false
    docker: DockerRunner | None  # no docker: section
    checkins: CheckinLoop
    claims: ClaimLoop
    heartbeats: HeartbeatLoop
    availability: AvailabilityLoop | None  # None: neither a schedule nor a nimby section
    status: StatusServer

    @property
    def service(self) -> TransferService | None:
        """The transfer endpoint, which serves this agent's shares."""
        return self.transfer.service if self.transfer is not None else None

    @property
    def pins(self) -> Pins | None:
        """What a node running docker work holds the hub to (agent/pins.py)."""
        return self.docker.runs.pins if self.docker is not None else None


MAX_LOGS = 256  # tasks' outputs in one heartbeat (HeartbeatRequest.logs)


class _Output(Protocol):
    def output(self) -> dict[str, str]: ...


def _outputs(*runners: _Output | None) -> Callable[[], dict[str, str]]:
    """Running tasks' fresh output, of every runner that has some, for the heartbeat."""
    present = [r for r in runners if r is not None]

    def output() -> dict[str, str]:
        out: dict[str, str] = {}
        for runner in present:
            out.update(runner.output())
        # a heartbeat carries at most MAX_LOGS of them (more lanes than that: the others'
        # pieces are left out of the live view; their end reports carry their tails)
        return out if len(out) <= MAX_LOGS else dict(list(out.items())[:MAX_LOGS])

    return output


def docker_folder(config: AgentConfig, data_dir: Path) -> Path:
    """Where docker runs keep their folders, work files and pins."""
    if config.docker is not None and config.docker.folder:
        return Path(config.docker.folder).expanduser()
    return data_dir / "docker"


async def assemble(config: AgentConfig, data_dir: Path, *, agent_id: str, system: bool,
                   state: AgentState, org_key: OrgKey, progress: Progress,
                   hooks: Hooks) -> Parts:
    """Make the parts of the agent whose data is in ``data_dir`` (``system``: a system
    service, whose servers database names hubs). Nothing starts here; blocking look-ups
    (the host's identity, hub names, the first metrics) run in threads."""
    identity = await asyncio.to_thread(Identity.gather)
    targets = await asyncio.to_thread(resolve_hubs, config.hubs, system=system)
    hub_status = StatusRecorder(system=system)
    hub = HubClient(targets, hooks.enroll_request, failback_interval=config.failback_interval,
                    retry_max_delay=config.retry_max_delay,
                    request_timeout=config.request_timeout, on_enrolled=hooks.enrolled,
                    on_retry=hooks.retrying, on_status=hub_status.saw, on_switch=hooks.switched)
    compute_class = cast("type[ComputeRunner]", runner_class(BucketKind.COMPUTE))
    compute = compute_class(CgroupTree(agent_id), agent_id)
    transfer = None
    if config.transfer:
        transfer_class = cast("type[TransferRunner]", runner_class(BucketKind.TRANSFER))
        transfer = transfer_class.build(config, data_dir, hooks.check_in_now)
    docker = None
    if config.docker is not None:
        docker_class = cast("type[DockerRunner]", runner_class(BucketKind.DOCKER))
        docker = docker_class.build(config.docker, docker_folder(config, data_dir), agent_id,
                                    org_key, hub)
    runners: list[Runner] = [r for r in (compute, transfer, docker) if r is not None]
    outbox = Outbox(data_dir / "outbox.sqlite")
    pool = BucketPool(runners, Reporter(outbox, data_dir / "logs"), state)
    service = transfer.service if transfer is not None else None
    sampler = await asyncio.to_thread(MetricsSampler, service.moved_bytes if service else None)
    readings = Readings(state, pool, outbox, service.moved_bytes if service else None)
    checkins = CheckinLoop(hub, identity, sampler, state,
                           on_shares=service.set_shares if service else None, progress=progress)
    return Parts(
        identity=identity, hub=hub, hub_status=hub_status, outbox=outbox,
        sender=OutboxSender(hub, outbox, pool.idle), pool=pool, compute=compute,
        transfer=transfer, docker=docker, checkins=checkins,
        claims=ClaimLoop(hub, pool, state),
        availability=AvailabilityLoop.build(config, state, pool, checkins.soon,
                                            cores=os.cpu_count() or 1),
        heartbeats=HeartbeatLoop(hub, pool, progress=transfer.progress if transfer else None,
                                 output=_outputs(compute, docker),
                                 task_progress=compute.progress,
                                 speed_limits=transfer.speed_limits if transfer else None),
        status=StatusServer(state, config.status_ip, config.status_port, sections={
            "transfer": service.status if service else None,
            "organization_key": org_key.status,
            "docker": docker.runs.status if docker else None}, readings=readings))
