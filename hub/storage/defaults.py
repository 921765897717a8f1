"""What every start writes after migrating: this version's rules and default roles, and
the one-time steps that bring records from older versions in line (``sync_defaults``).

The rules and roles themselves are ``hub/permissions.py``'s; this writes them, in the
migration's transaction and under its lock, so that hub processes starting together on
one PostgreSQL database take turns.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, select, update

from hub.permissions import (
    DEFAULT_ROLES,
    LEAST,
    ORG_ADMIN,
    ROOT,
    ROOT_ORGANIZATION,
    all_rules,
    role_id,
    rule_id,
)
from hub.storage.models import (
    HubState,
    Job,
    Node,
    Organization,
    Role,
    Rule,
    User,
    new_id,
    role_rules,
    user_roles,
    utcnow,
)

_LEGACY_DONE = "legacy_roles_assigned"
_LEGACY_ROLES = {"root": ROOT, "admin": ORG_ADMIN}  # users.role before roles existed
_ORPHANS_DONE = "orphan_nodes_and_jobs_placed"
_SHARE_RIGHTS_DONE = "share_rights_given_to_custom_roles"


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
