"""The cross-organization matrix of docs/SECURITY.md, checked cell by cell on a running hub.

The table is read from the document itself: what the page promises is what is tested.
Callers of organization A (a viewer, a researcher, an organization admin, and A's node of
the collaboration AB) act on records of B that belong to AB, on B's own records, and on
C's, which shares nothing with A. Every cell is tried for real; the ones that write come
last, and afterwards none of B's or C's records has changed but for the work A's node
was meant to take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub import permissions
from tests.helpers import Hub, db_query
from tests.security.world import PASSWORD, RawAgent, World, unique

DOC = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"
CALLERS = ("V", "R", "O", "N")
PLACES = ("AB", "B", "C")
# the only rows where B's own records or C's may be ✓: a partner organization and its users
# are what a collaboration is made of
PARTNER_ROWS = {"organization: find", "organization: get", "organization: relations (users)",
                "user: find", "user: get"}
# 409s that come after the permission check: the caller was allowed to try
AFTER_CHECK = {"in_use", "protected", "client_online", "job_running", "self_delete"}
YES, NO = "\u2713", "\u2013"  # the table's marks: a check mark and an en dash


def read_matrix() -> dict[str, dict[tuple[str, str], bool]]:
    text = DOC.read_text()
    table = text.split("<!-- matrix -->", 1)[1].split("<!-- /matrix -->", 1)[0]
    rows = [r for r in table.strip().splitlines() if r.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    columns = [tuple(c.split("·")) for c in header[1:]]
    assert columns == [(c, p) for c in CALLERS for p in PLACES], header
    matrix: dict[str, dict[tuple[str, str], bool]] = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(c in (YES, NO) for c in cells[1:]), row
        matrix[cells[0]] = {col: c == YES for col, c in zip(columns, cells[1:], strict=True)}
    return matrix


def test_the_documented_matrix_keeps_foreign_records_foreign() -> None:
    for row, cells in read_matrix().items():
        if row in PARTNER_ROWS:
            continue
        for (caller, place), allowed in cells.items():
            assert not (allowed and place in ("B", "C")), (row, caller, place)


@dataclass
class Place:
    """The records of one column: an organization and the records of it that A acts on."""

    org: dict[str, Any]
    collab: dict[str, Any]
    user: dict[str, Any]
    role: dict[str, Any]
    node: dict[str, Any]
    agent: RawAgent
    share: dict[str, Any]
    job: dict[str, Any]  # paused: it only sits there
    task: str
    running: dict[str, Any]  # waiting: for dispatch
    docker: dict[str, Any]  # a docker job with a run for A where A may run one (AB)


class Cells:
    """Every operation of the table, tried by one caller on one place's records."""

    def __init__(self, world: World, places: dict[str, Place], a_share: str) -> None:
        self.w = world
        self.places = places
        self.a_share = a_share
        self._claims: dict[str, set[str]] = {}

    def status(self, method: str, path: str, body: Any, token: str) -> tuple[int, Any]:
        return self.w.call(method, path, body, token)

    def allowed(self, method: str, path: str, body: Any, token: str) -> bool:
        status, answer = self.status(method, path, body, token)
        if status in (200, 201):
            return True
        if status == 409 and answer["error"]["code"] in AFTER_CHECK:
            return True
        assert status in (401, 403, 404, 409, 422), (method, path, status, answer)
        return False

    def listed(self, query: str, ident: str, token: str) -> bool:
        status, answer = self.status("POST", "/find", {"query": query}, token)
        return status == 200 and ident in {r["id"] for r in answer["result"]}

    def related(self, path: str, ident: str, token: str) -> bool:
        status, answer = self.status("GET", path, None, token)
        return status == 200 and ident in {r["id"] for r in answer["result"]}

    def claimed(self, agent: RawAgent, kind: str) -> set[str]:
        """The jobs A's node gets with one claim (lanes, or docker slots)."""
        if kind not in self._claims:
            buckets = agent.claim(docker=4, lanes=0) if kind == "docker" else agent.claim()
            self._claims[kind] = {b["job_id"] for b in buckets}
        return self._claims[kind]

    def ops(self) -> dict[str, Callable[[str, Any, Place], bool]]:
        a, w = self, self.w
        return {
            "organization: find": lambda t, c, p: a.listed("Organization", p.org["id"], t),
            "organization: get": lambda t, c, p: a.allowed("GET", f"/organization/{p.org['id']}",
                                                           None, t),
            "organization: relations (users)": lambda t, c, p: a.related(
                f"/organization/{p.org['id']}/users", p.user["id"], t),
            "organization: relations (jobs)": lambda t, c, p: a.related(
                f"/organization/{p.org['id']}/jobs", p.job["id"], t),
            "organization: update": lambda t, c, p: a.allowed(
                "PATCH", f"/organization/{p.org['id']}", {"country": "Elsewhere"}, t),
            "collaboration: get": lambda t, c, p: a.allowed(
                "GET", f"/collaboration/{p.collab['id']}", None, t),
            "user: find": lambda t, c, p: a.listed("User", p.user["id"], t),
            "user: get": lambda t, c, p: a.allowed("GET", f"/user/{p.user['id']}", None, t),
            "user: create": lambda t, c, p: a.allowed("POST", "/user", {
                "username": unique("new"), "password": PASSWORD,
                "organization": p.org["id"], "roles": []}, t),
            "user: update": lambda t, c, p: a.allowed("PATCH", f"/user/{p.user['id']}",
                                                      {"firstname": "Mallory"}, t),
            "role: find": lambda t, c, p: a.listed("Role", p.role["id"], t),
            "role: get": lambda t, c, p: a.allowed("GET", f"/role/{p.role['id']}", None, t),
            "role: create": lambda t, c, p: a.allowed("POST", "/role", {
                "name": unique("role"), "organization": p.org["id"]}, t),
            "role: update": lambda t, c, p: a.allowed("PATCH", f"/role/{p.role['id']}",
                                                      {"description": "mine"}, t),
            "node: find": lambda t, c, p: a.listed("Node", p.node["id"], t),
            "node: get": lambda t, c, p: a.allowed("GET", f"/node/{p.node['id']}", None, t),
            "node: create": lambda t, c, p: a.allowed("POST", "/node", {
                "name": unique("node"), "organization": p.org["id"]}, t),
            "node: update": lambda t, c, p: a.allowed("PATCH", f"/node/{p.node['id']}",
                                                      {"description": "mine"}, t),
            "client: find": lambda t, c, p: a.listed("Client", p.agent.id, t),
            "client: get": lambda t, c, p: a.allowed("GET", f"/client/{p.agent.id}", None, t),
            "client: update": lambda t, c, p: a.allowed("PATCH", f"/client/{p.agent.id}",
                                                        {"tags": ["mine"]}, t),
            "share: find": lambda t, c, p: a.listed("Share", p.share["id"], t),
            "share: get": lambda t, c, p: a.allowed("GET", f"/share/{p.share['id']}", None, t),
            "share: create": lambda t, c, p: a.allowed("POST", "/share", {
                "name": unique("share"), "client": p.agent.id, "path": "/srv/mine"}, t),
            "share: update": lambda t, c, p: a.allowed("PATCH", f"/share/{p.share['id']}",
                                                       {"description": "mine"}, t),
            "share: transfer from": lambda t, c, p: a.allowed("POST", "/job", {
                "source": f"share={p.share['name']}/film.mov",
                "destination": f"share={a.a_share}/", "status": "paused"}, t),
            "share: transfer into": lambda t, c, p: a.allowed("POST", "/job", {
                "source": f"share={a.a_share}/film.mov",
                "destination": f"share={p.share['name']}/film.mov", "status": "paused"}, t),
            "job: find": lambda t, c, p: a.listed("Job", p.job["id"], t),
            "job: get": lambda t, c, p: a.allowed("GET", f"/job/{p.job['id']}", None, t),
            "job: create on its agent": lambda t, c, p: a.allowed("POST", "/job", {
                "compute": {"command": ["true"], "items": "1",
                            "clients": [f"client:{p.agent.id}"]},
                "collaboration": w.collab["id"], "status": "paused"}, t),
            "job: update": lambda t, c, p: a.allowed("PATCH", f"/job/{p.job['id']}",
                                                     {"priority": 999}, t),
            "job: requeue": lambda t, c, p: a.allowed("PATCH", f"/job/{p.job['id']}",
                                                      {"status": "waiting"}, t),
            "task: find": lambda t, c, p: a.listed("Task", p.task, t),
            "task: get": lambda t, c, p: a.allowed("GET", f"/task/{p.task}", None, t),
            "task: logs": lambda t, c, p: a.allowed("GET", f"/task/{p.task}/log", None, t),
            "task: requeue": lambda t, c, p: a.allowed("PATCH", f"/job/{p.job['id']}/tasks", {
                "tasks": [{"id": p.task, "status": "queued"}]}, t),
            "dispatch": lambda t, c, p: p.running["id"] in a.claimed(c, "lanes")
            if isinstance(c, RawAgent) else a.allowed(
                "POST", "/agent/claim", {"lanes": [], "wait": 0, "slots": 1}, t),
            "docker run": lambda t, c, p: p.docker["id"] in a.claimed(c, "docker")
            if isinstance(c, RawAgent) else a.allowed("POST", "/job", {
                "docker": {"image": "ferry-test/busybox:1",
                           "organizations": [{"organization": p.org["id"]}]},
                "collaboration": p.collab["id"], "status": "paused"}, t),
            # the deletes last: were one allowed, it would leave nothing for the rest
            "organization: delete": lambda t, c, p: a.allowed(
                "DELETE", f"/organization/{p.org['id']}", None, t),
            "user: delete": lambda t, c, p: a.allowed("DELETE", f"/user/{p.user['id']}", None, t),
            "role: delete": lambda t, c, p: a.allowed("DELETE", f"/role/{p.role['id']}", None, t),
            "node: delete": lambda t, c, p: a.allowed("DELETE", f"/node/{p.node['id']}", None, t),
            "client: delete": lambda t, c, p: a.allowed("DELETE", f"/client/{p.agent.id}", None,
                                                        t),
            "share: delete": lambda t, c, p: a.allowed("DELETE", f"/share/{p.share['id']}", None,
                                                       t),
            "job: delete": lambda t, c, p: a.allowed("DELETE", f"/job/{p.job['id']}", None, t),
        }


