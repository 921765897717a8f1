"""Who may do what: rules, default roles, and the caller's permissions.

A rule is ``operation`` on ``resource`` within ``scope``. Scopes nest:
``own`` (records the caller made or is) within ``organization`` (records of
the caller's organization) within ``collaboration`` (records of any
organization sharing a collaboration with the caller's) within ``global``.
A rule for a scope covers the narrower ones. Each resource has the scopes
that mean something for it: a site belongs to no organization, so its only
scope is ``global``.

A user's rules are those of their roles plus any given to them directly.
An agent's token carries the ``node`` role's rules and nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, insert, select, union, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import Forbidden, Inconsistent
from hub.storage.models import (
    Client,
    HubState,
    Job,
    Node,
    Organization,
    Role,
    Rule,
    Task,
    User,
    members,
    new_id,
    role_rules,
    user_roles,
    user_rules,
    utcnow,
)

SCOPES = ("own", "organization", "collaboration", "global")
OPERATIONS = ("view", "create", "edit", "delete")
# operations on what a record holds rather than on the record: a share's files. Viewing a
# share's record says where it is; reading its files (a transfer from it) and writing
# into it (a transfer to it) are rights of their own
DATA_OPERATIONS: dict[str, tuple[str, ...]] = {"share": ("read", "write")}

# each resource and the scopes its records can fall in, narrowest first
RESOURCES: dict[str, tuple[str, ...]] = {
    "user": ("own", "organization", "collaboration", "global"),
    "organization": ("organization", "collaboration", "global"),
    "collaboration": ("organization", "global"),
    "role": ("organization", "global"),
    "rule": ("global",),
    "node": ("organization", "collaboration", "global"),
    "client": ("own", "organization", "collaboration", "global"),
    "site": ("global",),
    "share": ("organization", "collaboration", "global"),
    "job": ("own", "organization", "collaboration", "global"),
    "task": ("own", "organization", "collaboration", "global"),
    "apikey": ("own", "global"),
}
# rules that mean nothing: rules are the hub's own; an organization is yours before
# you may create one in it; a collaboration names organizations, not one of them
NOT_RULES = {("rule", "create"), ("rule", "edit"), ("rule", "delete")}


def rule_id(resource: str, operation: str, scope: str) -> str:
    """Rules have fixed ids, the same in every hub's database."""
    return hashlib.sha256(f"rule:{resource}:{operation}:{scope}".encode()).hexdigest()[:24]


def role_id(name: str) -> str:
    return hashlib.sha256(f"role:{name}".encode()).hexdigest()[:24]


def operations(resource: str) -> tuple[str, ...]:
    """The operations rules name for ``resource``."""
    return tuple(o for o in (*OPERATIONS, *DATA_OPERATIONS.get(resource, ()))
                 if (resource, o) not in NOT_RULES)


def all_rules() -> list[tuple[str, str, str]]:
    return [(resource, operation, scope) for resource, scopes in RESOURCES.items()
            for operation in operations(resource) for scope in scopes]


def _grant(spec: dict[str, dict[str, str]]) -> set[tuple[str, str, str]]:
    """``{resource: {operation: widest scope}}`` -> the rules, with every narrower scope."""
    granted: set[tuple[str, str, str]] = set()
    for resource, operations in spec.items():
        scopes = RESOURCES[resource]
        for operation, widest in operations.items():
            for scope in scopes[:scopes.index(widest) + 1]:
                granted.add((resource, operation, scope))
    return granted


ALL = {"view": "global", "create": "global", "edit": "global", "delete": "global"}


def _in(scope: str, *operations: str) -> dict[str, str]:
    return dict.fromkeys(operations, scope)


ROOT = "root"
ORG_ADMIN = "organization admin"
RESEARCHER = "researcher"
VIEWER = "viewer"
NODE = "node"
LEAST = VIEWER  # what an imported or created user gets unless told otherwise

