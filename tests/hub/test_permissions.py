"""The permission matrix: each default role against each resource and operation, in each
scope, through a real hub's API.

The callers stand in organization A. A shares collaboration AB with B; C is foreign.
For each cell the test makes (or picks) a record in that scope, tries the operation,
and compares the answer with the role's rules: 2xx (or a 409 that comes after the
permission check) when the role holds the rule at that scope or wider, otherwise 403
naming the missing rule. Some cells are also pinned by hand, so that a wrong rule table
cannot pass by agreeing with itself.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from hub import permissions
from tests.helpers import Hub, db_execute, http, login

PASSWORD = "matrix-password-1"
_n = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_n)}"


class World:
    """Records in organizations A (the callers'), B (a collaborator) and C (foreign)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.api = hub.api
        self.root = login(hub)
        self.org = {k: self.ok("POST", "/organization", {"name": unique(f"org{k}")}, self.root)
                    for k in "ABC"}
        self.collab = {
            "AB": self.ok("POST", "/collaboration", {"name": unique("AB"), "organizations": [
                self.org["A"]["id"], self.org["B"]["id"]]}, self.root),
            "C": self.ok("POST", "/collaboration", {"name": unique("C"), "organizations": [
                self.org["C"]["id"]]}, self.root),
        }
        # a user (and token) of each organization, to own records in it
        self.member = {k: self.user(k, [permissions.ORG_ADMIN]) for k in "ABC"}

    def ok(self, method: str, path: str, body: Any, token: str) -> Any:
        status, answer = http(method, f"{self.api}{path}", body, token=token)
        assert status in (200, 201), (method, path, body, answer)
        return answer

    def user(self, org: str, roles: list[str]) -> dict[str, Any]:
        record = self.ok("POST", "/user", {"username": unique("u"), "password": PASSWORD,
                                           "organization": self.org[org]["id"],
                                           "roles": roles}, self.root)
        record["token"] = login(self.hub, record["username"], PASSWORD)
        return record

    def node(self, org: str, owner_token: str | None = None, *, shared: bool = False
             ) -> dict[str, Any]:
        """A node of ``org``; ``shared``: the one it has in a new collaboration of A and
        ``org`` (a record that belongs to that collaboration)."""
        body = {"name": unique("node"), "organization": self.org[org]["id"]}
        if shared:
            body["collaboration"] = self.ok("POST", "/collaboration", {
                "name": unique("AB"), "organizations": [self.org["A"]["id"],
                                                        self.org[org]["id"]]}, self.root)["id"]
        return self.ok("POST", "/node", body, owner_token or self.root)

    def client(self, org: str, owner: str | None = None, *, shared: bool = False
               ) -> dict[str, Any]:
        node = self.node(org, shared=shared)
        status, answer = http("POST", f"{self.api}/agent/enroll", {
            "api_key": node["api_key"], "machine_id": uuid.uuid4().hex, "code": unique("c"),
            "type": 1}, token=None)
        assert status == 200, answer
        if owner is not None:  # the record an agent of this user's node would have
            self.give("clients", answer["client_id"], owner)
        return {"id": answer["client_id"], "token": answer["token"]}

    def give(self, table: str, ident: str, user: str) -> None:
        """Make a record ``user``'s own, for callers whose roles cannot make one."""
        db_execute(self.hub.database, f"update {table} set user_id=? where id=?", user, ident)

    def job(self, token: str, collaboration: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"compute": {"command": ["true"], "items": "1-2"},
                                "status": "paused"}
        if collaboration is not None:
            body["collaboration"] = collaboration
        job = self.ok("POST", "/job", body, token)
        job["task"] = self.ok("POST", "/find", {"query": f"Task where job={job['id']}"},
                              self.root)["result"][0]["id"]
        return job


SCOPE_ORG = {"own": "A", "organization": "A", "collaboration": "B", "global": "C"}
# in the collaboration scope, records that can belong to a collaboration (nodes, agents,
# shares, jobs, tasks) belong to one of A and B; a partner's other records are out of reach
# (tests/security/test_matrix.py holds both sides)


def target(world: World, caller: dict[str, Any], resource: str, scope: str) -> str:
    """A fresh record of ``resource`` in ``scope`` of ``caller``: its id."""
    org = SCOPE_ORG[scope]
    owner = world.member[org]
    if resource == "user":
        return str(caller["id"]) if scope == "own" else str(world.user(org, [])["id"])
    if resource == "organization":
        return str(world.org[org]["id"])
    if resource == "collaboration":
        members = [world.org["A"]["id"]] if scope == "organization" else [world.org["C"]["id"]]
        return str(world.ok("POST", "/collaboration", {"name": unique("co"),
                                                       "organizations": members},
                            world.root)["id"])
    if resource == "role":
        return str(world.ok("POST", "/role", {"name": unique("role"), "organization":
                                              world.org[org]["id"]}, world.root)["id"])
    if resource == "rule":
        return permissions.rule_id("job", "view", "own")
    shared = scope == "collaboration"
    if resource == "node":
        return str(world.node(org, shared=shared)["id"])
    if resource == "client":
        return str(world.client(org, caller["id"] if scope == "own" else None,
                                shared=shared)["id"])
    if resource == "site":
        return str(world.ok("POST", "/site", {"name": unique("site")}, world.root)["id"])
    if resource == "share":
        client = world.client(org, shared=shared)
        return str(world.ok("POST", "/share", {"name": unique("share"), "client": client["id"],
                                               "path": "/srv/x"}, world.root)["id"])
    if resource in ("job", "task"):
        job = world.job(owner["token"], world.collab["AB"]["id"] if shared else None)
        if scope == "own":
            world.give("jobs", job["id"], caller["id"])
        return str(job["id"] if resource == "job" else job["task"])
    if resource == "apikey":
        key = world.ok("POST", "/apikey", {"description": "k"}, owner["token"])
        if scope == "own":
            world.give("api_keys", key["id"], caller["id"])
        return str(key["id"])
    if resource == "queue":
        return str(world.ok("POST", "/queue", {"name": unique("queue"), "organization":
                                               world.org[org]["id"]}, world.root)["id"])
    if resource == "limit":
        return str(world.ok("POST", "/limit", {"name": unique("limit"), "max": 2,
                                               "organization": world.org[org]["id"]},
                            world.root)["id"])
    if resource == "engine":
        return str(world.ok("POST", "/engine", {"name": unique("engine"), "argv": ["true"],
                                                "organization": world.org[org]["id"]},
                            world.root)["id"])
    if resource == "webhook":
        return str(world.ok("POST", "/webhook", {"url": "https://example.org/hook",
                                                 "events": ["job.done"],
                                                 "organization": world.org[org]["id"]},
                            world.root)["id"])
    raise AssertionError(resource)


EDITS: dict[str, dict[str, Any]] = {
    "user": {"firstname": "Ed"}, "organization": {"country": "Elsewhere"},
    "collaboration": {"encrypted": False}, "role": {"description": "edited"},
    "node": {"description": "edited"}, "client": {"description": "edited"},
    "site": {"description": "edited"}, "share": {"description": "edited"},
    "job": {"priority": 400}, "queue": {"priority": 400}, "limit": {"max": 3},
    "engine": {"bucket_size": 4}, "webhook": {"enabled": False},
}


# where a new record can land: a job or API key is the caller's own; an organization,
# collaboration or site belongs to no organization
CREATE_SCOPES = {"job": ("own",), "apikey": ("own",), "organization": ("global",),
                 "collaboration": ("global",), "site": ("global",)}


def attempt(world: World, caller: dict[str, Any], resource: str, operation: str,
            scope: str) -> tuple[int, Any] | None:
    """The answer to ``operation`` on a record of ``resource`` in ``scope``; None when the
    cell means nothing in the API (API keys are never edited, rules never written)."""
    token = caller["token"]
    api = world.api
    if operation == "create":
        if scope not in CREATE_SCOPES.get(resource, permissions.SCOPES):
            return None  # e.g. a job is always created as one's own
        org = world.org[SCOPE_ORG[scope]]["id"]
        bodies: dict[str, Callable[[], Any]] = {
            "user": lambda: ("/user", {"username": unique("new"), "password": PASSWORD,
                                       "organization": org, "roles": []}),
            "organization": lambda: ("/organization", {"name": unique("neworg")}),
            "collaboration": lambda: ("/collaboration", {"name": unique("newco")}),
            "role": lambda: ("/role", {"name": unique("newrole"), "organization": org}),
            "node": lambda: ("/node", {"name": unique("newnode"), "organization": org}),
            "site": lambda: ("/site", {"name": unique("newsite")}),
            "share": lambda: ("/share", {"name": unique("newshare"), "path": "/srv/y",
                                         "client": world.client(SCOPE_ORG[scope])["id"]}),
            "job": lambda: ("/job", {"compute": {"command": ["true"], "items": "1"},
                                     "status": "paused"}),
            "task": lambda: (f"/job/{target(world, caller, 'job', scope)}/tasks",
                             {"tasks": [{"item": "9"}]}),
            "apikey": lambda: ("/apikey", {"description": "new"}),
            "queue": lambda: ("/queue", {"name": unique("newqueue"), "organization": org}),
            "limit": lambda: ("/limit", {"name": unique("newlimit"), "max": 1,
                                         "organization": org}),
            "engine": lambda: ("/engine", {"name": unique("newengine"), "argv": ["true"],
                                           "organization": org}),
            "webhook": lambda: ("/webhook", {"url": "https://example.org/new",
                                             "events": ["job.done"], "organization": org}),
        }
        if resource not in bodies:
            return None
        path, body = bodies[resource]()
        return http("POST", f"{api}{path}", body, token=token)
    if resource == "rule" and operation != "view":
        return None
    ident = target(world, caller, resource, scope)
    if operation == "view":
        return http("GET", f"{api}/{resource}/{ident}", token=token)
    if operation == "edit":
        if resource == "task":
            job = http("GET", f"{api}/task/{ident}", token=world.root)[1]["job"]
            return http("PATCH", f"{api}/job/{job}/tasks",
                        {"tasks": [{"id": ident, "priority": 400}]}, token=token)
        if resource not in EDITS:
            return None
        return http("PATCH", f"{api}/{resource}/{ident}", EDITS[resource], token=token)
    if resource == "task":
        return None  # tasks are never deleted (kept for audit)
    return http("DELETE", f"{api}/{resource}/{ident}", token=token)


def expected(role: str, resource: str, operation: str, scope: str) -> bool:
    rules = permissions.DEFAULT_ROLES[role][1]
    scopes = permissions.RESOURCES[resource]
    if scope not in scopes:  # e.g. "own" of an organization: the next one up
        scope = next(s for s in scopes if permissions.SCOPES.index(s)
                     >= permissions.SCOPES.index(scope))
    return any((resource, operation, s) in rules for s in scopes[scopes.index(scope):])


# resources whose records out of the caller's sight are answered 404, not 403
HIDDEN = {"queue", "limit", "engine", "webhook"}
# resources whose records belong to an organization: another organization's, when the
# caller may not see it, is answered 404 as well, as a record that does not exist; a
# caller holding no rule for the operation at all is refused before any record is looked
# up (hub/access.py)
OWNED = {"user", "organization", "role", "node", "client", "share", "job", "task"}


def foreign_unseen(role: str, resource: str, operation: str, scope: str) -> bool:
    """Is this cell another organization's record, out of sight, answered 404?"""
    rules = permissions.DEFAULT_ROLES[role][1]
    scopes = permissions.RESOURCES[resource]
    reached = scope if scope in scopes else next(  # a partner's role: only globally
        s for s in scopes if permissions.SCOPES.index(s) >= permissions.SCOPES.index(scope))
    adding_tasks = resource == "task" and operation == "create"  # to another's job
    return (resource in OWNED and reached == "global" and (operation != "create" or adding_tasks)
            and not expected(role, resource, "view", scope)
            and any(r[:2] == (resource, operation) for r in rules))

# cells pinned by hand: (role, resource, operation, scope) -> allowed
PINNED = {
    ("viewer", "job", "create", "own"): False,
    ("viewer", "job", "view", "organization"): True,
    ("viewer", "user", "view", "global"): False,
    ("researcher", "job", "create", "own"): True,
    ("researcher", "job", "edit", "organization"): False,
    ("researcher", "job", "view", "collaboration"): False,
    ("researcher", "user", "create", "organization"): False,
    ("organization admin", "user", "create", "organization"): True,
    ("organization admin", "user", "create", "global"): False,
    ("organization admin", "job", "delete", "organization"): True,
    ("organization admin", "job", "edit", "collaboration"): False,
    ("organization admin", "organization", "create", "global"): False,
    ("root", "organization", "delete", "global"): True,
    ("organization admin", "queue", "edit", "organization"): True,
    ("organization admin", "queue", "edit", "collaboration"): False,
    ("researcher", "queue", "view", "organization"): True,
    ("researcher", "queue", "create", "organization"): False,
    ("viewer", "queue", "edit", "organization"): False,
    ("organization admin", "limit", "edit", "organization"): True,
    ("organization admin", "limit", "edit", "collaboration"): False,
    ("researcher", "limit", "view", "organization"): True,
    ("researcher", "limit", "edit", "organization"): False,
    ("viewer", "limit", "create", "organization"): False,
    ("organization admin", "engine", "edit", "organization"): True,
    ("organization admin", "engine", "create", "collaboration"): False,
    ("researcher", "engine", "view", "organization"): True,
    ("researcher", "engine", "create", "organization"): False,
    ("viewer", "engine", "edit", "organization"): False,
}

ROLES = [permissions.ROOT, permissions.ORG_ADMIN, permissions.RESEARCHER, permissions.VIEWER]


@pytest.fixture
def world(hub: Hub) -> World:
    return World(hub)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_against_each_resource_operation_and_scope(world: World, role: str) -> None:
    caller = world.user("A", [role])
    checked = 0
    for resource, scopes in permissions.RESOURCES.items():
        for operation in permissions.OPERATIONS:
            for scope in permissions.SCOPES:
                if scope != "global" and scope not in scopes and \
                        permissions.SCOPES.index(scope) < permissions.SCOPES.index(scopes[0]):
                    continue  # narrower than any scope of this resource: same as its first
                answer = attempt(world, caller, resource, operation, scope)
                if answer is None:
                    continue
                status, body = answer
                if status == 409 and body["error"]["code"] == "self_delete":
                    continue
                want = expected(role, resource, operation, scope)
                pinned = PINNED.get((role, resource, operation, scope))
                assert pinned is None or pinned == want, (role, resource, operation, scope)
                cell = (role, resource, operation, scope, status, body)
                if want:
                    assert status in (200, 201) or (status == 409 and body["error"]["code"]
                                                    in ("in_use", "protected", "client_online")), cell
                elif resource in HIDDEN and operation != "create" and \
                        not expected(role, resource, "view", scope):
                    if not any(r[0] == resource for r in permissions.DEFAULT_ROLES[role][1]):
                        # no rule on it at all (webhooks, to all but admins): refused
                        # outright, naming the view rule, whichever record is named
                        assert (status, body["error"]["rule"]["resource"],
                                body["error"]["rule"]["operation"]) == (403, resource, "view")
                    else:
                        assert status == 404, cell  # out of sight: as if it did not exist
                elif foreign_unseen(role, resource, operation, scope):
                    assert status == 404, cell
                    assert body["error"]["code"] == "not_found", cell
                else:
                    assert status == 403, cell
                    rule = body["error"]["rule"]
                    assert rule["resource"] == resource and rule["operation"] == operation, cell
                    assert f"missing rule: {operation} {resource}" in body["error"]["message"]
                checked += 1
    assert checked > 100


def test_an_agent_token_does_only_what_an_agent_does(world: World) -> None:
    agent = world.client("A")
    other = world.client("A")
    api = world.api
    assert http("GET", f"{api}/client/{agent['id']}", token=agent["token"])[0] == 200
    status, body = http("GET", f"{api}/client/{other['id']}", token=agent["token"])
    assert status == 403 and body["error"]["rule"] == {
        "resource": "client", "operation": "view", "scope": "organization"}
    for method, path, payload in (("GET", f"/user/{world.member['A']['id']}", None),
                                  ("POST", "/job", {"compute": {"command": ["true"],
                                                                "items": "1"}}),
                                  ("POST", "/find", {"query": "User"}),
                                  ("POST", "/organization", {"name": unique("x")})):
        status, body = http(method, f"{api}{path}", payload, token=agent["token"])
        assert status == 403, (path, body)
        assert "missing rule" in body["error"]["message"] or "agents" in body["error"]["message"]


def test_nobody_gives_a_rule_they_do_not_hold(world: World) -> None:
    admin = world.user("A", [permissions.ORG_ADMIN])
    api = world.api
    status, body = http("POST", f"{api}/user", {"username": unique("esc"), "password": PASSWORD,
                                                "roles": [permissions.ROOT]},
                        token=admin["token"])
    assert status == 403 and "cannot give rule" in body["error"]["message"], body
    status, body = http("POST", f"{api}/role", {"name": unique("mine"), "rules": [
        {"resource": "organization", "operation": "create", "scope": "global"}]},
                        token=admin["token"])
    assert status == 403 and "cannot give rule 'create organization (global)'" in \
        body["error"]["message"], body
    researcher = world.user("A", [permissions.RESEARCHER])
    status, body = http("PATCH", f"{api}/user/{researcher['id']}",
                        {"roles": [permissions.ORG_ADMIN]}, token=researcher["token"])
    assert status == 403, body
    # what one holds, one may give
    status, body = http("POST", f"{api}/user", {"username": unique("ok"), "password": PASSWORD,
                                                "roles": [permissions.RESEARCHER]},
                        token=admin["token"])
    assert status == 201 and body["organization"] == world.org["A"]["id"], body


def test_default_roles_cannot_be_changed(world: World) -> None:
    api = world.api
    role = permissions.role_id(permissions.VIEWER)
    status, body = http("PATCH", f"{api}/role/{role}", {"description": "x"}, token=world.root)
    assert status == 409 and body["error"]["code"] == "protected"
    status, body = http("DELETE", f"{api}/role/{role}", token=world.root)
    assert status == 409 and body["error"]["code"] == "protected"


def test_a_new_user_gets_least_privilege(world: World) -> None:
    user = world.ok("POST", "/user", {"username": unique("plain"), "password": PASSWORD},
                    world.root)
    assert user["roles"] == [permissions.role_id(permissions.LEAST)]
    assert user["role"] == permissions.LEAST


def test_files_move_only_between_shares_one_may_see(world: World) -> None:
    """A share out of sight answers as one that does not exist; seeing one is not reading
    it (tests/security/test_shares.py attacks this further)."""
    share = world.ok("POST", "/share", {"name": unique("projects"), "client":
                                        world.client("C")["id"], "path": "/srv/p"}, world.root)
    researcher = world.user("A", [permissions.RESEARCHER])
    status, body = http("POST", f"{world.api}/job", {
        "source": f"share={share['name']}/film/edit.mov", "destination": "hq"},
        token=researcher["token"])
    assert status == 422 and body["error"]["code"] == "unknown_share", body
    status, unknown = http("POST", f"{world.api}/job", {
        "source": f"share={unique('nothing')}/film/edit.mov", "destination": "hq"},
        token=researcher["token"])
    assert status == 422 and unknown["error"]["code"] == "unknown_share", unknown
