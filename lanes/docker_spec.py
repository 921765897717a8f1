"""What a Docker run asks for, checked, and what the node allows.

``DockerRun.parse`` turns the JSON a task carries into a ``DockerRun`` and
says exactly what is wrong when it cannot (``SpecError``, naming the key);
``NodeLimits.grant`` turns what a run asks for into what it gets: a request
within the node's maxima is granted as asked, one without a request gets the
maximum, one over it is refused with both numbers.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from lanes.base import LaneError
from protocol.docker import parse_size

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
USER = re.compile(r"(\d{1,10})(?::(\d{1,10}))?")
NOBODY = (65534, 65534)
MAX_INPUT_BYTES = 64 << 20  # input files come inside the task; big data goes by transfer


class SpecError(LaneError):
    """A run's spec is malformed, or asks for more than the node allows."""


@dataclass(frozen=True)
class DockerRun:
    """One container run. ``inputs`` are written into the run's ``input/`` folder (names
    relative, ``/`` between folders); ``token`` into its token file."""

    run_id: str
    job_id: str
    image: str
    command: tuple[str, ...] | None = None  # None: the image's own
    env: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, bytes] = field(default_factory=dict)
    token: str = ""
    cpus: float | None = None  # None: the node's maximum
    memory: int | None = None  # bytes
    pids: int | None = None
    gpus: int = 0
    user: tuple[int, int] | None = None  # uid, gid; None: an unprivileged one
    timeout: float | None = None  # seconds
    grace: float = 10.0  # seconds between `docker stop`'s TERM and its KILL

    @classmethod
    def parse(cls, data: Any) -> DockerRun:
        """From the JSON object a task carries; ``SpecError`` names what is wrong."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a docker run is a JSON object, not {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise SpecError(f"unknown key(s): {', '.join(map(str, unknown))}")
        return cls(
            run_id=_ident(data, "run_id"), job_id=_ident(data, "job_id"),
            image=_image(data.get("image")), command=_command(data.get("command")),
            env=_env(data.get("env")), inputs=_inputs(data.get("inputs")),
            token=_text(data, "token"), cpus=_number(data, "cpus", integer=False),
            memory=_size(data.get("memory")), pids=_number(data, "pids", integer=True),
            gpus=_number(data, "gpus", integer=True, zero=True) or 0,
            user=_user(data.get("user")), timeout=_number(data, "timeout", integer=False),
            grace=_or(_number(data, "grace", integer=False, zero=True), 10.0))


@dataclass(frozen=True)
class Grant:
    """What a run gets."""

    cpus: float
    memory: int
    pids: int
    gpus: tuple[str, ...]
    user: tuple[int, int]


@dataclass(frozen=True)
class NodeLimits:
    """The node's maxima for one container run, and whether it may run as root."""

    cpus: float = 1.0
    memory: int = 1 << 30
    pids: int = 256
    allow_root: bool = False
    gpus: tuple[str, ...] = ()  # device ids or uuids the node offers (``detect_gpus``)

    def grant(self, run: DockerRun, free_gpus: list[str]) -> Grant:
        """What ``run`` gets; ``SpecError`` when it asks for more than this node allows."""
        over = []
        if run.cpus is not None and run.cpus > self.cpus:
            over.append(f"{run.cpus:g} CPUs asked, at most {self.cpus:g}")
        if run.memory is not None and run.memory > self.memory:
            over.append(f"memory {_mib(run.memory)} asked, at most {_mib(self.memory)}")
        if run.pids is not None and run.pids > self.pids:
            over.append(f"{run.pids} pids asked, at most {self.pids}")
        if run.gpus and not self.gpus:
            over.append(f"{run.gpus} GPU(s) asked, this node has none")
        elif run.gpus > len(self.gpus):
            over.append(f"{run.gpus} GPUs asked, this node has {len(self.gpus)}")
        if over:
            raise SpecError(f"over this node's limits: {'; '.join(over)}")
        if run.gpus > len(free_gpus):
            raise SpecError(f"{run.gpus} GPU(s) asked, {len(free_gpus)} free now")
        user = run.user or default_user()
        if user[0] == 0 and not self.allow_root:
            raise SpecError("running as root (uid 0) is not allowed on this node")
        return Grant(cpus=run.cpus or self.cpus, memory=run.memory or self.memory,
                     pids=run.pids or self.pids, gpus=tuple(free_gpus[:run.gpus]), user=user)


