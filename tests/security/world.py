"""Organizations to attack each other with, on one real hub, through its HTTP API.

A and B share the collaboration AB; C shares none. Users of each default role, nodes (one
of each organization's own, plus its node of AB) and agents enrolled over plain HTTP (a
``RawAgent`` says and does exactly what a hostile agent process would: it holds a real
node key and a real token, and sends whatever it likes).
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import Hub, http, login

PASSWORD = "attack-password-1"
_n = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}-{next(_n)}"


@dataclass
class RawAgent:
    """An agent of a node, enrolled through the API, driven by hand."""

    hub: Hub
    id: str
    token: str
    lanes: list[str]
    organization: str
    node: dict[str, Any] = field(default_factory=dict)

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return http(method, f"{self.hub.api}{path}", body, token=self.token, **kw)

    def claim(self, *, lanes: int | None = None, slots: int = 0, docker: int = 0
              ) -> list[dict[str, Any]]:
        """Buckets for free lanes (all by default), without waiting."""
        free = self.lanes if lanes is None else self.lanes[:lanes]
        status, answer = self.call("POST", "/agent/claim", {
            "lanes": free, "wait": 0, "slots": slots, "docker": docker})
        assert status == 200, answer
        return list(answer["buckets"])

    def report(self, *items: dict[str, Any]) -> list[dict[str, Any]]:
        status, answer = self.call("POST", "/agent/report", {"items": list(items)})
        assert status == 200, answer
        return list(answer["results"])


class World:
    """Organizations A, B (collaboration AB) and C, with their people and machines."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.api = hub.api
        self.root = login(hub)
        self.org = {k: self.ok("POST", "/organization", {"name": unique(f"org{k}")})
                    for k in "ABC"}
        self.collab = self.ok("POST", "/collaboration", {
            "name": unique("AB"), "organizations": [self.org["A"]["id"], self.org["B"]["id"]]})
        self._users: dict[tuple[str, str], dict[str, Any]] = {}

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, answer = http(method, f"{self.api}{path}", body, token=token or self.root)
        assert status in (200, 201), (method, path, body, answer)
        return answer

    def call(self, method: str, path: str, body: Any = None, token: str | None = None
             ) -> tuple[int, Any]:
        return http(method, f"{self.api}{path}", body, token=token or self.root)

    def user(self, org: str, role: str) -> dict[str, Any]:
        """A user of ``org`` with one default role (one per organization and role)."""
        if (org, role) not in self._users:
            record = self.ok("POST", "/user", {
                "username": unique(f"{role.replace(' ', '')}{org}"), "password": PASSWORD,
                "organization": self.org[org]["id"], "roles": [role]})
            record["token"] = login(self.hub, record["username"], PASSWORD)
            self._users[(org, role)] = record
        return self._users[(org, role)]

    def node(self, org: str, *, shared: bool = False, collaboration: str | None = None
             ) -> dict[str, Any]:
        """A node of ``org``: its own (no collaboration), or its node of AB (``shared``)
        or of another ``collaboration`` (one per organization and collaboration)."""
        body: dict[str, Any] = {"name": unique(f"node{org}"), "organization": self.org[org]["id"]}
        if shared or collaboration:
            body["collaboration"] = collaboration or self.collab["id"]
        return dict(self.ok("POST", "/node", body))

    def agent(self, org: str, *, shared: bool = False, lanes: int = 1,
              code: str | None = None, node: dict[str, Any] | None = None,
              transfer_url: str | None = None) -> RawAgent:
        """An agent enrolled by hand; ``transfer_url``: the endpoint it says it serves
        (nobody answers there unless the test does)."""
        node = node or self.node(org, shared=shared)
        body: dict[str, Any] = {"api_key": node["api_key"], "machine_id": uuid.uuid4().hex,
                                "code": code or unique(f"agent{org}"), "type": 1,
                                "lanes": lanes}
        if transfer_url is not None:
            body["transfer"] = {"url": transfer_url}
        status, answer = http("POST", f"{self.api}/agent/enroll", body)
        assert status == 200, answer
        return RawAgent(self.hub, answer["client_id"], answer["token"], answer["lanes"],
                        self.org[org]["id"], node)

    def compute_job(self, token: str, *, items: str = "1", **extra: Any) -> dict[str, Any]:
        compute = {"command": ["true"], "items": items, **extra.pop("compute", {})}
        return dict(self.ok("POST", "/job", {"compute": compute, **extra}, token))

    def tasks(self, job_id: str) -> list[dict[str, Any]]:
        found = self.ok("POST", "/find", {"query": f"Task where job={job_id}"})
        return list(found["result"])


def task_report(key: str, bucket: str, task: str, event: str = "done", **extra: Any
                ) -> dict[str, Any]:
    return {"kind": "task", "key": key, "bucket_id": bucket, "task_id": task, "event": event,
            "at": "2026-12-05T12:00:00Z", "exit_code": 0 if event == "done" else 1, **extra}
