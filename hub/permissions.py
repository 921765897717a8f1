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

This is the vocabulary and the checks, and touches no database: a caller's rules are
read by ``hub/callers.py``, and this version's rules and default roles are written at
every start by ``hub/storage/defaults.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from hub.errors import Forbidden

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
    # queues belong to an organization: its jobs wait in its own queues only, so no
    # organization pauses or outranks another's work
    "queue": ("organization", "global"),
    # limits likewise: an organization's jobs hold its own limits only, so no organization
    # takes or withholds another's licences
    "limit": ("organization", "global"),
    # engines belong to an organization: its jobs alone name them, so no organization runs
    # or changes the command another's jobs are made with
    "engine": ("organization", "global"),
    # webhooks too: an organization's events go to its own webhooks only, and a webhook's
    # URL and deliveries say where its organization's news goes
    "webhook": ("organization", "global"),
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
        "queue": _in("organization", "view", "create", "edit", "delete"),
        "limit": _in("organization", "view", "create", "edit", "delete"),
        "engine": _in("organization", "view", "create", "edit", "delete"),
        "webhook": _in("organization", "view", "create", "edit", "delete"),
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
        "queue": _in("organization", "view"),
        "limit": _in("organization", "view"),
        "engine": _in("organization", "view"),
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
        "queue": _in("organization", "view"),
        "limit": _in("organization", "view"),
        "engine": _in("organization", "view"),
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


# the organization of the first root user, and of records from before organizations
ROOT_ORGANIZATION = "root"
