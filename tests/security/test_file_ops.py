"""File operations across the trust boundaries, against a real hub and a real agent of
organization A serving a share (in the collaboration AB).

Listing is reading the share's files, changing them is writing them: a viewer of A, a
user of A who may only read, B's users (who see the share's record through AB) are
refused naming the missing rule; C's users, who cannot see the share, get the answer of a
share that does not exist. Tickets sent straight to the agent's endpoint, forged, expired,
for another operation or path, or shown a second time, are refused. After each refusal,
nothing changed on disk, nor in the hub's table of changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from hub import permissions
from protocol import tickets
from protocol.files import FILEOP_PATH, FILES, FileOpRequest, digest
from tests.conftest import HUB_DEFAULTS, ON_POSTGRES, postgres_database
from tests.helpers import Agent, Hub, db_query, isolated_env, login, wait_for
from tests.security.world import PASSWORD, World, unique
from tests.transports.test_fileops import tree
from transports import tls

pytestmark = [pytest.mark.slow, pytest.mark.hub_database]  # its own hub, on the round's database


@dataclass
class Served:
    world: World
    agent: Agent
    root: Path
    outside: Path
    share: dict[str, Any]
    url: str  # the agent's transfer endpoint
    fingerprint: str
    hub_key: Any  # the hub's ticket key, read from its database: a ticket that leaked

    def before(self) -> tuple[dict[str, str], dict[str, str], list[Any]]:
        return (tree(self.root), tree(self.outside),
                db_query(self.world.hub.database, "SELECT * FROM file_changes"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("fileops")
    env = isolated_env(tmp / "env")
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "HOME",
                    "FERRY_ROOT_PASSWORD", "PYTHON_KEYRING_BACKEND"):
            patch.setenv(key, env[key])
        section: dict[str, Any] = dict(HUB_DEFAULTS)
        if ON_POSTGRES:
            section["uri"] = stack.enter_context(postgres_database())
        hub = Hub("hub", "files", tmp, section, env)
        stack.callback(hub.kill)
        hub.start()
        world = World(hub)
        agent = Agent("agent", "fileserver", tmp, {
            "hub": hub.url, "api_key": world.node("A", shared=True)["api_key"],
            "retry_max_delay": 0.5, "transfer_ip": "127.0.0.1", "lanes": 1,
            "logging": {"level": "DEBUG"}}, env)
        stack.callback(agent.kill)
        agent.start()
        client = wait_for(lambda: agent.status()["client_id"], what="enrolled")
        root, outside = tmp / "a-data", tmp / "outside"
        (root / "film" / "shot").mkdir(parents=True)
        (root / "film" / "a.exr").write_text("aaaa")
        (root / "film" / "shot" / "c.exr").write_text("c")
        outside.mkdir()
        (outside / "secret.txt").write_text("secret")
        (root / "film" / "out").symlink_to(outside)
        share = world.ok("POST", "/share", {"name": unique("a-data"), "client": client,
                                            "path": str(root)})
        wait_for(lambda: share["name"] in agent.status()["transfer"]["shares"], what="served")
        transfer = world.ok("GET", f"/client/{client}")["transfer"]
        [(seed,)] = db_query(hub.database,
                             "SELECT value FROM hub_state WHERE key = 'ticket_seed'")
        yield Served(world, agent, root, outside, share, transfer["url"],
                     transfer["fingerprint"], tickets.private_key(bytes.fromhex(seed)))


def test_rights_on_the_share_decide(served: Served) -> None:
    world, name = served.world, served.share["name"]
    reader_role = world.ok("POST", "/role", {"name": unique("reader"),
                                             "organization": world.org["A"]["id"],
                                             "rules": ["view share (organization)",
                                                       "read share (organization)"]})
    reader = world.ok("POST", "/user", {
        "username": unique("reader"), "password": PASSWORD,
        "organization": world.org["A"]["id"], "roles": [reader_role["id"]]})
    reader_token = login(world.hub, reader["username"], PASSWORD)
    changes = [("/files/mkdir", {"path": f"share={name}/film/new"}),
               ("/files/rename", {"path": f"share={name}/film/a.exr", "to": "b.exr"}),
               ("/files/mv", {"path": f"share={name}/film/a.exr", "to": f"share={name}/a.exr"}),
               ("/files/delete", {"path": f"share={name}/film", "recursive": True})]
    reads = [("/files/ls", {"path": f"share={name}/film/"}),
             ("/files/stat", {"path": f"share={name}/film/a.exr"})]
    refused = [  # (who, calls, status, what the answer says)
        (world.user("A", permissions.VIEWER)["token"], reads, 403,
         "missing rule: read share (organization)"),
        (world.user("A", permissions.VIEWER)["token"], changes, 403,
         "missing rule: write share (organization)"),
        (world.user("B", permissions.VIEWER)["token"], reads + changes, 422,
         f"no share named '{name}'"),
        (world.user("B", permissions.RESEARCHER)["token"], reads, 403,
         "missing rule: read share (collaboration)"),
        (world.user("B", permissions.ORG_ADMIN)["token"], changes, 403,
         "missing rule: write share (collaboration)"),
        (reader_token, changes, 403, "missing rule: write share (organization)"),
        (world.user("C", permissions.RESEARCHER)["token"], reads + changes, 422,
         f"no share named '{name}'"),
        (world.user("C", permissions.ORG_ADMIN)["token"], reads + changes, 422,
         f"no share named '{name}'"),
    ]
    before = served.before()
    for token, calls, status, needle in refused:
        for path, body in calls:
            got, answer = world.call("POST", path, body, token)
            assert got == status and needle in answer["error"]["message"], (path, answer)
    # C cannot tell A's share from one that does not exist: the same answer, word for word
    c = world.user("C", permissions.RESEARCHER)["token"]
    _, theirs = world.call("POST", "/files/ls", {"path": f"share={name}/film/"}, c)
    _, none = world.call("POST", "/files/ls", {"path": f"share={name}x/film/"}, c)
    assert theirs["error"]["message"].replace(name, "?") == \
        none["error"]["message"].replace(name + "x", "?")
    got, answer = world.call("POST", "/files/changes", {"path": f"share={name}"}, c)
    assert got == 422 and answer["error"]["code"] == "unknown_share"
    assert served.before() == before  # nothing changed, nothing recorded

    # the reader reads; A's researcher (read and write) changes, and it is recorded
    got, answer = world.call("POST", "/files/ls", {"path": f"share={name}/film/"}, reader_token)
    assert got == 200 and [e["name"] for e in answer["result"]] == ["a.exr", "out", "shot"]
    ann = world.user("A", permissions.RESEARCHER)
    got, answer = world.call("POST", "/files/mkdir", {"path": f"share={name}/film/new"},
                             ann["token"])
    assert got == 200 and (served.root / "film" / "new").is_dir(), answer
    got, answer = world.call("POST", "/files/delete", {"path": f"share={name}/film/new"},
                             ann["token"])
    assert got == 200 and not (served.root / "film" / "new").exists(), answer
    got, record = world.call("POST", "/files/changes", {"path": f"share={name}"},
                             reader_token)
    assert got == 200
    assert [(r["op"], r["path"], r["username"], r["organization"]) for r in record["result"]
            ] == [("delete", "film/new", ann["username"], world.org["A"]["id"]),
                  ("mkdir", "film/new", ann["username"], world.org["A"]["id"])]
    # an agent's token works on no files
    got, answer = world.agent("A").call("POST", "/files/ls", {"path": f"share={name}/"})
    assert got == 403 and "by users" in answer["error"]["message"]


def test_tickets_straight_to_the_agent_are_refused(served: Served) -> None:
    share_id = served.share["id"]
    agent_id = served.agent.status()["client_id"]
    request = FileOpRequest(op="delete", path="film/a.exr", nonce=uuid.uuid4().hex)
    other = FileOpRequest(op="delete", path="film/shot/c.exr", nonce=uuid.uuid4().hex)

    def ticket(key: Any = None, ttl: float = 60, now: float | None = None,
               **scope: Any) -> str:
        fields: dict[str, Any] = {"server": agent_id, "share": share_id,
                                  "path": request.path, "op": request.op, "job": FILES,
                                  "task": digest(request), **scope}
        return tickets.issue(key or served.hub_key, tickets.TicketScope(**fields), ttl=ttl,
                             now=now)

    def send(ticket: str, body: FileOpRequest = request, op: str = "delete") -> tuple[int, Any]:
        async def post() -> tuple[int, Any]:
            async with aiohttp.ClientSession() as client, client.post(
                    f"{served.url}{FILEOP_PATH}", params={"share": share_id, "op": op},
                    data=msgspec.json.encode(body),
                    headers={"Authorization": f"Ticket {ticket}"},
                    ssl=tls.pin(served.fingerprint)) as resp:
                return resp.status, await resp.json()

        return asyncio.run(post())

    attempts = [  # (what, status, answer, reason)
        ("forged", *send(ticket(key=tickets.private_key(os.urandom(32)))), "forged ticket"),
        ("expired", *send(ticket(ttl=1, now=time.time() - 300)), "expired ticket"),
        ("for a listing", *send(ticket(op="ls")), "ticket to ls, not to delete"),
        ("for another path", *send(ticket(path=other.path)), "another operation, path"),
        ("for another body", *send(ticket(), other), "another operation, path"),
        ("a transfer's", *send(ticket(op="write", job="0" * 24)), "ticket to write"),
        ("for another share", *send(ticket(share="0" * 24)), "ticket for another share"),
        ("none", *send(""), "needs a ticket"),
    ]
    before = served.before()
    for what, status, answer, reason in attempts:
        assert status == 403 and reason in str(answer), (what, status, answer)
    assert served.before() == before
    # a genuine one works once; replayed, it is refused (the file made again stays)
    genuine = ticket()
    status, answer = send(genuine)
    assert status == 200 and not (served.root / "film" / "a.exr").exists(), answer
    (served.root / "film" / "a.exr").write_text("again")
    status, answer = send(genuine)
    assert status == 403 and "used already" in str(answer), answer
    assert (served.root / "film" / "a.exr").read_text() == "again"
    assert served.agent.status()["transfer"]["refused"] >= len(attempts) + 1
