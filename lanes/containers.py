"""One run's container: its hardened configuration, its folders, its labels, its log.

The lane (``lanes.docker_lane``) decides when; this module knows what a run's
container looks like. Everything here blocks: it runs on the lane's threads.
"""

from __future__ import annotations

import codecs
import contextlib
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions
import structlog
from docker.models.containers import Container
from docker.types import DeviceRequest, LogConfig, Mount

from lanes.base import Outcome, Status
from lanes.docker_spec import DockerRun, Grant
from lanes.images import ImageRefused, ResolvedImage
from lanes.oom import TASK_OOM_SCORE
from protocol import LOG_TAIL_BYTES

log = structlog.get_logger("lanes.docker")

MOUNT = "/ferry"
TMPFS_SIZE = 64 << 20  # the container's /tmp (in memory, counted in its memory limit)
LABEL = "ferry"  # label prefix: ferry.agent, ferry.run, ferry.job, ferry.grace, …
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


@dataclass
class RunHandle:
    """A container the lane watches."""

    run_id: str
    job_id: str
    container: Container
    log: Path
    grace: float
    timeout: float | None
    started: float
    image_id: str
    memory: int | None
    gpus: tuple[str, ...] = ()
    stopping: str | None = None  # why it is being stopped
    follower: LogFollower | None = None


def prepare_folders(task: DockerRun, user: tuple[int, int], folder: Path,
                    job_folder: Path) -> None:
    """A fresh run folder (input/, output/, token, log), and the job's folder when it has
    none yet, both the container user's."""
    shutil.rmtree(folder, ignore_errors=True)  # a folder of an earlier attempt
    (folder / "input").mkdir(mode=0o700, parents=True)
    (folder / "output").mkdir(mode=0o700)
    for name, content in task.inputs.items():
        path = folder / "input" / name
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_bytes(content)
    (folder / "token").write_text(task.token, encoding="utf-8")
    (folder / "log").touch()
    hand_over(folder / "input", user, writable=False)
    hand_over(folder / "output", user, writable=True)
    hand_over(folder / "token", user, writable=False)
    with contextlib.suppress(FileExistsError):  # the job's first run here makes it its own
        job_folder.mkdir(mode=0o700)
        hand_over(job_folder, user, writable=True)


class LogFollower(threading.Thread):
    """Copies a container's output into the run's log (and to ``sink``) until it ends."""

    def __init__(self, handle: RunHandle, sink: Callable[[str], None] | None, *, fresh: bool):
        super().__init__(name=f"docker-log-{handle.run_id}", daemon=True)
        self.handle, self.sink, self.fresh = handle, sink, fresh
        self._stream: Any = None
        self._stopped = threading.Event()

    def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            self._stream = self.handle.container.logs(stream=True, follow=True)
            if self._stopped.is_set():
                self._close()
            # an adopted run's log is written again from the container's first line
            if self.fresh:
                self.handle.log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.handle.log, "wb" if self.fresh else "ab") as fh:
                for chunk in self._stream:
                    fh.write(chunk)
                    fh.flush()
                    if self.sink is not None:
                        self.sink(decoder.decode(chunk))
        except (OSError, *ENGINE_ERRORS) as exc:
            if not self._stopped.is_set():
                log.warning("following a container's log failed", run=self.handle.run_id,
                            error=str(exc))

    def stop(self) -> None:
        self._stopped.set()
        self._close()

    def _close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()


