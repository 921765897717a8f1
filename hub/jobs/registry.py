"""The kinds of job, by ``protocol.BucketKind``: where the hub finds what a job is.

A new job's kind is decided here, once, from its creation body (``kind_of``); a stored
job's is its ``Job.kind`` (``of``). Nothing else guesses a kind from which keys a body
or a spec has.
"""

from __future__ import annotations

from typing import Any

from hub.jobs.compute import COMPUTE
from hub.jobs.docker import DOCKER
from hub.jobs.kind import JobKind
from hub.jobs.transfer import TRANSFER
from protocol import BucketKind

# in the order a creation body is looked at: a body that holds a "compute" section (or
# names an "engine") is a compute job whatever else it holds, then "docker", then a
# transfer's source/destination
KINDS: dict[BucketKind, JobKind] = {kind.kind: kind for kind in (COMPUTE, DOCKER, TRANSFER)}


def kind_of(body: Any) -> BucketKind:
    """The kind of job a creation body asks for: the first kind (in ``KINDS`` order) whose
    marker keys it holds (``compute`` or ``engine``; ``docker``; ``source`` or ``destination``). A body
    with none of them, or none at all, is checked as a compute job, whose spec then says
    what is missing."""
    if isinstance(body, dict):
        for kind in KINDS.values():
            if any(key in body for key in kind.markers):
                return kind.kind
    return BucketKind.COMPUTE


def of(kind: str) -> JobKind:
    """The kind of a stored job (its ``Job.kind``)."""
    return KINDS[BucketKind(kind)]
