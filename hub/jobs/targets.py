"""Where a compute job may run: the agents its organization may use, and the targets a
job names among them.

The rule (docs/SECURITY.md, "Compute work"):

* a compute job runs on an agent whose node belongs to the job's organization;
* a job that names a collaboration (``"collaboration": "ZEPPELIN"``) also runs on that
  collaboration's nodes: the node each member organization enrolled for it. A member
  organization's other nodes never see the job.

Nothing else: not an agent that reports a matching ``code``, carries a matching tag or
stands at a targeted site in another organization. The dispatcher applies the same rule
at every claim (``usable_by``), so a target can only narrow it.

Targets (``filters.py``) are resolved inside that scope when the job is created: a client
id, code glob or tag that matches no usable agent is answered like one that matches nothing
anywhere (the same refusal), so a job cannot probe other organizations' agents. Negated
entries and the filters on figures (``ram:``, ``cores:``, ``gpus:``, ``os:``,
``hostname:``) are not refused when nothing matches them: the agents that would may enrol
later, and meanwhile the job says why it waits (``reasons.py``). A negation excludes
agents from the scope, never adds any: ``!tag:x`` is "the organization's agents without
tag x", and another organization's agents stay out whatever a job says.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import Invalid
from hub.jobs.filters import parse_target
from hub.storage.models import Client, Job, Node, Site


def usable_by(organization: Any, collaboration: Any) -> ColumnElement[bool]:
    """Compute jobs an agent of a node of ``organization`` (enrolled for
    ``collaboration``, or none) may run: those of its organization, and those that
    name its node's collaboration. Bind parameters or values both work. No organization
    matches nothing (SQL's NULL = NULL is not true): a job whose organization was
    deleted runs nowhere, and an agent of a node with none runs no job by it."""
    mine: ColumnElement[bool] = Job.organization_id == organization
    if collaboration is None:
        return mine
    return or_(mine, Job.collaboration_id == collaboration)


def agents_for(organization: str | None, collaboration: str | None) -> ColumnElement[bool]:
    """Agents (not lanes) that may run a compute job of ``organization`` in
    ``collaboration`` (or none): the converse of ``usable_by``, as a condition on
    ``Client`` joined with ``Node``."""
    mine = false() if organization is None else Node.organization_id == organization
    if collaboration is not None:
        mine = or_(mine, Node.collaboration_id == collaboration)
    return and_(Client.parent_id.is_(None), mine)


async def resolve(conn: AsyncConnection, entries: list[str], organization: str | None,
                  collaboration: str | None
                  ) -> tuple[list[dict[str, Any]], tuple[str, str]]:
    """Stored targets, and the job's destination party (a lone site or client, else none).
    Clients, codes and tags are looked up among the agents the job may use only."""
    parsed = [parse_target(entry, n) for n, entry in enumerate(entries)]  # all checked first
    usable = (select(Client.id, Client.code, Client.tags).join(Node, Node.id == Client.node_id)
              .where(agents_for(organization, collaboration)))
    agents: list[Any] | None = None
    targets: list[dict[str, Any]] = []
    for n, target in enumerate(parsed):
        entry, value = target.text, target.value
        if target.kind == "site":  # sites belong to nobody: anyone may name one
            found = (await conn.execute(select(Site.id).where(
                or_(Site.id == value, Site.name == value)))).scalar()
            if found is None:
                raise _no_target(n, entry, f"no site '{value}'")
            targets.append({**target.stored(), "value": found})
            continue
        if target.negated or target.kind not in ("client", "code", "tag"):
            targets.append(target.stored())  # nothing to look up: nothing to learn either
            continue
        if agents is None:
            agents = list((await conn.execute(usable)).all())
        if target.kind == "client":
            if not any(a.id == value for a in agents):
                parent = (await conn.execute(select(Client.parent_id).where(
                    Client.id == value))).scalar()
                if parent is not None and any(a.id == parent for a in agents):
                    raise _no_target(n, entry, f"'{value}' is a compute lane; target its "
                                     f"agent '{parent}'")
                raise _no_target(n, entry, f"no agent with id '{value}' that this job may "
                                 "use (an agent of your organization, or the job's "
                                 "collaboration's node)")
            targets.append(target.stored())
            continue
        hit = any(fnmatch.fnmatchcase(a.code, value) if target.kind == "code"
                  else value in (a.tags or []) for a in agents)
        if not hit:
            what = "a code matching" if target.kind == "code" else "the tag"
            raise _no_target(n, entry, f"no agent this job may use has {what} '{value}'")
        targets.append(target.stored())
    if len(targets) == 1 and targets[0]["kind"] in ("site", "client") \
            and not targets[0]["not"]:
        return targets, (targets[0]["kind"], targets[0]["value"])
    return targets, ("", "")


def _no_target(index: int, entry: str, why: str) -> Invalid:
    field = f"compute.clients[{index}]"
    return Invalid("unknown_target", f"{field}: '{entry}': {why}", field=field)
