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

Targets are resolved inside that scope when the job is created: a client id, code glob or
tag that matches no usable agent is answered like one that matches nothing anywhere
(the same refusal), so a job cannot probe other organizations' agents.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import Invalid
from hub.storage.models import Client, Job, Node, Site

Target = dict[str, str]  # {"site": id} | {"client": id} | {"code": glob} | {"tag": name}


def parse_target(text: str) -> tuple[str, str]:
    """One entry of a compute spec's ``clients`` as (scope, value); a bare id is a client."""
    scope, sep, value = text.partition(":")
    if not sep:
        return "client", text
    if scope not in ("site", "client", "code", "tag") or not value:
        raise Invalid("invalid_spec", f"compute.clients: '{text}' is not site:NAME, client:ID, "
                      "code:GLOB, tag:NAME or an id", field="compute.clients")
    return scope, value


def targets_match(targets: list[dict[str, str]], client: Any) -> bool:
    """May this agent (a row with id, site_id, code, tags) run a job with these targets?"""
    if not targets:
        return True
    for target in targets:
        (scope, value), = target.items()
        if scope == "site" and client.site_id == value:
            return True
        if scope == "client" and client.id == value:
            return True
        if scope == "code" and fnmatch.fnmatchcase(client.code, value):
            return True
        if scope == "tag" and value in (client.tags or []):
            return True
    return False


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
                  ) -> tuple[list[dict[str, str]], tuple[str, str]]:
    """Stored targets, and the job's destination party (a lone site or client, else none).
    Clients, codes and tags are looked up among the agents the job may use only."""
    usable = (select(Client.id, Client.code, Client.tags).join(Node, Node.id == Client.node_id)
              .where(agents_for(organization, collaboration)))
    agents: list[Any] | None = None
    targets: list[dict[str, str]] = []
    for entry in entries:
        scope, value = parse_target(entry)
        if scope == "site":  # sites belong to nobody: anyone may name one
            found = (await conn.execute(select(Site.id).where(
                or_(Site.id == value, Site.name == value)))).scalar()
            if found is None:
                raise _no_target(entry, f"no site '{value}'")
            targets.append({"site": found})
            continue
        if agents is None:
            agents = list((await conn.execute(usable)).all())
        if scope == "client":
            if not any(a.id == value for a in agents):
                parent = (await conn.execute(select(Client.parent_id).where(
                    Client.id == value))).scalar()
                if parent is not None and any(a.id == parent for a in agents):
                    raise _no_target(entry, f"'{value}' is a compute lane; target its agent "
                                     f"'{parent}'")
                raise _no_target(entry, f"no agent with id '{value}' that this job may use "
                                 "(an agent of your organization, or the job's "
                                 "collaboration's node)")
            targets.append({"client": value})
            continue
        hit = any(fnmatch.fnmatchcase(a.code, value) if scope == "code"
                  else value in (a.tags or []) for a in agents)
        if not hit:
            what = "a code matching" if scope == "code" else "the tag"
            raise _no_target(entry, f"no agent this job may use has {what} '{value}'")
        targets.append({scope: value})
    if len(targets) == 1 and ("site" in targets[0] or "client" in targets[0]):
        scope, ident = next(iter(targets[0].items()))
        return targets, (scope, ident)
    return targets, ("", "")


def _no_target(entry: str, why: str) -> Invalid:
    return Invalid("unknown_target", f"compute.clients: '{entry}': {why}", field="compute.clients")
