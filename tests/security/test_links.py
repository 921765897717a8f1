"""Download links across the trust boundaries: making one is reading the share's file.

A link gives a file to whoever holds it, so only a caller who may take the file out
through a transfer job may make one: ``read share`` in the share's scope. Another
organization's user who cannot see the share is told it does not exist; one who sees it
(a partner in a collaboration) or a lesser role of its own organization is refused naming
the missing rule; agents make none. Nothing is created by a refused call (nor by a made
one: a link is a signed ticket). Against a real agent, a link's ticket opens that file's
link and nothing else: not another path, not a write, not a folder listing, not a chunk.
"""

from __future__ import annotations

import asyncio
import random
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp

from hub import permissions
from protocol.transfer import PREFIX
from tests.helpers import Agent, Hub, db_rows, wait_for
from tests.security.world import World, unique
from transports import tls


def test_only_who_may_read_the_share_makes_a_link(hub: Hub) -> None:
    world = World(hub)
    agent = world.agent("A", shared=True, transfer_url="https://files-a.example:7443")
    name = unique("a-data")
    share = world.ok("POST", "/share", {"name": name, "client": agent.id, "path": "/srv/a"})
    body = {"path": f"share={name}/film/cut.mov", "expires": 600}
    refused = [  # (who, status, what the answer says)
        (world.user("A", permissions.VIEWER), 403, "missing rule: read share (organization)"),
        (world.user("B", permissions.RESEARCHER), 403,
         "missing rule: read share (collaboration)"),
        (world.user("B", permissions.ORG_ADMIN), 403,
         "missing rule: read share (collaboration)"),
        (world.user("C", permissions.RESEARCHER), 422, f"no share named '{name}'"),
        (world.user("C", permissions.ORG_ADMIN), 422, f"no share named '{name}'"),
    ]
    before = db_rows(hub.database)  # with every user made
    forbidden = world.ok("GET", "/refusals")["refusals"].get("forbidden", 0)
    for who, status, needle in refused:
        got, answer = world.call("POST", "/link", body, who["token"])
        assert got == status and needle in answer["error"]["message"], (who["username"], answer)
        assert "url" not in answer
    # C cannot tell A's share from one that does not exist
    got, answer = world.call("POST", "/link", {"path": f"share={unique('none')}/x.mov"},
                             world.user("C", permissions.RESEARCHER)["token"])
    assert got == 422 and answer["error"]["code"] == "unknown_share"
    got, answer = agent.call("POST", "/link", body)
    assert got == 403 and "made by users" in answer["error"]["message"], answer
    assert db_rows(hub.database) == before  # nothing created
    assert world.ok("GET", "/refusals")["refusals"]["forbidden"] >= forbidden + 4

    # those who may read the share's files may: a researcher and the admin of A
    for who in (world.user("A", permissions.RESEARCHER), world.user("A", permissions.ORG_ADMIN)):
        got, link = world.call("POST", "/link", body, who["token"])
        assert got == 201, link
        assert f"/transfer/v1/link/{share['id']}/film/cut.mov?" in link["url"]
    # the rule is the gate: given read share (collaboration), B's researcher may too
    role = world.ok("POST", "/role", {"name": unique("fetch"),
                                      "organization": world.org["B"]["id"],
                                      "rules": ["read share (collaboration)"]})
    bob = world.user("B", permissions.RESEARCHER)
    world.ok("PATCH", f"/user/{bob['id']}", {"roles": [
        permissions.role_id(permissions.RESEARCHER), role["id"]]})
    got, link = world.call("POST", "/link", body, bob["token"])
    assert got == 201, link


def test_a_links_ticket_opens_its_link_and_nothing_else(
        hub: Hub, start_agent: Any, tmp_path: Path) -> None:
    world = World(hub)
    agent: Agent = start_agent(hub, world.node("A")["api_key"], lanes=1)
    agent_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    root = tmp_path / "a"
    (root / "film").mkdir(parents=True)
    secret = random.randbytes(5000)
    (root / "film" / "cut.mov").write_bytes(random.randbytes(3000))
    (root / "film" / "secret.mov").write_bytes(secret)
    name = unique("a-data")
    world.ok("POST", "/share", {"name": name, "client": agent_id, "path": str(root)})
    wait_for(lambda: name in agent.status()["transfer"]["shares"], what="served")
    ann = world.user("A", permissions.RESEARCHER)
    link = world.ok("POST", "/link", {"path": f"share={name}/film/cut.mov"}, ann["token"])
    url = urllib.parse.urlsplit(link["url"])
    [ticket] = urllib.parse.parse_qs(url.query)["ticket"]
    share_id = url.path.split("/")[4]
    base = f"{url.scheme}://{url.netloc}"
    auth = {"Authorization": f"Ticket {ticket}"}

    async def ask(method: str, target: str, headers: dict[str, str] | None = None,
                  data: bytes | None = None) -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as client, client.request(
                method, base + target, headers=headers, data=data,
                ssl=tls.pin(link["fingerprint"])) as resp:
            return resp.status, await resp.read()

    async def attacks() -> list[tuple[str, int, bytes]]:
        link_path = f"{PREFIX}/link/{share_id}"
        tried = [
            ("the link", *await ask("GET", f"{url.path}?{url.query}")),
            ("another file", *await ask("GET", f"{link_path}/film/secret.mov?{url.query}")),
            ("the folder", *await ask("GET", f"{link_path}/film?{url.query}")),
            ("a listing", *await ask("GET", f"{PREFIX}/stat?share={share_id}&path=film", auth)),
            ("a stat", *await ask("GET", f"{PREFIX}/stat?share={share_id}&path=film/cut.mov",
                                  auth)),
            ("a chunk", *await ask("GET", f"{PREFIX}/chunk?share={share_id}&path=film/cut.mov"
                                   "&index=0&chunk=3000&identity=", auth)),
            ("a batch", *await ask("POST", f"{PREFIX}/files?share={share_id}", auth,
                                   b'{"paths": ["film/cut.mov"]}')),
            ("a write", *await ask("POST", f"{PREFIX}/receive/open?share={share_id}"
                                   "&path=film/cut.mov", auth,
                                   b'{"size": 1, "chunk": 1, "identity": "x", "mode": 420, '
                                   b'"mtime_ns": 0}')),
            ("a discard", *await ask("POST", f"{PREFIX}/receive/discard?share={share_id}"
                                     "&path=film/cut.mov", auth)),
        ]
        return tried

    results = asyncio.run(attacks())
    assert results[0][1:] == (200, (root / "film" / "cut.mov").read_bytes())
    for what, status, body in results[1:]:
        assert status == 403, (what, body)
        assert secret not in body
    reasons = {what: body.decode() for what, _, body in results[1:]}
    assert "ticket for another path" in reasons["another file"]
    assert "opens its link only" in reasons["a listing"]
    assert "opens its link only" in reasons["a write"] or "to read, not to write" in \
        reasons["a write"]
    assert (root / "film" / "cut.mov").stat().st_size == 3000
    assert sorted(p.name for p in (root / "film").iterdir()) == ["cut.mov", "secret.mov"]
    assert agent.status()["transfer"]["refused"] == len(results) - 1
