"""Shares at the hub, served by real agents: defined with Session, learned at check-in,
served on the agent's HTTPS endpoint to holders of the hub's tickets."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from hub import Session
from hub.session import ApiError
from protocol import tickets
from protocol.tickets import TicketScope
from tests.helpers import Hub, db_query, db_rows, wait_for
from transports.chunks import MiB, TransferError
from transports.client import TransferClient


def hub_ticket_key(hub: Hub) -> Any:
    [(seed,)] = db_query(hub.database, "SELECT value FROM hub_state WHERE key='ticket_seed'")
    return tickets.private_key(bytes.fromhex(seed))


def test_shares_are_defined_checked_and_served(hub: Hub, session: Session, node_key,
                                               start_agent, tmp_path: Path) -> None:
    agent = start_agent(hub, node_key("fileserver")["api_key"], lanes=1)
    agent_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    client = session.get("Client", agent_id)
    assert client["transfer"]["url"].startswith("https://127.0.0.1:")
    assert len(client["transfer"]["fingerprint"]) == 64
    assert client["transfer"]["pin"].startswith("sha256//")  # for curl --pinnedpubkey
    lane = session.find_one(f"Client where parent={agent_id}")

    root = tmp_path / "projects"
    (root / "thefilm").mkdir(parents=True)
    data = random.randbytes(9 * MiB + 17)
    (root / "thefilm" / "latest_edit.mov").write_bytes(data)

    before = db_rows(hub.database)["shares"]
    for body, status, needle in (
        ({"name": "pro jects", "client": agent_id, "path": str(root)}, 422, "share name"),
        ({"name": "projects", "client": agent_id, "path": "relative/folder"}, 422, "absolute"),
        ({"name": "projects", "client": "nope", "path": str(root)}, 422, "no client"),
        ({"name": "projects", "client": lane["id"], "path": str(root)}, 422, "compute lane"),
        ({"name": "projects", "client": agent_id}, 422, "path"),
        ({"name": "projects", "client": agent_id, "path": str(root), "size": 1}, 422,
         "unknown field"),
    ):
        with pytest.raises(ApiError) as info:
            session.create("Share", body)
        assert info.value.status == status and needle in info.value.message, (body, info.value)
    assert db_rows(hub.database)["shares"] == before

    share = session.create("Share", {"name": "projects", "client": agent_id, "path": str(root),
                                     "description": "the film"})
    assert share["client_hr"] == f"client:{client['code']}"
    with pytest.raises(ApiError) as info:
        session.create("Share", {"name": "projects", "client": agent_id, "path": str(root)})
    assert info.value.status == 409
    assert session.find_one("Share where name=projects")["id"] == share["id"]
    assert session.find_one(f"Share where client={client['code']}")["id"] == share["id"]

    # the agent learns it at its next check-in and serves it
    wait_for(lambda: agent.status()["transfer"]["shares"] == ["projects"], what="share served")

    key = hub_ticket_key(hub)

    def ticket(path: str, signer: Any = key) -> str:
        return tickets.issue(signer, TicketScope(server=agent_id, share=share["id"], path=path,
                                                 op="read", job="j", task="t"), ttl=60)

    async def pull(ticket_text: str, dest: Path) -> str:
        async with TransferClient(client["transfer"]["url"], client["transfer"]["fingerprint"],
                                  ticket_text, share["id"], backoff=0.01) as transfer:
            return await transfer.pull("thefilm/latest_edit.mov", dest)

    dest = tmp_path / "received" / "latest_edit.mov"
    asyncio.run(pull(ticket("thefilm/latest_edit.mov"), dest))
    assert dest.read_bytes() == data
    with pytest.raises(TransferError, match="forged ticket"):
        asyncio.run(pull(ticket("thefilm/latest_edit.mov", tickets.private_key(bytes(32))),
                         tmp_path / "x.mov"))
    assert agent.status()["transfer"]["refused"] == 1
    assert "what=ticket who=127.0.0.1" in agent.log()  # counted by core/refusals.py

    # renamed and deleted: the agent follows
    session.update("Share", share["id"], {"name": "film"})
    wait_for(lambda: agent.status()["transfer"]["shares"] == ["film"], what="rename followed")
    session.delete_one("Share", share["id"])
    wait_for(lambda: agent.status()["transfer"]["shares"] == [], what="share dropped")