def place(world: World, org: str, collab: dict[str, Any], *, shared: bool) -> Place:
    boss = world.user(org, permissions.RESEARCHER)["token"]
    node = world.node(org, collaboration=collab["id"] if shared else None)
    agent = world.agent(org, node=node, transfer_url="https://127.0.0.1:9")
    share = world.ok("POST", "/share", {"name": unique(f"share{org}"), "client": agent.id,
                                        "path": f"/srv/{org}"})
    extra = {"collaboration": collab["id"]} if shared else {}
    job = world.compute_job(boss, status="paused", **extra)
    running = world.compute_job(boss, **extra)
    runs_for = world.org["A"]["id"] if collab is world.collab else world.org[org]["id"]
    docker = world.ok("POST", "/job", {"docker": {
        "image": "ferry-test/busybox:1", "organizations": [{"organization": runs_for}]},
        "collaboration": collab["id"]}, boss)
    role = world.ok("POST", "/role", {"name": unique(f"role{org}"),
                                      "organization": world.org[org]["id"]})
    return Place(world.org[org], collab, world.user(org, permissions.VIEWER), role, node,
                 agent, share, job, world.tasks(job["id"])[0]["id"], running, docker)


def foreign_rows(hub: Hub, orgs: list[str], skip_jobs: set[str]) -> dict[str, Any]:
    """B's and C's records, read straight from the database."""
    marks = ",".join("?" * len(orgs))
    q = lambda sql, *extra: sorted(db_query(hub.database, sql, *orgs, *extra))  # noqa: E731
    return {
        "organizations": q(f"SELECT * FROM organizations WHERE id IN ({marks})"),
        "users": q(f"SELECT id, username, firstname, password_hash, organization_id "
                   f"FROM users WHERE organization_id IN ({marks})"),
        "roles": q(f"SELECT id, name, description FROM roles WHERE organization_id IN ({marks})"),
        "nodes": q(f"SELECT id, name, description FROM nodes WHERE organization_id IN ({marks})"),
        "clients": q(f"SELECT c.id, c.description, c.tags FROM clients c JOIN nodes n "
                     f"ON n.id = c.node_id WHERE n.organization_id IN ({marks})"),
        "shares": q(f"SELECT s.id, s.name, s.description FROM shares s JOIN clients c ON "
                    f"c.id = s.client_id JOIN nodes n ON n.id = c.node_id "
                    f"WHERE n.organization_id IN ({marks})"),
        "jobs": [r for r in q(f"SELECT id, status, priority FROM jobs WHERE organization_id "
                              f"IN ({marks})") if r[0] not in skip_jobs],
    }


