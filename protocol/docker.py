"""What a docker task carries to the agent that runs it (the organization's run of a
docker job), and the limits on what comes back."""

from __future__ import annotations

import re
from typing import Any

from msgspec import Struct

# a run's result as reported (sealed, in an encrypted collaboration): it travels in one
# report, within the hub's default request size
MAX_RESULT = 512 * 1024

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: Any) -> int:
    """Bytes from an integer, or from text like ``512m`` or ``2 GiB``; ``ValueError``
    otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"expected bytes (an integer) or a size like '512m', got "
                         f"{value!r:.80}")
    return int(float(match[1]) * _UNITS[match[2].lower()])


class DockerWork(Struct, frozen=True):
    """One organization's run of a docker job.

    ``job_id`` is the group the run belongs to (a job and the child jobs its runs create
    share it): runs of one group on a node share its temporary folder. In an encrypted
    collaboration ``input`` is an envelope sealed by the initiating organization for this
    one, and the result goes back sealed for ``initiator`` with ``initiator_key``. The
    agent does not take ``encrypted`` and ``initiator_key`` on the hub's word alone: a
    run that contradicts what the node pinned is refused (agent/pins.py)."""

    image: str
    job_id: str
    organization: str  # the organization whose run this is (the agent's own)
    initiator: str  # the organization that created the job
    command: list[str] | None = None  # None: the image's own
    env: dict[str, str] = {}
    input: str = ""
    encrypted: bool = False
    initiator_key: str = ""  # its published public key (encrypted collaborations)
    token: str = ""  # lets the run create child jobs; expires when the run ends
    cpus: float | None = None
    memory: int | None = None  # bytes
    pids: int | None = None
    gpus: int = 0
    user: str | None = None  # "uid" or "uid:gid"; None: the node's unprivileged default
    timeout: float | None = None  # seconds
    grace: float = 10.0  # seconds between docker stop's TERM and its KILL
