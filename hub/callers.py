"""Who is calling, and what it may do: a principal's rules, organization and
collaborations, read from the database (``hub/permissions.py`` says what they mean).

A user's rules are those of its roles plus any given to it directly; an agent's token
carries the ``node`` role's rules; a docker run's token its user's rules, narrowed to
``RUN_RULES`` and confined to the run's job group.
"""

from __future__ import annotations

from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.permissions import ALWAYS, DEFAULT_ROLES, NODE, RUN_RULES, Caller
from hub.storage.models import (
    Client,
    Job,
    Node,
    Rule,
    Task,
    User,
    members,
    role_rules,
    user_roles,
    user_rules,
)


async def load_caller(conn: AsyncConnection, kind: str, ident: str, run: str | None = None
                      ) -> Caller:
    if kind == "client":
        node = (await conn.execute(
            select(Node.organization_id, Node.collaboration_id)
            .join(Client, Client.node_id == Node.id).where(Client.id == ident))).first()
        org, collab = (node.organization_id, node.collaboration_id) if node else (None, None)
        rules = DEFAULT_ROLES[NODE][1]
        return Caller(kind, ident, org, frozenset(rules), frozenset([org] if org else []),
                      collaborations=frozenset([collab] if collab else []))
    org = (await conn.execute(select(User.organization_id).where(User.id == ident))).scalar()
    roles = frozenset((await conn.execute(
        select(user_roles.c.role_id).where(user_roles.c.user_id == ident))).scalars())
    via_roles = select(role_rules.c.rule_id).where(role_rules.c.role_id.in_(roles))
    direct = select(user_rules.c.rule_id).where(user_rules.c.user_id == ident)
    ids = union(via_roles, direct).subquery()
    rows = (await conn.execute(select(Rule.resource, Rule.operation, Rule.scope)
                               .where(Rule.id.in_(select(ids.c.rule_id))))).all()
    partners: frozenset[str] = frozenset()
    collaborations: frozenset[str] = frozenset()
    if org is not None:
        collaborations = frozenset((await conn.execute(
            select(members.c.collaboration_id).where(members.c.organization_id == org)
        )).scalars())
        partners = frozenset((await conn.execute(
            select(members.c.organization_id).where(
                members.c.collaboration_id.in_(sorted(collaborations)))
        )).scalars()) | {org}
    held = {(r.resource, r.operation, r.scope) for r in rows} | ALWAYS
    group = None
    if run:  # a run's token: its user's rules, narrowed to making and reading jobs of
        held = {r for r in held if (r[0], r[1]) in RUN_RULES}  # its own job group
        group = await run_group(conn, run)
    return Caller(kind, ident, org, frozenset(held), partners, roles, collaborations, group)


async def run_group(conn: AsyncConnection, task_id: str) -> str:
    """The job group (the reference's ``job_id``) of a docker run: the id of the first job
    of the group its job belongs to. A run that is gone confines to nothing."""
    row = (await conn.execute(select(Job.id, Job.spec).join(Task, Task.job_id == Job.id)
                              .where(Task.id == task_id))).first()
    if row is None:
        return "-"  # no job has this id: the token reaches nothing
    return str((row.spec or {}).get("job_id") or row.id)