def container_config(task: DockerRun, grant: Grant, folder: Path,
                     job_folder: Path, data: Path | None = None,
                     hub_socket: Path | None = None) -> dict[str, Any]:
    """The hardened ``containers.create`` arguments for a run (image, name, labels aside).
    ``data``: the node's own data, read-only at ``/ferry/data``; ``hub_socket``: the
    agent's way to the hub for runs, at ``/ferry/hub/<its name>``."""
    mounts = [Mount(f"{MOUNT}/input", str(folder / "input"), type="bind", read_only=True),
              Mount(f"{MOUNT}/output", str(folder / "output"), type="bind"),
              Mount(f"{MOUNT}/token", str(folder / "token"), type="bind", read_only=True),
              Mount(f"{MOUNT}/tmp", str(job_folder), type="bind")]
    if data is not None:
        mounts.append(Mount(f"{MOUNT}/data", str(data), type="bind", read_only=True))
    if hub_socket is not None:  # its folder: a socket made again later is seen too
        mounts.append(Mount(f"{MOUNT}/hub", str(hub_socket.parent), type="bind"))
    env = {**task.env, "FERRY_RUN_ID": task.run_id, "FERRY_JOB_ID": task.job_id,
           "FERRY_INPUT": f"{MOUNT}/input", "FERRY_OUTPUT": f"{MOUNT}/output",
           "FERRY_TOKEN_FILE": f"{MOUNT}/token", "FERRY_TEMP": f"{MOUNT}/tmp",
           **({"FERRY_DATA": f"{MOUNT}/data"} if data is not None else {}),
           **({"FERRY_HUB_SOCKET": f"{MOUNT}/hub/{hub_socket.name}"}
              if hub_socket is not None else {})}
    config: dict[str, Any] = {
        "command": list(task.command) if task.command else None, "environment": env,
        "user": f"{grant.user[0]}:{grant.user[1]}", "working_dir": MOUNT,
        "network_mode": "none", "read_only": True, "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"], "ipc_mode": "private",
        "mem_limit": grant.memory, "memswap_limit": grant.memory,  # no swap beyond memory
        "oom_score_adj": TASK_OOM_SCORE,  # should the node run short, before the agent
        "nano_cpus": int(grant.cpus * 1e9), "pids_limit": grant.pids,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={min(TMPFS_SIZE, grant.memory)}"},
        "mounts": mounts,
        "log_config": LogConfig(type="json-file", config={"max-size": "50m", "max-file": "2"}),
    }
    if grant.gpus:
        config["device_requests"] = [DeviceRequest(driver="nvidia", device_ids=list(grant.gpus),
                                                   capabilities=[["gpu"]])]
    return config


def adopted_handle(container: Container, log_path: Path) -> RunHandle:
    """A handle for a container a lane before this one started, from its labels."""
    labels, attrs = container.labels, container.attrs
    host = attrs.get("HostConfig") or {}
    gpus = tuple(d for r in host.get("DeviceRequests") or () for d in r.get("DeviceIDs") or ())
    timeout = labels.get(f"{LABEL}.timeout")
    return RunHandle(labels[f"{LABEL}.run"], labels.get(f"{LABEL}.job", ""), container,
                     log_path, _float(labels.get(f"{LABEL}.grace"), 10.0),
                     None if timeout is None else _float(timeout, 0.0),
                     _float(labels.get(f"{LABEL}.started"), time.time()),
                     labels.get(f"{LABEL}.image", attrs.get("Image", "")),
                     host.get("Memory") or None, gpus)


def hand_over(path: Path, user: tuple[int, int], *, writable: bool) -> None:
    """Make ``path`` (and what is in it) the container user's. An agent that is neither
    root nor that user opens the modes instead: the base folder (0700) still keeps every
    other host user out, and no other container mounts it."""
    own = hasattr(os, "getuid") and (os.getuid(), os.getgid()) == user
    chown = not own and hasattr(os, "getuid") and os.getuid() == 0
    for item in [path, *(path.rglob("*") if path.is_dir() else ())]:
        if chown:
            os.chown(item, *user, follow_symlinks=False)
        if item.is_dir():
            mode = 0o700 if own or chown else 0o777
            os.chmod(item, mode if writable else mode & 0o555)
        else:
            mode = 0o600 if own or chown else 0o666
            os.chmod(item, mode if writable else mode & 0o444)


def resolve(client: Any, ref: str) -> ResolvedImage:
    """The image ``ref`` as the engine knows it, to check against the node's policy.
    Never pulls."""
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound as exc:
        raise ImageRefused(f"image {ref} is not on this node (Ferry does not pull images)") \
            from exc
    except docker.errors.APIError as exc:
        raise ImageRefused(f"image {ref} cannot be looked up: {exc.explanation or exc}") from exc
    attrs = image.attrs
    return ResolvedImage(requested=ref, id=attrs["Id"], tags=tuple(attrs.get("RepoTags") or ()),
                         repo_digests=tuple(attrs.get("RepoDigests") or ()))


