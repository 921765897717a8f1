"""Why a compute job waits: ``status_reason``, when it waits for other jobs, when no
agent it may use matches it, or when its limits or its ``max_lanes`` hold back its queued
tasks (``limits.py``).

A job that waits for others says so first (``dependencies.reasons``: ``waiting for job
<id>``, ``waiting for items of job <id>``, ``waiting for job <id> to be retried (it
failed)``): until they are done, no agent would take it anyway.

A job whose targets no usable agent matches would wait for ever without a word. Its
``status_reason`` says so instead, in words a user can act on::

    no agent of this organization matches ram:>60GB (largest: 31.2 GB)
    waiting for limit 'nuke' (4 of 4 in use)
    waiting for max_lanes (2 of 2 in use)

The agents counted are the ones the job may use (``targets.agents_for``: its
organization's, and its collaboration's nodes), enabled, online or not (an offline agent
comes back). Nothing about another organization's agents goes into a reason: the figures
quoted are of the counted agents only.

When: on creation (in the creating transaction), and for every active compute job every
``REFRESH_EVERY`` seconds in the dispatcher's sweeper, so a reason appears when the last
matching agent is disabled or deleted, and clears once an agent that matches enrolls or
checks in with the figures asked for. The refresh reads the active compute jobs and, once
per organization/collaboration pair, its agents; a job costs a few comparisons per agent
up to the first that matches. The reason only informs: claims decide by themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.engine import Connection

from hub.jobs import dependencies
from hub.jobs import status as st
from hub.jobs.filters import figure, targets_match
from hub.jobs.limits import lanes_in_use, limits_of, waiting
from hub.jobs.targets import agents_for
from hub.storage.models import Client, Job, Node, Task
from protocol import BucketKind

REFRESH_EVERY = 5  # seconds (rounds of the lease sweeper) between refreshes
GB = 10**9

_JOBS = select(Job.id, Job.spec, Job.organization_id, Job.collaboration_id,
               Job.status_reason, Job.max_lanes).where(Job.kind == BucketKind.COMPUTE,
                                        Job.status.in_(st.ACTIVE))
_SET = update(Job).where(Job.id == bindparam("b_id")).values(
    status_reason=bindparam("b_reason"))


def agents(conn: Connection, organization: str | None, collaboration: str | None
           ) -> list[Any]:
    """The enabled agents a job of ``organization`` in ``collaboration`` may use."""
    return list(conn.execute(
        select(Client.id, Client.site_id, Client.code, Client.tags, Client.os, Client.metrics)
        .join(Node, Node.id == Client.node_id)
        .where(and_(agents_for(organization, collaboration), Client.disabled.is_(False)))))


def reason(targets: list[dict[str, Any]], agents: Sequence[Any], collaboration: bool
           ) -> str | None:
    """None when an agent matches, else why none does (the first kind of target that no
    agent matches, with the best figure there is)."""
    if any(targets_match(targets, a) for a in agents):
        return None
    whose = "of this organization or its collaboration" if collaboration \
        else "of this organization"
    if not agents:
        return f"no agent {whose} is enrolled"
    if not targets or "kind" not in targets[0]:
        return f"no agent {whose} matches its targets"
    kinds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for target in targets:
        kinds["!" + target["text"] if target["not"] else target["kind"]].append(target)
    for group in kinds.values():
        if not any(targets_match(group, a) for a in agents):
            said = " or ".join(t["text"] for t in group)
            return f"no agent {whose} matches {said}{_best(group, agents)}"
    said = ", ".join(t["text"] for t in targets)
    return f"no agent {whose} matches all of {said}"


def _best(group: list[dict[str, Any]], agents: Sequence[Any]) -> str:
    """What the agents come closest with, for a figure compared from one side."""
    kind = group[0]["kind"]
    if group[0]["not"] or kind not in ("ram", "cores", "gpus"):
        if kind == "os" and not group[0]["not"]:
            seen = sorted({f for a in agents if (f := figure("os", a)) is not None})
            return f" (they run: {', '.join(seen) or 'unknown'})"
        return ""
    shown = [f for a in agents if (f := figure(kind, a)) is not None]
    if not shown:
        return " (no agent has reported it yet)"
    upward = group[0]["value"][0] in (">", ">=")
    best = max(shown) if upward else min(shown)
    said = f"{best / GB:.1f} GB" if kind == "ram" else str(best)
    return f" ({'largest' if upward else 'smallest'}: {said})"


def refresh(conn: Connection, job_ids: list[str] | None = None) -> int:
    """Set the reason of active compute jobs (``job_ids``, or all) as things are now;
    returns how many changed."""
    stmt = _JOBS if job_ids is None else _JOBS.where(Job.id.in_(job_ids))
    scopes: dict[tuple[str | None, str | None], list[Any]] = {}
    changed = []
    jobs = conn.execute(stmt).all()
    waits = dependencies.reasons(conn, [job.id for job in jobs])
    held = limits_of(conn, [j.id for j in jobs])
    capped = [j.id for j in jobs if j.max_lanes is not None]
    lanes = lanes_in_use(conn, capped)
    queued = set(conn.execute(select(Task.job_id).where(
        Task.job_id.in_(list({*held, *capped})), Task.status == st.TaskStatus.QUEUED
    ).distinct()).scalars()) if held or capped else set()
    for job in jobs:
        scope = (job.organization_id, job.collaboration_id)
        if scope not in scopes:
            scopes[scope] = agents(conn, *scope)
        now = waits.get(job.id) or reason((job.spec or {}).get("targets", []),
                                          scopes[scope], job.collaboration_id is not None)
        if now is None and job.id in queued:
            now = waiting(held.get(job.id, []), job.max_lanes, lanes.get(job.id, 0))
        if now != job.status_reason:
            changed.append({"b_id": job.id, "b_reason": now})
    if changed:
        conn.execute(_SET, changed)
    return len(changed)

