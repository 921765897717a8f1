"""What a bucket runner is, and what the pool keeps of every bucket it holds.

A runner answers for one kind of bucket (``protocol.BucketKind``): what of it is
free to claim, running a bucket's tasks, stopping a bucket's running task, and
closing once the agent has drained. It never writes the bucket's end nor hands
back what it did not run: the pool does, for every kind alike, from what ``run``
returns and what ``Held`` says.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from protocol import BucketKind, BucketWork, ClaimRequest

if TYPE_CHECKING:
    from agent.buckets.reports import Reporter


class Stop(enum.StrEnum):
    """Why a held bucket starts no more tasks; what has not started goes back to the hub
    with this reason (but for ``LOST``: the hub refuses every report of a lost bucket)."""

    LOST = "lost"  # its lease is gone: the hub gave the work to someone else
    PAUSED = "paused"  # its job was paused at the hub
    DRAINING = "draining"  # the agent is stopping
    UNAVAILABLE = "the agent takes no work now"  # its schedule or NIMBY (agent/availability.py)


@dataclass(eq=False)
class Held:
    """A bucket this agent holds, and what the hub has said of it since it came."""

    work: BucketWork
    stopping: Stop | None = None  # set: no new task of it starts
    aborted: set[str] = field(default_factory=set)  # tasks the hub wants stopped
    ended: set[str] = field(default_factory=set)  # tasks whose end is reported (or lost)

    @property
    def lost(self) -> bool:
        return self.stopping is Stop.LOST


class Runner(Protocol):
    """One kind of bucket, as this agent runs it. Everything is called on the event loop."""

    kind: BucketKind

    def free(self, held: Sequence[Held]) -> ClaimRequest:
        """What this runner can take now, given the buckets of its kind the agent holds,
        as the claim that asks for it (the claim loop sets ``wait``)."""
        ...

    async def run(self, bucket: Held, reporter: Reporter) -> int | None:
        """Run the bucket's tasks, reporting each one's start and end, until they are done
        or ``bucket.stopping`` says to start no more. Returns how many were taken (run,
        skipped or aborted): the pool hands back the rest of a stopped bucket. None: the
        bucket's end is not this agent's to report (its container runs on for the next
        start to adopt, or it is work this agent cannot run)."""
        ...

    def stop(self, bucket: Held, reason: str, task_id: str | None = None) -> None:
        """Stop the bucket's running task (``task_id``: only if that one runs); it ends
        as aborted, with ``reason``, and ``run`` goes on as ``bucket`` says."""
        ...

    async def close(self) -> None:
        """Once the agent has drained: let go of what the runner holds."""
        ...
