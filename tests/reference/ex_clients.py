"""The examples of clients.rst (docs/REFERENCE.md says what each shows)."""

from __future__ import annotations

import re

import pytest

from core.errors import ApiError
from tests.reference.conftest import Ref
from tests.reference.examples import example, run


@example("clients: query")
def clients_query(ref: Ref) -> None:
    server = ref.offline_client(shared=True)  # enrolled as a system service's agent: type 1
    names = run("""
        all_clients = session.find('Client')
        servers = session.find('Client where type=1')
    """, {"session": ref.session})
    assert {ref.client_id, server} <= {c["id"] for c in names["all_clients"]}
    assert server in {c["id"] for c in names["servers"]}
    assert all(c["type"] == 1 for c in names["servers"])
    # the test's agent runs as a user (--user): a user server, type 2, as clients.rst says
    assert [c["id"] for c in ref.session.find("Client where type=2")] == [ref.client_id]
    # its lane is a compute lane (type 5) whose parent is the agent's client
    lanes = ref.session.find("Client where type=5")
    assert [lane["parent"] for lane in lanes] == [ref.client_id]


CLIENT_FIELDS = {"id", "code", "user", "user_hr", "created", "type", "site", "site_hr",
                 "description", "host_id", "last_checkin", "status", "os", "type_hr",
                 "username", "version", "wan_ip", "parent", "benchmark", "metrics",
                 "metadata", "modified", "modifier"}


@example("clients: the client record")
def clients_record(ref: Ref) -> None:
    client = ref.session.get("Client", ref.client_id)
    assert set(client) >= CLIENT_FIELDS
    assert (client["type"], client["type_hr"], client["status"], client["site_hr"]) == (
        2, "user server", "online", "hq")
    assert client["os"] in ("windows", "linux", "mac", "raspbian", "solaris")
    metrics = client["metrics"]
    assert {"c", "in", "l", "m", "mpf", "mpt", "mvf", "mvt", "out"} <= set(metrics)
    assert {"s", "s_a", "s_t"} <= set(metrics["in"]) and {"s", "s_a", "s_t"} <= set(
        metrics["out"])
    assert re.fullmatch(r"([0-9A-F]{2}:){5}[0-9A-F]{2}(, ([0-9A-F]{2}:){5}[0-9A-F]{2})*",
                        client["host_id"]), client["host_id"]


@example("clients: client states and modify")
def clients_modify(ref: Ref) -> None:
    run("""
        session.update('Client', '61cd853e44b630d9e10cfb2e', {'status':"disabled"})
    """, {"session": ref.session}, **{"61cd853e44b630d9e10cfb2e": ref.client_id})
    assert ref.session.get("Client", ref.client_id)["status"] == "disabled"
    # only a disabled client is written online again; offline is never written
    with pytest.raises(ApiError) as refused:
        ref.session.update("Client", ref.client_id, {"status": "offline"})
    assert refused.value.status == 409 and "follows from missed check-ins" in str(refused.value)
    ref.session.update("Client", ref.client_id, {"status": "online"})
    assert ref.session.get("Client", ref.client_id)["status"] == "online"
    gone = ref.offline_client(shared=True)
    ref.session.update("Client", gone, {"status": "disabled"})
    assert ref.session.get("Client", gone)["status"] == "disabled-offline"
    ref.session.update("Client", gone, {"status": "online"})
    assert ref.session.get("Client", gone)["status"] == "offline"


@example("clients: create")
def clients_create(ref: Ref) -> None:
    with pytest.raises(ApiError) as refused:
        ref.session.create("Client", {"code": "WIN_SERVER"})
    assert refused.value.status in (403, 405) and "cannot be created" in refused.value.message


@example("clients: delete")
def clients_delete(ref: Ref) -> None:
    with pytest.raises(ApiError) as online:  # the note: a client must be offline
        ref.session.delete_one("Client", ref.client_id)
    assert online.value.status == 409
    gone = ref.offline_client()
    names = run("""
        session.delete_one('Client', '61cd853e44b630d9e10cfb2e')
    """, {"session": ref.session}, **{"61cd853e44b630d9e10cfb2e": gone})
    assert names["session"].find_one(f"Client where id={gone}") is None
