"""Which class runs which kind of bucket, by name: a runner's module is imported only
when the agent's settings call for it.

The idle agent imports none of them. The docker runner brings the Docker SDK and
cryptography (sealing, pins), the transfer runner the transports (and cryptography,
for tickets and TLS); the assembly (agent/assemble.py) loads the runners an agent's settings ask
for, once, at its start.
"""

from __future__ import annotations

import importlib

from agent.buckets.base import Runner
from core.errors import AgentError
from protocol import BucketKind

RUNNERS: dict[BucketKind, str] = {
    BucketKind.COMPUTE: "agent.buckets.compute:ComputeRunner",
    BucketKind.TRANSFER: "agent.buckets.transfer:TransferRunner",
    BucketKind.DOCKER: "agent.buckets.docker:DockerRunner",
}


class RunnerMissing(AgentError):
    """A kind's runner is not where the registry says (a broken installation)."""


def runner_class(kind: BucketKind) -> type[Runner]:
    """The class that runs buckets of ``kind``, its module imported now (once)."""
    module, _, name = RUNNERS[kind].partition(":")
    try:
        found: type[Runner] = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise RunnerMissing(f"no runner for {kind} buckets at {RUNNERS[kind]}: {exc}") from exc
    if getattr(found, "kind", None) != kind:
        raise RunnerMissing(f"{RUNNERS[kind]} runs {getattr(found, 'kind', None)} buckets, "
                            f"not {kind}")
    return found