DEFAULT_ROLES: dict[str, tuple[str, set[tuple[str, str, str]]]] = {
    ROOT: ("everything, everywhere", {r for r in all_rules()}),
    ORG_ADMIN: ("manages its organization: users, roles, nodes, agents, shares, jobs", _grant({
        "user": {**_in("organization", "view", "create", "edit", "delete"),
                 "view": "collaboration"},
        "organization": {"view": "collaboration", "edit": "organization"},
        "collaboration": _in("organization", "view"),
        "role": _in("organization", "view", "create", "edit", "delete"),
        "rule": _in("global", "view"),
        "node": {**_in("organization", "create", "edit", "delete"), "view": "collaboration"},
        "client": {**_in("organization", "edit", "delete"), "view": "collaboration"},
        "site": _in("global", "view"),
        "share": {**_in("organization", "create", "edit", "delete", "read", "write"),
                  "view": "collaboration"},
        "job": {**_in("organization", "create", "edit", "delete"), "view": "collaboration"},
        "task": {**_in("organization", "create", "edit"), "view": "collaboration"},
        "apikey": _in("own", "view", "create", "delete"),
    })),
    RESEARCHER: ("runs and follows jobs; sees its organization and collaborations", _grant({
        "user": {"view": "organization", "edit": "own"},
        "organization": _in("collaboration", "view"),
        "collaboration": _in("organization", "view"),
        "role": _in("organization", "view"),
        "rule": _in("global", "view"),
        "node": _in("collaboration", "view"),
        "client": _in("collaboration", "view"),
        "site": _in("global", "view"),
        "share": {**_in("organization", "read", "write"), "view": "collaboration"},
        "job": {**_in("own", "create", "edit", "delete"), "view": "organization"},
        "task": {**_in("own", "create", "edit"), "view": "organization"},
        "apikey": _in("own", "view", "create", "delete"),
    })),
    VIEWER: ("sees its organization's records; changes only its own password", _grant({
        "user": {"view": "organization", "edit": "own"},
        "organization": _in("organization", "view"),
        "collaboration": _in("organization", "view"),
        "role": _in("organization", "view"),
        "node": _in("organization", "view"),
        "client": _in("organization", "view"),
        "site": _in("global", "view"),
        "share": _in("organization", "view"),
        "job": _in("organization", "view"),
        "task": _in("organization", "view"),
    })),
    # an agent's token: itself, its own shares, the tasks leased to it; it changes things
    # only through the agent calls (check-in, claims, reports), never the entity API
    NODE: ("what an agent does (agent tokens only)", _grant({
        "client": _in("own", "view"),
        "share": _in("organization", "view"),
        "task": _in("own", "view"),
        "site": _in("global", "view"),
    })),
}


# every user may see their own record, whatever their roles
ALWAYS = {("user", "view", "own")}


def rule_name(rule: tuple[str, str, str]) -> str:
    resource, operation, scope = rule
    return f"{operation} {resource} ({scope})"


@dataclass
class Caller:
    """The caller's rules and where it stands: its organization and its collaborators."""

    kind: str  # "user" or "client"
    id: str
    organization: str | None
    rules: frozenset[tuple[str, str, str]]
    partners: frozenset[str] = field(default_factory=frozenset)  # organizations, own included
    roles: frozenset[str] = field(default_factory=frozenset)  # role ids
    # the collaborations of its organization (an agent: its node's): what its
    # ``collaboration`` scope reaches in records that belong to a collaboration
    collaborations: frozenset[str] = field(default_factory=frozenset)
    # a docker run's token: the job group (``job_id``) it is confined to, whatever its
    # user's rules would reach
    group: str | None = None

    def widest(self, resource: str, operation: str) -> str | None:
        """The widest scope in which the caller may do this, or None."""
        for scope in reversed(RESOURCES[resource]):
            if (resource, operation, scope) in self.rules:
                return scope
        return None

    def need(self, resource: str, operation: str, scope: str) -> None:
        """``Forbidden`` naming the missing rule, unless the caller holds it (or a wider one)."""
        scopes = RESOURCES[resource]
        if scope not in scopes:  # e.g. "own" for a resource without owners: the next one up
            scope = next(s for s in scopes if SCOPES.index(s) >= SCOPES.index(scope))
        wider = scopes[scopes.index(scope):]
        if not any((resource, operation, s) in self.rules for s in wider):
            missing = (resource, operation, scope)
            raise Forbidden("forbidden", f"missing rule: {rule_name(missing)}; "
                            f"{self.kind} '{self.id}' may not {operation} this {resource}",
                            rule={"resource": resource, "operation": operation, "scope": scope})

    def holds(self, rules: Iterable[tuple[str, str, str]]) -> tuple[str, str, str] | None:
        """The first of ``rules`` the caller does not hold itself, or None."""
        return next((r for r in rules if r not in self.rules), None)


# what a docker run's token may do (within its user's own rules): create child jobs
# (the job entity keeps them to the run's own job) and read jobs and tasks
RUN_RULES = frozenset({("job", "create"), ("job", "view"), ("task", "view")})


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


_ORPHANS_DONE = "orphan_nodes_and_jobs_placed"


def _adopt_orphans(conn: Connection) -> None:
    """Nodes and jobs from before organizations existed get one (once, after their users
    got theirs). A compute job runs only on agents its organization may use
    (hub/jobs/targets.py), and having none is no organization to match: nodes go to
    organization root (their users went there too), jobs to their user's organization.
    A job whose organization is deleted later keeps none, and runs nowhere."""
    if conn.execute(select(Node.id).where(Node.organization_id.is_(None))).first():
        conn.execute(update(Node).where(Node.organization_id.is_(None))
                     .values(organization_id=_root_organization(conn)))
    owner = select(User.organization_id).where(User.id == Job.user_id).scalar_subquery()
    conn.execute(update(Job).where(Job.organization_id.is_(None), Job.user_id.is_not(None))
                 .values(organization_id=owner))


_SHARE_RIGHTS_DONE = "share_rights_given_to_custom_roles"


