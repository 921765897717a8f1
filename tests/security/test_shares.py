"""Finding 3: seeing a share is not reading or writing its files.

A researcher of A sees B's share (it belongs to their collaboration) but holds no right
on its files. Moving A's file over B's, copying B's file into A's share, or pointing a
pending job at B's share is refused naming the rule, and creates nothing; B's file is
untouched. Given ``write share (collaboration)`` by root, the same transfer runs: the
rule is the gate. A share out of sight answers as one that does not exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub import permissions
from tests.helpers import Agent, Hub, ended, wait_for
from tests.security.world import World, unique


def share_of(world: World, agent: Agent, root: Path, name: str) -> dict[str, Any]:
    client = wait_for(lambda: agent.status()["client_id"], what="agent enrolled")
    root.mkdir(parents=True)
    share = world.ok("POST", "/share", {"name": name, "client": client, "path": str(root)})
    wait_for(lambda: name in agent.status()["transfer"]["shares"], what=f"{name} served")
    return dict(share)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_moving_files_needs_read_and_write_rights(
        hub: Hub, start_agent: Callable[..., Agent], tmp_path: Path) -> None:
    world = World(hub)
    a_agent = start_agent(hub, world.node("A", shared=True)["api_key"], lanes=1)
    b_agent = start_agent(hub, world.node("B", shared=True)["api_key"], lanes=1)
    a_name, b_name = unique("a-data"), unique("b-data")
    share_of(world, a_agent, tmp_path / "a", a_name)
    share_of(world, b_agent, tmp_path / "b", b_name)
    (tmp_path / "a" / "payload.txt").write_text("A's file\n")
    secret = tmp_path / "b" / "secret.txt"
    secret.write_text("B's secret\n")
    before = digest(secret)
    ann = world.user("A", permissions.RESEARCHER)
    b_share = world.ok("POST", "/find", {"query": f"Share where name={b_name}"})["result"][0]
    assert world.ok("GET", f"/share/{b_share['id']}", token=ann["token"])["name"] == b_name
    jobs = len(world.ok("POST", "/find", {"query": "Job"})["result"])

    attacks = [  # (body, field, rule)
        ({"source": f"share={a_name}/payload.txt", "destination": f"share={b_name}/secret.txt"},
         "write share (collaboration)"),
        ({"source": f"share={b_name}/secret.txt", "destination": f"share={a_name}/"},
         "read share (collaboration)"),
    ]
    for body, rule in attacks:
        status, answer = world.call("POST", "/job", body, ann["token"])
        assert status == 403, (body, answer)
        assert f"missing rule: {rule}" in answer["error"]["message"], answer
    # a pending job (to a user) given B's share as its destination path later
    pending = world.ok("POST", "/job", {"source": f"share={a_name}/payload.txt",
                                        "destination": ann["username"]}, ann["token"])
    status, answer = world.call("PATCH", f"/job/{pending['id']}", {
        "destination_path": f"share={b_name}/secret.txt"}, ann["token"])
    assert status == 403 and "write share (collaboration)" in answer["error"]["message"]
    assert world.ok("GET", f"/job/{pending['id']}")["status"] == "pending"
    # out of sight is out of existence: C's researcher cannot tell B's share from none
    carl = world.user("C", permissions.RESEARCHER)["token"]
    for name in (b_name, unique("nothing")):
        status, answer = world.call("POST", "/job", {
            "source": f"share={name}/secret.txt", "destination": "hq"}, carl)
        assert status == 422 and answer["error"]["code"] == "unknown_share", answer
    assert len(world.ok("POST", "/find", {"query": "Job"})["result"]) == jobs + 1
    assert digest(secret) == before and sorted(p.name for p in secret.parent.iterdir()) == \
        ["secret.txt"]
    assert world.ok("GET", "/refusals")["refusals"].get("forbidden", 0) >= 3

    # the rule is the gate: given it, the same move runs
    role = world.ok("POST", "/role", {"name": unique("deliver"), "organization": world.org["A"]["id"],
                                      "rules": ["write share (collaboration)"]})
    world.ok("PATCH", f"/user/{ann['id']}", {"roles": [permissions.role_id(
        permissions.RESEARCHER), role["id"]]})
    job = world.ok("POST", "/job", {"source": f"share={a_name}/payload.txt",
                                    "destination": f"share={b_name}/delivered.txt"},
                   ann["token"])
    done = wait_for(lambda: ended(_Session(world), job["id"]), timeout=60, what="delivered")
    assert done["status"] == "done", done
    assert (tmp_path / "b" / "delivered.txt").read_text() == "A's file\n"
    assert digest(secret) == before


class _Session:
    """``get`` as ``tests.helpers.ended`` wants it, as root over plain HTTP."""

    def __init__(self, world: World) -> None:
        self.world = world

    def get(self, entity: str, ident: str) -> dict[str, Any]:
        return dict(self.world.ok("GET", f"/{entity.lower()}/{ident}"))
