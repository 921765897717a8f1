"""Organizations, collaborations and nodes (server-shell-v4.rst), and their relations,
through a real hub: the API, ``Session.related`` and the query language."""

from __future__ import annotations

import pytest

from core.errors import ApiError
from hub import Session
from tests.helpers import REFERENCE_PUBLIC_KEY as PUBLIC_KEY
from tests.helpers import Hub


def test_organizations_collaborations_and_nodes_relate(hub: Hub, session: Session) -> None:
    iknl = session.create("Organization", {
        "name": "IKNL", "domain": "iknl.nl", "address1": "Zernikestraat 29",
        "address2": "Eindhoven", "zipcode": "5612HZ", "country": "Netherlands",
        "public_key": PUBLIC_KEY})
    small = session.create("Organization", {"name": "Small Organization", "address2": None})
    assert iknl["public_key"] == PUBLIC_KEY and small["address2"] == ""
    zeppelin = session.create("Collaboration", {"name": "ZEPPELIN", "encrypted": False,
                                                "organizations": ["IKNL", small["id"]]})
    assert zeppelin["organizations"] == sorted([iknl["id"], small["id"]])

    frank = session.create("User", {"username": "frank@iknl.nl", "password": "a long password",
                                    "organization": "IKNL", "roles": ["researcher"]})
    assert frank["organization"] == iknl["id"] and frank["role"] == "researcher"
    node = session.create("Node", {"name": "IKNL Node - ZEPPELIN", "organization": "IKNL",
                                   "collaboration": "ZEPPELIN",
                                   "api_key": "123e4567-e89b-12d3-a456-426614174001"})
    assert node["api_key"] == "123e4567-e89b-12d3-a456-426614174001"
    # one node per organization per collaboration
    with pytest.raises(ApiError) as info:
        session.create("Node", {"name": "second", "organization": "IKNL",
                                "collaboration": "ZEPPELIN"})
    assert info.value.status == 409 and "one per organization" in info.value.message
    # a node only in a collaboration its organization is in
    pipeline = session.create("Collaboration", {"name": "PIPELINE", "organizations": [
        "Small Organization"]})
    with pytest.raises(ApiError) as info:
        session.create("Node", {"name": "stray", "organization": "IKNL",
                                "collaboration": pipeline["id"]})
    assert info.value.status == 422 and info.value.code == "not_a_member"

    # frank's jobs are IKNL's created tasks, and ZEPPELIN's when run there
    researcher = Session(hub.url, username="frank@iknl.nl", password="a long password")
    job = researcher.create("Job", {"compute": {"command": ["true"], "items": "1-3"},
                                    "status": "paused", "collaboration": "ZEPPELIN"})
    with pytest.raises(ApiError) as info:
        researcher.create("Job", {"compute": {"command": ["true"], "items": "1"},
                                  "collaboration": "PIPELINE"})
    assert info.value.code == "not_a_member"

    def ids(records: list[dict[str, object]]) -> set[object]:
        return {r["id"] for r in records}

    assert ids(session.related("Organization", iknl["id"], "users")) == {frank["id"]}
    assert ids(session.related("Organization", iknl["id"], "nodes")) == {node["id"]}
    assert ids(session.related("Organization", iknl["id"], "collaborations")) == {zeppelin["id"]}
    assert len(session.related("Organization", iknl["id"], "created_tasks")) == 3
    assert ids(session.related("Collaboration", zeppelin["id"], "organizations")) == {
        iknl["id"], small["id"]}
    assert ids(session.related("Collaboration", zeppelin["id"], "nodes")) == {node["id"]}
    assert {t["job"] for t in session.related("Collaboration", zeppelin["id"], "tasks")} == {
        job["id"]}
    assert [r["name"] for r in session.related("User", frank["id"], "roles")] == ["researcher"]

    # the query language follows the same links, by name or id
    assert ids(session.find("User where organization=IKNL")) == {frank["id"]}
    assert ids(session.find("Node where collaboration=ZEPPELIN")) == {node["id"]}
    assert ids(session.find("Role where default=true")) >= {r["id"] for r in
                                                             session.related("User", frank["id"],
                                                                             "roles")}
    assert len(session.find("Rule where resource=job and operation=view")) == 4

    # an organization with users or nodes stays; a collaboration keeps a member with a node
    with pytest.raises(ApiError) as info:
        session.delete_one("Organization", iknl["id"])
    assert info.value.code == "in_use"
    with pytest.raises(ApiError) as info:
        session.update("Collaboration", zeppelin["id"], {"organizations": ["Small Organization"]})
    assert info.value.code == "in_use" and "IKNL" in info.value.message
    assert session.get("Collaboration", zeppelin["id"])["organizations"] == sorted(
        [iknl["id"], small["id"]])


def test_a_researcher_sees_the_collaboration_not_the_world(hub: Hub, session: Session) -> None:
    for name in ("A", "B", "C"):
        session.create("Organization", {"name": name})
    session.create("Collaboration", {"name": "AB", "organizations": ["A", "B"]})
    for org in ("A", "B", "C"):
        session.create("Node", {"name": f"node-{org}", "organization": org})
    session.create("Node", {"name": "node-B-AB", "organization": "B", "collaboration": "AB"})
    session.create("User", {"username": "ann", "password": "a long password",
                            "organization": "A", "roles": ["researcher"]})
    ann = Session(hub.url, username="ann", password="a long password")
    # B's node of the collaboration, not B's other nodes: the collaboration scope reaches
    # what belongs to the collaboration, not everything of a partner
    assert {n["name"] for n in ann.find("Node")} == {"node-A", "node-B-AB"}
    assert {o["name"] for o in ann.find("Organization")} == {"A", "B"}
    assert [c["name"] for c in ann.find("Collaboration")] == ["AB"]
    c_node = session.find_one("Node where name=node-C")
    assert c_node is not None
    with pytest.raises(ApiError) as info:
        ann.get("Node", c_node["id"])
    # another organization's node, out of sight: answered as one that does not exist
    assert info.value.status == 404
    assert info.value.message == f"no Node with id '{c_node['id']}'"
