"""A lane that runs each task in a container, through the Docker Engine API.

Hardened by default: no network, a read-only root filesystem, every
capability dropped, ``no-new-privileges``, an unprivileged user, and CPU,
memory (swap included) and pids limits within the node's maxima. The image
must pass the node's ``ImagePolicy``; the container runs by the id that
passed. It sees its own run folder (``/ferry/input`` read-only,
``/ferry/output``, ``/ferry/token``) and its job's temporary folder
(``/ferry/tmp``, shared by the runs of one job on this node), nothing else.

Every container carries labels (``ferry.agent``, ``ferry.run``,
``ferry.job``, …). A lane closed while containers run leaves them running
(``run`` raises ``Detached``); a new lane of the same agent ``adopt``s them,
watches them to their end and reports them; nothing is started twice. A
container the lane has seen end is removed once its state and logs are read,
or, in a lane that keeps ended containers (``keep_ended``), by ``release``:
the agent keeps an ended container until the run's end report is on disk, so
an agent killed in between finds the container and reads its end again.

All Docker SDK calls go to the lane's own thread pool, never on the event
loop; each run's log is followed on a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import structlog
from docker.models.containers import Container

from lanes.base import LaneError
from lanes.containers import (
    ENGINE_ERRORS,
    LABEL,
    DockerOutcome,
    LogFollower,
    RunHandle,
    adopted_handle,
    container_config,
    ended_early,
    prepare_folders,
    read_end,
    remove,
    resolve,
    state_of,
    stop,
)
from lanes.docker_spec import ID, DockerRun, Grant, NodeLimits, SpecError
from lanes.images import ImagePolicy, ImageRefused

log = structlog.get_logger("lanes.docker")

T = TypeVar("T")
POLL = 0.25  # seconds between looks at a running container, at most
FIRST_POLL = 0.02  # the first look after it started; each one after waits twice as long
ENGINE_RETRIES = 30  # looks that may fail in a row (a second apart) before a run is lost
# The engine hears of a container's exit and of its OOM kill as two events, in either order:
# a run killed by SIGKILL under a memory limit is looked at again for this long.
OOM_SETTLE = 3.0


class Detached(LaneError):
    """The lane was closed while the run went on: its container runs on, for ``adopt``."""


@dataclass
class Adopted:
    """A container of this agent found by ``adopt``; ``outcome`` ends with it."""

    run_id: str
    job_id: str
    running: bool  # False: it had ended while no lane watched it
    outcome: asyncio.Task[DockerOutcome]


class DockerLane:
    """Runs containers for one agent; several at once (the lane pool decides how many)."""

    def __init__(self, agent_id: str, base: Path, policy: ImagePolicy,
                 limits: NodeLimits | None = None, *,
                 on_log: Callable[[str, str], None] | None = None,
                 client: Callable[[], docker.DockerClient] = docker.from_env,
                 workers: int = 8, data: Path | None = None,
                 hub_socket: Path | None = None, keep_ended: bool = False) -> None:
        """``on_log(run_id, text)`` is called on the event loop for each piece of a run's
        output; ``client`` makes the engine client (in a thread, on ``start``); ``data`` is
        the node's own data, which every run reads at ``/ferry/data``; ``hub_socket`` the
        agent's way to the hub for runs (``/ferry/hub/hub.sock``); ``keep_ended``: an ended
        container stays (stopped) until ``release``, not only until its end is read."""
        if not ID.fullmatch(agent_id):
            raise LaneError(f"agent id {agent_id!r} cannot name containers")
        self.agent_id = agent_id
        self.base = base
        self.policy = policy
        self.limits = limits or NodeLimits()
        self.data = data
        self.hub_socket = hub_socket
        self._on_log = on_log
        self._make_client = client
        self._client: docker.DockerClient | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docker-lane")
        self._runs: dict[str, RunHandle] = {}
        self._claimed: set[str] = set()  # run ids being started
        self._aborts: dict[str, tuple[str, float | None]] = {}  # for runs being started
        self._gpus_held: set[str] = set()
        self._jobs_done: set[str] = set()  # job folders to remove when their last run ends
        self.keep_ended = keep_ended
        self._ended: dict[str, Container] = {}  # read, kept until release (keep_ended)
        self._tasks: set[asyncio.Task[DockerOutcome]] = set()
        self._closed = False

    async def start(self) -> None:
        """Connect to the engine; ``LaneError`` when it does not answer."""
        try:
            self._client = await self._call(self._make_client)
            await self._call(self._client.ping)
        except ENGINE_ERRORS as exc:
            raise LaneError(f"the Docker engine does not answer: {exc}") from exc
        for sub in ("", "runs", "jobs"):
            await self._call(functools.partial((self.base / sub).mkdir, mode=0o700,
                                               parents=True, exist_ok=True))

    @property
    def closed(self) -> bool:
        return self._closed

    def running(self) -> list[str]:
        """Run ids whose containers this lane watches."""
        return list(self._runs)

    def run_folder(self, run_id: str) -> Path:
        return self.base / "runs" / _checked(run_id)

    def job_folder(self, job_id: str) -> Path:
        return self.base / "jobs" / _checked(job_id)

    async def run(self, spec: DockerRun | Mapping[str, Any]) -> DockerOutcome:
        """Run one container to its end. What goes wrong with the spec, the image or the
        engine is the outcome (``failed`` with a reason); only ``Detached`` is raised."""
        began = time.time()
        try:
            task = spec if isinstance(spec, DockerRun) else DockerRun.parse(spec)
        except SpecError as exc:
            return ended_early("failed", "bad spec", f"bad spec: {exc}", began)
        if self._closed or self._client is None:
            raise LaneError("the lane is not started, or closed")
        if task.run_id in self._runs or task.run_id in self._claimed:
            return ended_early("failed", "duplicate", f"run {task.run_id} is running on this lane "
                          "already", began)
        self._claimed.add(task.run_id)
        try:
            grant = self.limits.grant(task, sorted(set(self.limits.gpus) - self._gpus_held))
            self._gpus_held |= set(grant.gpus)
            created = self._pool.submit(self._create, task, grant, self._log_sink(task.run_id))
            try:
                # shielded: a container made after run() was cancelled is still found and
                # removed (or, on shutdown, left for adopt)
                handle = await asyncio.shield(asyncio.wrap_future(created))
            except BaseException:
                self._gpus_held -= set(grant.gpus)
                created.add_done_callback(self._created_for_nobody)
                raise
        except ImageRefused as exc:
            return ended_early("failed", "image refused", f"image refused: {exc}", began)
        except SpecError as exc:
            return ended_early("failed", "over limits", str(exc), began)
        except (LaneError, OSError, *ENGINE_ERRORS) as exc:
            log.warning("a container did not start", run=task.run_id, error=str(exc))
            return ended_early("failed", "not started", f"the container did not start: {exc}", began)
        finally:
            self._claimed.discard(task.run_id)
            pending = self._aborts.pop(task.run_id, None)
        self._runs[task.run_id] = handle
        if pending is not None:
            handle.stopping = pending[0]
            self._pool.submit(self._stop, handle, handle.grace if pending[1] is None
                              else pending[1])
        return await self._follow_through(handle)

    async def abort(self, run_id: str, grace: float | None = None,
                    reason: str = "aborted") -> bool:
        """``docker stop`` with ``grace`` (the run's own when None), then KILL; returns once
        the container has stopped. False when the run is not watched here or is being
        stopped already."""
        handle = self._runs.get(run_id)
        if run_id in self._claimed and handle is None and not self._closed:
            self._aborts.setdefault(run_id, (reason, grace))  # stopped once it has started
            return True
        if handle is None or handle.stopping is not None or self._closed:
            return False
        handle.stopping = reason
        await self._call(self._stop, handle, handle.grace if grace is None else grace)
        return True

    async def adopt(self) -> list[Adopted]:
        """Watch this agent's labelled containers that no lane watches: running ones to
        their end, ended ones are read and removed at once; none is started again."""
        assert self._client is not None, "start() first"
        found = await self._call(self._client.containers.list, all=True,
                                 filters={"label": f"{LABEL}.agent={self.agent_id}"})
        adopted = []
        for container in found:
            labels = container.labels
            run_id = labels.get(f"{LABEL}.run", "")
            if run_id in self._runs or run_id in self._claimed or run_id in self._ended \
                    or not ID.fullmatch(run_id):
                continue
            handle = adopted_handle(container, self.run_folder(run_id) / "log")
            if container.status == "created":  # the agent stopped between create and start
                await self._call(remove, container)
                log.info("removed a container that never started", run=run_id)
                continue
            self._runs[run_id] = handle
            self._gpus_held |= set(handle.gpus)
            handle.follower = LogFollower(handle, self._log_sink(run_id), fresh=True)
            handle.follower.start()
            task = asyncio.create_task(self._follow_through(handle), name=f"adopted-{run_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            adopted.append(Adopted(run_id, handle.job_id, container.status not in ("exited", "dead"),
                                   task))
        return adopted

    async def release(self, run_id: str) -> bool:
        """Remove a run's ended container (when the lane keeps them), then its folder, once
        its output is taken; False while it runs."""
        if run_id in self._runs or run_id in self._claimed:
            return False
        container = self._ended.pop(run_id, None)
        if container is not None:
            await self._call(remove, container)
        await self._call(shutil.rmtree, self.run_folder(run_id), True)
        return True

    async def job_done(self, job_id: str) -> None:
        """Remove the job's temporary folder (after its last run here, if some still run)."""
        folder = self.job_folder(job_id)
        if any(h.job_id == job_id for h in self._runs.values()):
            self._jobs_done.add(job_id)
            return
        await self._call(shutil.rmtree, folder, True)

    async def close(self) -> None:
        """Stop watching; running containers go on, for the next lane's ``adopt`` (so do
        ended ones not yet released: the next lane reads their end again). Safe to call
        twice."""
        if self._closed:
            return
        self._closed = True
        for handle in self._runs.values():
            if handle.follower is not None:
                handle.follower.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._call(self._client.close)
        self._pool.shutdown(wait=False)

    # -- on the event loop
    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def _log_sink(self, run_id: str) -> Callable[[str], None] | None:
        if self._on_log is None:
            return None
        loop, hook = asyncio.get_running_loop(), self._on_log

        def sink(text: str) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(hook, run_id, text)
        return sink

    async def _follow_through(self, handle: RunHandle) -> DockerOutcome:
        try:
            state = await self._watch(handle)
            outcome = await self._call(self._finish, handle, state)
            if self.keep_ended:
                self._ended[handle.run_id] = handle.container
            return outcome
        except asyncio.CancelledError:
            if not self._closed:  # not a shutdown: the container must not outlive its run
                self._pool.submit(remove, handle.container)
            raise
        finally:
            if self._closed and handle.follower is not None:
                handle.follower.stop()
            self._runs.pop(handle.run_id, None)
            self._gpus_held -= set(handle.gpus)
            if handle.job_id in self._jobs_done and \
                    not any(h.job_id == handle.job_id for h in self._runs.values()):
                self._jobs_done.discard(handle.job_id)
                if not self._closed:
                    self._pool.submit(shutil.rmtree, self.job_folder(handle.job_id), True)

    async def _watch(self, handle: RunHandle) -> dict[str, Any]:
        """Until the container has ended; stops it when it runs past its timeout."""
        failures = 0
        delay = FIRST_POLL  # a short run is seen ending at once, a long one costs no more
        while True:
            if self._closed:
                raise Detached(f"the lane closed; run {handle.run_id} goes on unwatched")
            try:
                state = await self._call(state_of, handle.container)
                failures = 0
            except docker.errors.NotFound:
                return {"Status": "gone"}
            except (*ENGINE_ERRORS, RuntimeError) as exc:
                if self.closed:
                    continue
                failures += 1
                if failures > ENGINE_RETRIES:
                    return {"Status": "lost", "Error": f"the Docker engine does not answer: {exc}"}
                log.warning("the Docker engine did not answer", run=handle.run_id, error=str(exc))
                await asyncio.sleep(1.0)
                continue
            if state.get("Status") in ("exited", "dead"):
                return await self._settled(handle, state)
            if handle.stopping is None and handle.timeout is not None and \
                    time.time() >= handle.started + handle.timeout:
                handle.stopping = f"timed out after {handle.timeout:g} s"
                self._pool.submit(self._stop, handle, handle.grace)
            await asyncio.sleep(delay)
            delay = min(POLL, delay * 2)

    # -- on the lane's threads
    def _create(self, task: DockerRun, grant: Grant,
                sink: Callable[[str], None] | None) -> RunHandle:
        assert self._client is not None
        image = resolve(self._client, task.image)
        refusal = self.policy.refusal(image)
        if refusal is not None:
            raise ImageRefused(refusal)
        folder, job_folder = self.run_folder(task.run_id), self.job_folder(task.job_id)
        prepare_folders(task, grant.user, folder, job_folder)
        labels = {f"{LABEL}.agent": self.agent_id, f"{LABEL}.run": task.run_id,
                  f"{LABEL}.job": task.job_id, f"{LABEL}.grace": f"{task.grace:g}",
                  f"{LABEL}.started": f"{time.time():.3f}", f"{LABEL}.image": image.id}
        if task.timeout is not None:
            labels[f"{LABEL}.timeout"] = f"{task.timeout:g}"
        config = container_config(task, grant, folder, job_folder, self.data, self.hub_socket)
        try:
            container = self._client.containers.create(
                image.id, name=f"ferry-{self.agent_id}-{task.run_id}", labels=labels, **config)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise LaneError(f"a container for run {task.run_id} exists already on this "
                                "engine (adopt() takes it over)") from exc
            raise LaneError(exc.explanation or str(exc)) from exc
        try:
            container.start()
        except docker.errors.APIError as exc:
            remove(container)
            raise LaneError(exc.explanation or str(exc)) from exc
        handle = RunHandle(task.run_id, task.job_id, container, folder / "log", task.grace,
                           task.timeout, float(labels[f"{LABEL}.started"]), image.id,
                           grant.memory, grant.gpus)
        handle.follower = LogFollower(handle, sink, fresh=False)
        handle.follower.start()
        return handle

    def _created_for_nobody(self, created: Future[RunHandle]) -> None:
        """A container made for a run() that was cancelled meanwhile."""
        if created.cancelled() or created.exception() is not None:
            return
        handle = created.result()
        if not self._closed:
            if handle.follower is not None:
                handle.follower.stop()
            remove(handle.container)

    def _stop(self, handle: RunHandle, grace: float) -> None:
        stop(handle, grace)

    async def _settled(self, handle: RunHandle, state: dict[str, Any]) -> dict[str, Any]:
        """The ended state once the engine has had time to mark an OOM kill: a SIGKILL
        that Ferry did not send, to a run under a memory limit, may be the kernel's."""
        if state.get("OOMKilled") or state.get("ExitCode") != 128 + signal.SIGKILL or \
                handle.memory is None or handle.stopping is not None:
            return state
        deadline = time.monotonic() + OOM_SETTLE
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            try:
                again = await self._call(state_of, handle.container)
            except (docker.errors.NotFound, *ENGINE_ERRORS, RuntimeError):
                break
            if again.get("OOMKilled"):
                return again
        return state

    def _finish(self, handle: RunHandle, state: dict[str, Any]) -> DockerOutcome:
        """Read the ended container's end and logs, then remove it (unless the lane keeps
        ended containers until ``release``)."""
        return read_end(handle, state, remove_it=not self.keep_ended)


def _checked(ident: str) -> str:
    if not ID.fullmatch(ident):
        raise SpecError(f"{ident!r:.80} is not a run or job id")
    return ident