def _share_rights_for_custom_roles(conn: Connection) -> None:
    """Once, at the first start of a version with ``read share`` and ``write share``: a
    role of an organization's own that could create jobs and see shares (so run transfers,
    before these rules existed) gets both at ``organization`` scope. Wider is for someone
    who holds it to give again (docs/SECURITY.md, "Upgrading")."""
    held = conn.execute(select(role_rules.c.role_id, Rule.resource, Rule.operation)
                        .join(Rule, Rule.id == role_rules.c.rule_id)
                        .join(Role, Role.id == role_rules.c.role_id)
                        .where(Role.default.is_(False))).all()
    by_role: dict[str, set[tuple[str, str]]] = {}
    for role, resource, operation in held:
        by_role.setdefault(role, set()).add((resource, operation))
    wanted = [rule_id("share", op, "organization") for op in ("read", "write")]
    for role, rules in by_role.items():
        if {("job", "create"), ("share", "view")} <= rules \
                and ("share", "read") not in rules and ("share", "write") not in rules:
            conn.execute(insert(role_rules), [{"role_id": role, "rule_id": r} for r in wanted])


def _first_time(conn: Connection, key: str) -> bool:
    """Whether the one-time step ``key`` is still to be done; it counts as done from now
    (in the caller's transaction: a failed start does it again)."""
    if conn.execute(select(HubState.key).where(HubState.key == key)).first():
        return False
    conn.execute(insert(HubState).values(key=key, value=utcnow().isoformat()))
    return True


def _root_organization(conn: Connection) -> str:
    """The id of organization ``root``, made if it is not there."""
    org = conn.execute(select(Organization.id)
                       .where(Organization.name == ROOT_ORGANIZATION)).scalar()
    if org is None:
        org, now = new_id(), utcnow()
        conn.execute(insert(Organization).values(
            id=org, name=ROOT_ORGANIZATION, domain="", address1="", address2="",
            zipcode="", country="", public_key="", created=now, modified=now))
    return str(org)


async def default_role(conn: AsyncConnection, name: str) -> str:
    found = (await conn.execute(select(Role.id).where(Role.name == name))).scalar()
    if found is None:
        raise Inconsistent("no_default_role", f"default role '{name}' is missing")
    return str(found)


ROOT_ORGANIZATION = "root"
_LEGACY_DONE = "legacy_roles_assigned"
_LEGACY_ROLES = {"root": ROOT, "admin": ORG_ADMIN}  # users.role before roles existed


def sync_defaults(conn: Connection) -> None:
    """Write the rules and default roles of this version; give users made before roles
    existed an organization and their old powers. Runs at every start, in the migration's
    transaction (and under its lock): idempotent."""
    known = set(conn.execute(select(Rule.id)).scalars())
    wanted = {rule_id(*r): r for r in all_rules()}
    conn.execute(delete(Rule).where(Rule.id.not_in(list(wanted))))  # rules this version dropped
    new = [{"id": i, "resource": r[0], "operation": r[1], "scope": r[2]}
           for i, r in wanted.items() if i not in known]
    if new:
        conn.execute(insert(Rule), new)
    now = utcnow()
    for name, (description, rules) in DEFAULT_ROLES.items():
        ident = role_id(name)
        found = conn.execute(select(Role.id).where(Role.id == ident)).first()
        if found is None:
            conn.execute(insert(Role).values(id=ident, name=name, description=description,
                                             organization_id=None, default=True,
                                             created=now, modified=now))
        else:
            conn.execute(update(Role).where(Role.id == ident).values(description=description))
        have = set(conn.execute(select(role_rules.c.rule_id)
                                .where(role_rules.c.role_id == ident)).scalars())
        should = {rule_id(*r) for r in rules}
        if have != should:
            conn.execute(delete(role_rules).where(role_rules.c.role_id == ident))
            conn.execute(insert(role_rules), [{"role_id": ident, "rule_id": r}
                                              for r in sorted(should)])
    if _first_time(conn, _LEGACY_DONE):
        _legacy_users(conn)
    if _first_time(conn, _ORPHANS_DONE):  # after the users: a job goes where its user is
        _adopt_orphans(conn)
    if _first_time(conn, _SHARE_RIGHTS_DONE):
        _share_rights_for_custom_roles(conn)


def _legacy_users(conn: Connection) -> None:
    """Users from before roles existed (every one an admin then) keep their powers: an
    organization (root) and the role their old one meant."""
    if conn.execute(select(User.id).where(User.organization_id.is_(None))).first():
        conn.execute(update(User).where(User.organization_id.is_(None))
                     .values(organization_id=_root_organization(conn)))
    with_roles = set(conn.execute(select(user_roles.c.user_id)).scalars())
    for user in conn.execute(select(User.id, User.role)).all():
        if user.id not in with_roles:
            role = _LEGACY_ROLES.get(user.role, LEAST)
            conn.execute(insert(user_roles).values(user_id=user.id, role_id=role_id(role)))