def default_user() -> tuple[int, int]:
    """``nobody`` when the agent is root; else the agent's own ids, so the files it makes for
    the run are the container's own without a chown."""
    if not hasattr(os, "getuid") or os.getuid() == 0:
        return NOBODY
    return os.getuid(), os.getgid()


def detect_gpus() -> list[dict[str, Any]]:
    """The node's NVIDIA GPUs (index, uuid, name, memory in bytes) for the check-in metrics
    and ``NodeLimits.gpus``; empty without ``nvidia-smi``. Blocking: call it in a thread."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index,uuid,name,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            memory = int(parts[3]) << 20 if parts[3].isdigit() else None
            gpus.append({"index": int(parts[0]), "uuid": parts[1], "name": parts[2],
                         "memory": memory})
    return gpus


def _or(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def _ident(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise SpecError(f"{key}: expected 1-64 letters, digits, '_', '.' or '-' (not starting "
                        f"with a symbol), got {value!r:.80}")
    return value


def _image(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 512 or \
            any(c.isspace() or ord(c) < 32 for c in value):
        raise SpecError(f"image: expected an image name, id or digest, got {value!r:.80}")
    return value


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or "\x00" in value:
        raise SpecError(f"{key}: expected a string without NUL")
    return value


def _command(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or \
            not all(isinstance(a, str) and "\x00" not in a for a in value):
        raise SpecError("command: expected a non-empty list of strings (argv), got "
                        f"{value!r:.80}")
    return tuple(value)


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError("env: expected an object of names to strings")
    for name, text in value.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SpecError(f"env: {name!r:.80} is not a variable name")
        if not isinstance(text, str) or "\x00" in text:
            raise SpecError(f"env.{name}: expected a string without NUL")
    return dict(value)


def _inputs(value: Any) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError("inputs: expected an object of file names to contents")
    files: dict[str, bytes] = {}
    total = 0
    for name, content in value.items():
        path = PurePosixPath(name) if isinstance(name, str) else None
        if path is None or not name or "\x00" in name or "\\" in name or path.is_absolute() or \
                any(part in ("", ".", "..") for part in name.split("/")):
            raise SpecError(f"inputs: {name!r:.80} is not a relative file name inside input/")
        data = content.encode() if isinstance(content, str) else content
        if not isinstance(data, bytes):
            raise SpecError(f"inputs.{name}: expected text or bytes")
        total += len(data)
        files[name] = data
    if total > MAX_INPUT_BYTES:
        raise SpecError(f"inputs: {total} bytes, more than {MAX_INPUT_BYTES} (send big "
                        "inputs by transfer)")
    names = set(files)
    for name in names:  # "a" and "a/b" cannot both be files
        parts = name.split("/")
        if any("/".join(parts[:i]) in names for i in range(1, len(parts))):
            raise SpecError(f"inputs: {name!r} is inside another input file's name")
    return files


def _number(data: Mapping[str, Any], key: str, *, integer: bool, zero: bool = False) -> Any:
    value = data.get(key)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or \
            value < 0 or (value == 0 and not zero):
        what = "an integer" if integer else "a number"
        raise SpecError(f"{key}: expected {what} {'>= 0' if zero else '> 0'}, got {value!r:.80}")
    return value


def _size(value: Any) -> int | None:
    """Bytes as an integer, or text like ``512m`` / ``2 GiB``."""
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise SpecError(f"memory: {exc}") from None


def _user(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, value
    if value == "root":
        return 0, 0
    match = USER.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise SpecError(f"user: expected 'uid' or 'uid:gid' (numbers), got {value!r:.80}")
    uid = int(match[1])
    return uid, int(match[2]) if match[2] is not None else uid
