"""The agent's docker slots: organizations' runs of docker jobs, in hardened containers.

A docker bucket holds one run. Its input is opened here (in an encrypted
collaboration: an envelope the initiating organization sealed for ours), the
container runs in the ``DockerLane``, and what the algorithm wrote to
``/ferry/output/result`` goes back as the run's result (sealed for the
initiating organization, signed with ours). What is wrong with the input, the
image or the result fails that run with the reason; the agent goes on.

Before anything of the input is opened, the hub's word on the run's sealing is
held to what this node pinned (agent/pins.py): a run sent unencrypted in a
collaboration that was encrypted at enrollment, or naming another key for the
initiating organization than the pinned one, is refused (failed, saying why,
and counted in ``core.refusals`` as ``sealing``); no container is made.

Each run's work is kept on disk (``work/<run id>.json``) from before its
container starts until the hub has answered for its end report, so a run's
end is never lost to an agent killed on the way. In order:

1. the work file is written; the container runs and ends;
2. its end is read (the container stays, stopped) and the result taken from its
   output folder (``run``); the caller writes the end report to the outbox,
   durably, and only then calls ``release``, which does the rest:
3. the work file is marked reported (renamed ``<run id>.json.reported``);
4. the container and the run's folder are removed;
5. once the hub has answered for the report, the work file is removed.

A restarted agent (its outbox is sent first) finds the container of a run
killed before 4 and reads its end again (adoption: the lease is kept,
``ResetRequest.keep``, nothing is started twice, and a report written before
is not applied twice: same key). A work file marked reported whose container
is gone keeps the lease too, until the hub has answered for the report. One
not marked whose container is gone never ended here (it never started, or
someone removed it): it is forgotten, and the hub takes the run back.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import structlog

from agent.config import DockerConfig
from agent.orgkey import OrgKey
from agent.pins import PIN_FILE, Pins
from agent.run_proxy import RunProxy
from core import refusals
from core.config import write_atomic
from core.tasks import Supervisor
from lanes import LaneError
from lanes.containers import DockerOutcome, ended_early
from lanes.docker_lane import Adopted, DockerLane
from lanes.docker_spec import ID, DockerRun, NodeLimits, SpecError, detect_gpus
from lanes.images import ImagePolicy
from protocol import LOG_TAIL_BYTES, MAX_RESULT, BucketWork, DockerWork, TaskWork, sealing

log = structlog.get_logger("agent.docker")

REPORTED = ".json.reported"  # a work file's name once its run's end report is on disk
RESULT_FILE = "result"  # /ferry/output/result: what goes back as the run's result
RAW_RESULT = MAX_RESULT * 2 // 3  # bytes of a result before sealing (base64 grows it)


@dataclass(frozen=True)
class RunEnd:
    """A run's outcome, with its result ('' when none) and where its log is."""

    outcome: DockerOutcome
    result: str | None
    log: Path | None