def test_each_cell_of_the_matrix(hub: Hub) -> None:
    matrix = read_matrix()
    world = World(hub)
    bc = world.ok("POST", "/collaboration", {"name": unique("BC"), "organizations": [
        world.org["B"]["id"], world.org["C"]["id"]]})
    cc = world.ok("POST", "/collaboration", {"name": unique("CC"), "organizations": [
        world.org["C"]["id"]]})
    places = {"AB": place(world, "B", world.collab, shared=True),
              "B": place(world, "B", bc, shared=False),
              "C": place(world, "C", cc, shared=True)}
    a_node = world.agent("A", shared=True, lanes=4, transfer_url="https://127.0.0.1:9")
    a_share = world.ok("POST", "/share", {"name": unique("shareA"), "client": a_node.id,
                                          "path": "/srv/A"})["name"]
    callers: dict[str, tuple[str, Any]] = {
        "V": (world.user("A", permissions.VIEWER)["token"], None),
        "R": (world.user("A", permissions.RESEARCHER)["token"], None),
        "O": (world.user("A", permissions.ORG_ADMIN)["token"], None),
        "N": (a_node.token, a_node),
    }
    taken = {places["AB"].running["id"], places["AB"].docker["id"]}  # A's node's to take
    before = foreign_rows(hub, [world.org["B"]["id"], world.org["C"]["id"]], taken)
    cells = Cells(world, places, a_share)
    ops = cells.ops()
    assert set(ops) == set(matrix), set(ops) ^ set(matrix)
    wrong = []
    for row, op in ops.items():  # in the order above: the deletes last
        for caller in CALLERS:
            token, agent = callers[caller]
            for where in PLACES:
                got = op(token, agent, places[where])
                if got != matrix[row][(caller, where)]:
                    wrong.append(f"{row} [{caller}·{where}]: documented "
                                 f"{YES if matrix[row][(caller, where)] else NO}, got "
                                 f"{YES if got else NO}")
    assert not wrong, "\n".join(wrong)
    assert foreign_rows(hub, [world.org["B"]["id"], world.org["C"]["id"]], taken) == before
    counted = world.ok("GET", "/refusals")["refusals"]
    assert counted.get("forbidden", 0) >= 50, counted