def state_of(container: Container) -> dict[str, Any]:
    container.reload()
    state: dict[str, Any] = container.attrs.get("State") or {}
    return state


def remove(container: Container) -> None:
    """Remove a container (running or not); one already gone is fine."""
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except ENGINE_ERRORS as exc:  # "removal already in progress", or the engine went away
        log.warning("removing a container failed", container=container.id, error=str(exc))


def stop(handle: RunHandle, grace: float) -> None:
    """``docker stop`` with ``grace`` (TERM, then KILL); a kill when the stop fails."""
    try:
        handle.container.stop(timeout=math.ceil(grace))
    except docker.errors.NotFound:
        pass
    except ENGINE_ERRORS:
        log.warning("docker stop failed; killing", run=handle.run_id, exc_info=True)
        with contextlib.suppress(*ENGINE_ERRORS):
            handle.container.kill()


def read_end(handle: RunHandle, state: dict[str, Any], *, remove_it: bool) -> DockerOutcome:
    """The outcome of an ended container, once its log is complete; the container is
    removed after when ``remove_it``, else left (stopped) for its owner to remove."""
    if handle.follower is not None:
        handle.follower.join(10.0)
        handle.follower.stop()
    if state.get("ExitCode") == 137 and not state.get("OOMKilled") \
            and handle.memory is not None and handle.stopping is None:
        # killed, with a memory limit, and not by us: the engine may learn of an OOM kill
        # after the exit (the kernel's two events race), so ask it again before removing
        with contextlib.suppress(*ENGINE_ERRORS):
            state = {**state, "OOMKilled": bool(state_of(handle.container).get("OOMKilled"))}
    if remove_it:
        remove(handle.container)
    status, reason, message = ending(handle, state)
    log_tail, size = tail(handle.log)
    return DockerOutcome(status=status, exit_code=state.get("ExitCode"), message=message,
                         started=handle.started, ended=time.time(), log_tail=log_tail,
                         log_size=size, reason=reason, image_id=handle.image_id,
                         container_id=handle.container.id, output=handle.log.parent / "output")


def describe(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code > 128:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(code - 128).name}, exit code {code}"
    return f"exit code {code}"


def mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def _float(text: str | None, default: float) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default


def tail(path: Path) -> tuple[str, int]:
    """The end of the log that the outcome carries, and the log's size."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace"), size
    except OSError:
        return "", 0


@dataclass(frozen=True)
class DockerOutcome(Outcome):
    """An ``Outcome`` with a short ``reason`` ("image refused", "OOM killed", "aborted", …;
    empty when done) and where the run's files are."""

    reason: str = ""
    image_id: str | None = None
    container_id: str | None = None
    output: Path | None = None


def ended_early(status: Status, reason: str, message: str, began: float) -> DockerOutcome:
    """The outcome of a run that never had a container (or lost it before it started)."""
    return DockerOutcome(status=status, exit_code=None, message=message, started=began,
                         ended=time.time(), reason=reason)


def ending(handle: RunHandle, state: dict[str, Any]) -> tuple[Status, str, str]:
    """How a run ended, from its container's last state: status, reason and message."""
    code = state.get("ExitCode")
    status: Status
    if state.get("Status") == "gone":
        status, reason, message = "failed", "container gone", \
            "the container was removed by someone else while it ran"
    elif state.get("Status") == "lost":
        status, reason, message = "failed", "engine lost", "the run's end is unknown"
    elif state.get("OOMKilled"):
        status, reason = "failed", "OOM killed"
        limit = "" if handle.memory is None else f"memory limit {mib(handle.memory)}, "
        message = f"OOM killed ({limit}{describe(code)})"
    elif handle.stopping is not None:
        timed_out = handle.stopping.startswith("timed out")
        status, reason = ("failed", "timed out") if timed_out else ("aborted", "aborted")
        message = f"{handle.stopping} ({describe(code)})"
    elif code == 0:
        status, reason, message = "done", "", ""
    else:
        status, reason, message = "failed", f"exit code {code}", describe(code)
    if state.get("Error"):
        message = f"{message}: {state['Error']}"
    return status, reason, message