class DockerRuns:
    """Runs docker buckets for the docker runner (agent/buckets/docker.py); ``start``
    connects and finds the runs an earlier agent left."""

    def __init__(self, config: DockerConfig, base: Path, agent_id: str, org_key: OrgKey,
                 hub: Callable[[], str]) -> None:
        self.config = config
        self.base = base
        self.agent_id = agent_id
        self.org_key = org_key
        self.hub_url = hub
        self.pins = Pins(base / PIN_FILE)  # enrollments are pinned there too (collaboration.py)
        self.slots = config.slots
        self.lane: DockerLane | None = None
        self.problem = ""  # why docker runs are not taken ('' when they are)
        self.gpus: list[dict[str, Any]] = []
        self.data = Path(config.data).expanduser().absolute() if config.data else None
        self.proxy = RunProxy(hub, base / "proxy" / "hub.sock")
        self._fresh: dict[str, str] = {}  # output of running runs not yet sent to the hub
        self._forgetting = Supervisor("docker runs' saved work")  # each awaiting the hub

    @property
    def ready(self) -> bool:
        return self.lane is not None and not self.lane.closed

    def status(self) -> dict[str, Any]:
        return {"ready": self.ready, "problem": self.problem or None, "slots": self.slots,
                "running": self.lane.running() if self.lane else [],
                "pins": self.pins.status()}

    async def start(self) -> list[tuple[BucketWork, Adopted | None]]:
        """Connect to the engine and adopt this agent's containers that still run (or
        ended while it was down); their buckets, to keep. Runs whose work is saved but
        whose container is gone come with no ``Adopted``: their end report was written
        before the container went (keep the lease until it is sent, ``forget_when``). An
        engine that does not answer is a problem in the status, not a failure of the
        agent."""
        self.gpus = await asyncio.to_thread(detect_gpus)
        limits = NodeLimits(cpus=self.config.cpus, memory=self.config.memory_bytes,
                            pids=self.config.pids, allow_root=self.config.allow_root,
                            gpus=tuple(str(g["uuid"] or g["index"]) for g in self.gpus))
        data = self.data
        if data is not None and not await asyncio.to_thread(data.is_dir):
            self.problem = f"docker.data: {data} is not a folder"
            log.error("docker runs are off", problem=self.problem)
            return []
        lane = DockerLane(self.agent_id, self.base, ImagePolicy.build(
            self.config.images.names, self.config.images.patterns, self.config.images.digests),
            limits, data=data, hub_socket=self.proxy.socket, on_log=self._output,
            keep_ended=True)  # removed by release, once the run's end report is on disk
        try:
            await lane.start()
        except LaneError as exc:
            self.problem = str(exc)
            log.error("docker runs are off: the engine does not answer", error=str(exc))
            await lane.close()
            return []
        self.lane, self.problem = lane, ""
        try:
            await self.proxy.start()
        except (OSError, AttributeError) as exc:  # AttributeError: no Unix sockets here
            log.warning("runs cannot reach the hub: its socket for them did not start",
                        error=str(exc))
        await asyncio.to_thread((self.base / "work").mkdir, mode=0o700, exist_ok=True)
        kept: list[tuple[BucketWork, Adopted | None]] = []
        found = await lane.adopt()
        for adopted in found:
            work = self._saved(adopted.run_id)
            if work is None:  # not ours to report: stop it, the hub gave the run away
                log.warning("a container with no saved work; stopping it", run=adopted.run_id)
                await lane.abort(adopted.run_id, 0, "its work is unknown")
                with contextlib.suppress(Exception):
                    await adopted.outcome
                await lane.release(adopted.run_id)
                continue
            log.info("adopted a run's container", run=adopted.run_id, bucket=work.id,
                     running=adopted.running)
            kept.append((work, adopted))
        return kept + await self._reported({a.run_id for a in found})

    async def _reported(self, adopted: set[str]) -> list[tuple[BucketWork, None]]:
        """Saved work of runs whose containers are gone: those marked reported, to keep
        until the hub has their report; the others are forgotten (see the module's
        docstring). Their folders go."""
        assert self.lane is not None
        names = await asyncio.to_thread(lambda: sorted(p.name for p in (self.base / "work")
                                                       .iterdir()))
        reported: list[tuple[BucketWork, None]] = []
        for name in names:
            marked = name.endswith(REPORTED)
            run_id = name.removesuffix(REPORTED) if marked else name.removesuffix(".json")
            if run_id == name or run_id in adopted or not ID.fullmatch(run_id):
                continue  # not a work file (a temporary one), or its container is adopted
            work = await asyncio.to_thread(self._saved, run_id)
            task = work.tasks[0] if work is not None and work.tasks else None
            if task is not None and task.docker is not None:
                await self.lane.release(run_id)
                await self.lane.job_done(task.docker.job_id)
            if work is None or not marked:
                log.warning("a run's container is gone and its end was never reported; the "
                            "hub takes it back", run=run_id)
                await asyncio.to_thread(self._forget, run_id)
                continue
            log.info("a run reported before the restart; its lease is kept until the hub has "
                     "the report", run=run_id, bucket=work.id)
            reported.append((work, None))
        return reported

    async def close(self) -> None:
        """Stop watching; containers still running go on, for the next start to adopt.
        Work files still waiting for the hub stay, for the next start."""
        await self._forgetting.close()
        if self.lane is not None:
            await self.lane.close()
        await self.proxy.close()

    def _output(self, run_id: str, text: str) -> None:
        """A piece of a run's output (on the loop): kept until the next heartbeat takes it."""
        self._fresh[run_id] = (self._fresh.get(run_id, "") + text)[-LOG_TAIL_BYTES:]

    def take_output(self) -> dict[str, str]:
        """Output of running runs since the last call (task id: text), for the heartbeat."""
        fresh, self._fresh = self._fresh, {}
        return fresh

    def _work_file(self, run_id: str, reported: bool = False) -> Path:
        return self.base / "work" / f"{run_id}{REPORTED if reported else '.json'}"

    def _saved(self, run_id: str) -> BucketWork | None:
        for reported in (False, True):
            try:
                return msgspec.json.decode(self._work_file(run_id, reported).read_bytes(),
                                           type=BucketWork)
            except FileNotFoundError:
                continue
            except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                return None
        return None

    def _mark_reported(self, run_id: str) -> None:
        """Its end report is on disk: so says the work file, before the container goes."""
        try:
            os.replace(self._work_file(run_id), self._work_file(run_id, reported=True))
        except FileNotFoundError:
            return  # no work file: the run never had a container
        fd = os.open(self.base / "work", os.O_RDONLY)
        try:  # the rename itself on disk, before the container's removal
            os.fsync(fd)
        finally:
            os.close(fd)

    def _forget(self, run_id: str) -> None:
        self._work_file(run_id).unlink(missing_ok=True)
        self._work_file(run_id, reported=True).unlink(missing_ok=True)

    async def run(self, bucket: BucketWork, task: TaskWork,
                  adopted: Adopted | None = None) -> RunEnd:
        """One run to its end (or an adopted one's end); never raises for the run's own
        trouble."""
        began = time.time()
        work = task.docker
        if self.lane is None or work is None:
            return RunEnd(ended_early("failed", "not started", "docker runs are off on this "
                                      f"agent: {self.problem or 'no docker work'}", began),
                          None, None)
        if adopted is not None:
            outcome = await adopted.outcome
        else:
            why = await self._refusal(work)
            if why:
                refusals.refused("sealing", self.hub_url(), why, task=task.id,
                                 organization=work.initiator)
                return RunEnd(ended_early("failed", "refused", f"refused by the node: {why}",
                                          began), None, None)
            try:
                data = self._open_input(work)
            except sealing.SealError as exc:
                log.warning("a run's input does not open", task=task.id, error=str(exc))
                return RunEnd(ended_early("failed", "bad input", f"input: {exc}", began),
                              None, None)
            try:
                spec = DockerRun.parse(_spec(task.id, work, data))
            except SpecError as exc:
                return RunEnd(ended_early("failed", "bad spec", f"bad spec: {exc}", began),
                              None, None)
            await asyncio.to_thread(write_atomic, self._work_file(task.id),
                                    msgspec.json.encode(bucket))
            outcome = await self.lane.run(spec)
        result = None
        if outcome.status == "done" and outcome.output is not None:
            try:
                result = await asyncio.to_thread(self._result, outcome.output, work)
            except ValueError as exc:
                outcome = replace(outcome, status="failed", reason="bad result",
                                  message=str(exc))
        folder = self.lane.run_folder(task.id)
        return RunEnd(outcome, result, folder / "log" if (folder / "log").exists() else None)

    async def release(self, task_id: str, job_group: str,
                      sent: Awaitable[object] | None) -> None:
        """Forget a run whose end report is on disk (or that has none to give: its lease
        was lost): its container, its folder, its job's temporary folder when no other
        run of the job runs here, and its saved work once ``sent`` is done."""
        self._fresh.pop(task_id, None)
        if sent is not None:
            try:
                await asyncio.to_thread(self._mark_reported, task_id)
            except BaseException:
                if inspect.iscoroutine(sent):  # never to be awaited now: no warning for it
                    sent.close()
                raise
        if self.lane is not None:
            await self.lane.release(task_id)
            await self.lane.job_done(job_group)
        self.forget_when(task_id, sent)

    def forget_when(self, task_id: str, sent: Awaitable[object] | None) -> None:
        """Remove the run's saved work once ``sent`` (the hub has answered for its end
        report) is done, at once when None. Until then a restarted agent keeps its
        lease."""
        if self._forgetting.closed:  # stopping: the next start finds the work file
            if inspect.iscoroutine(sent):  # never to be awaited now: no warning for it
                sent.close()
            return

        async def forget() -> None:
            try:
                if sent is not None:
                    await sent
                await asyncio.to_thread(self._forget, task_id)
            except Exception as exc:  # the outbox closed, or the disk failed: kept is safe
                log.warning("a run's saved work stays for the next start", run=task_id,
                            error=str(exc))

        self._forgetting.spawn(forget(), name=f"forget-{task_id}")

    async def abort(self, task_id: str, reason: str, grace: float | None = None) -> None:
        if self.lane is not None:
            await self.lane.abort(task_id, grace, reason)

    async def _refusal(self, work: DockerWork) -> str:
        """Why this run must not go on, from what the node knows better than the hub
        ('' when it may): whose run it is, and its sealing against the pins."""
        own = self.org_key.organization
        if own is not None and work.organization != own:
            return f"the run is for organization {work.organization}, and this node is " \
                   f"of organization {own}"
        try:
            return await asyncio.to_thread(self.pins.refusal, work, self.org_key.public)
        except OSError as exc:  # a key seen first that cannot be pinned is not trusted
            return f"cannot pin the initiating organization's key in {self.pins.path}: " \
                   f"{exc.strerror or exc}"

    # -- input and result (in a thread or on the loop: small, bounded work)
    def _open_input(self, work: DockerWork) -> bytes:
        if not work.encrypted:
            return work.input.encode()
        key = self.org_key.private
        if key is None:
            raise sealing.SealError(f"this node has no usable organization key "
                                    f"({self.org_key.problem or 'not settled yet'})")
        if not work.initiator_key:
            raise sealing.SealError(f"organization {work.initiator} has published no public "
                                    "key: its seal cannot be checked")
        return sealing.open_sealed(work.input, reader=work.organization, reader_key=key,
                                   sender_public=work.initiator_key)

    def _result(self, output: Path, work: DockerWork) -> str | None:
        path = output / RESULT_FILE
        if not path.is_file() or path.is_symlink():
            return None  # the run gave no result
        size = path.stat().st_size
        limit = RAW_RESULT if work.encrypted else MAX_RESULT
        if size > limit:
            raise ValueError(f"the result ({size} bytes) is larger than {limit} bytes; send "
                             "big results by transfer")
        data = path.read_bytes()
        if not work.encrypted:
            try:
                text = data.decode("utf-8")
                if "\0" in text:
                    raise UnicodeDecodeError("utf-8", data, data.index(0), data.index(0) + 1,
                                             "NUL")
                return text
            except UnicodeDecodeError:
                raise ValueError("the result is not UTF-8 text without NUL characters (in a "
                                 "collaboration that is not encrypted, results are text; "
                                 "encode binary data)"
                                 ) from None
        key = self.org_key.private
        if key is None:
            raise ValueError("this node has no organization key to seal the result with")
        return sealing.seal(data, sender=work.organization, sender_key=key,
                            recipients={work.initiator: work.initiator_key}).decode()


def _spec(task_id: str, work: DockerWork, data: bytes) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "run_id": task_id, "job_id": work.job_id, "image": work.image, "env": work.env,
        "inputs": {"input": data}, "token": work.token, "grace": work.grace}
    for key in ("command", "cpus", "memory", "pids", "timeout", "user"):
        if getattr(work, key) is not None:
            spec[key] = getattr(work, key)
    if work.gpus:
        spec["gpus"] = work.gpus
    return spec


def move_log(log: Path | None, to: Path) -> bool:
    """The run's log where the agent's other task logs are (for the upload); False when
    there is none."""
    if log is None:
        return False
    to.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        shutil.move(log, to)
        return True
    return False
