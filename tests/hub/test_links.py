"""``POST /link`` and ``Session.link``: a download link is a ticket the hub signs for one
file, on the agent that serves its share, for the time asked; bad bodies are refused
naming the field, and nothing is ever stored."""

from __future__ import annotations

import base64
import time
import urllib.parse
import uuid
from typing import Any

import pytest

from hub import Session
from hub.session import ApiError, HubError
from protocol import tickets
from protocol.links import LINK, MAX_EXPIRES
from tests.helpers import ROOT_PASSWORD, Hub, db_rows, http, login

PIN = "sha256//" + base64.b64encode(b"k" * 32).decode()
FINGERPRINT = "ab" * 32


def enroll(hub: Hub, token: str, transfer: dict[str, str] | None) -> dict[str, Any]:
    """An agent enrolled by hand, saying it serves transfers at ``transfer`` (nobody
    answers there: the hub never calls it)."""
    status, node = http("POST", f"{hub.api}/node", {"name": f"n-{uuid.uuid4().hex[:6]}"},
                        token=token)
    assert status == 201, node
    body: dict[str, Any] = {"api_key": node["api_key"], "machine_id": uuid.uuid4().hex,
                            "code": "fileserver"}
    if transfer is not None:
        body["transfer"] = transfer
    status, answer = http("POST", f"{hub.api}/agent/enroll", body)
    assert status == 200, answer
    return dict(answer)


@pytest.fixture
def served(hub: Hub) -> dict[str, Any]:
    root = login(hub)
    agent = enroll(hub, root, {"url": "https://files.example.org:7443", "fingerprint":
                               FINGERPRINT, "pin": PIN})
    status, share = http("POST", f"{hub.api}/share", {"name": "projects", "client":
                                                      agent["client_id"], "path": "/srv/p"},
                         token=root)
    assert status == 201, share
    return {"root": root, "agent": agent, "share": share}


def test_a_link_is_a_ticket_for_one_file_on_its_agent(hub: Hub, served: dict[str, Any]
                                                      ) -> None:
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    before = db_rows(hub.database)
    made = time.time()
    link = session.link("share=projects/thefilm/latest edit.mov", expires="2h")
    assert set(link) == {"url", "name", "share", "path", "expires", "expires_in",
                         "pinnedpubkey", "fingerprint"}
    assert (link["name"], link["share"], link["path"]) == \
        ("latest edit.mov", "projects", "thefilm/latest edit.mov")
    assert (link["pinnedpubkey"], link["fingerprint"], link["expires_in"]) == \
        (PIN, FINGERPRINT, 7200)
    url = urllib.parse.urlsplit(link["url"])
    share_id = served["share"]["id"]
    assert (url.scheme, url.netloc) == ("https", "files.example.org:7443")
    assert url.path == f"/transfer/v1/link/{share_id}/thefilm/latest%20edit.mov"
    [ticket] = urllib.parse.parse_qs(url.query)["ticket"]
    key = tickets.public_key(served["agent"]["ticket_key"])
    scope = tickets.verify(key, ticket, server=served["agent"]["client_id"], share=share_id,
                           path="thefilm/latest edit.mov", op="read")
    assert (scope.job, scope.tree) == (LINK, False)
    assert made + 7200 - 5 < scope.exp < time.time() + 7200 + 5
    assert link["expires"].endswith("Z")
    # the same without share=, and with the default expiry (an hour)
    assert session.link("projects/a.mov")["expires_in"] == 3600
    assert db_rows(hub.database) == before  # a link is nothing the hub keeps


@pytest.mark.parametrize(("body", "status", "field", "needle"), [
    ({"path": "share=projects/a.mov", "expires": 0}, 422, "expires", ">= 1"),
    ({"path": "share=projects/a.mov", "expires": MAX_EXPIRES + 1}, 422, "expires", "<= 604800"),
    ({"path": "share=projects/a.mov", "expires": "1h"}, 422, "expires", "Expected `int`"),
    ({"path": "share=projects/a.mov", "expires": True}, 422, "expires", "Expected `int`"),
    ({"expires": 60}, 422, "path", "missing required field"),
    ({"path": "share=projects/a.mov", "size": 1}, 422, "size", "unknown field"),
    ({"path": "projects/a.mov"}, 422, "path", "share=<share>/<path>"),
    ({"path": "share=projects/"}, 422, "path", "a link is for one file"),
    ({"path": "share=projects"}, 422, "path", "a link is for one file"),
    ({"path": "share=projects/film/"}, 422, "path", "a link is for one file"),
    ({"path": "share=projects/../etc/passwd"}, 422, "path", "'..' would leave the share"),
    ({"path": "share=nothing/a.mov"}, 422, "path", "no share named 'nothing'"),
])
def test_bad_bodies_are_refused_naming_the_field(hub: Hub, served: dict[str, Any],
                                                 body: dict[str, Any], status: int, field: str,
                                                 needle: str) -> None:
    got, answer = http("POST", f"{hub.api}/link", body, token=served["root"])
    assert got == status, answer
    assert answer["error"]["field"] == field and needle in answer["error"]["message"], answer


def test_an_agent_without_an_endpoint_gets_no_link(hub: Hub, served: dict[str, Any]) -> None:
    agent = enroll(hub, served["root"], None)
    http("POST", f"{hub.api}/share", {"name": "local", "client": agent["client_id"],
                                      "path": "/srv/l"}, token=served["root"])
    status, answer = http("POST", f"{hub.api}/link", {"path": "share=local/a.mov"},
                          token=served["root"])
    assert status == 422 and answer["error"]["code"] == "not_served", answer


def test_an_older_agent_gives_links_without_a_pin(hub: Hub, served: dict[str, Any]) -> None:
    agent = enroll(hub, served["root"], {"url": "https://old.example.org:7443",
                                         "fingerprint": FINGERPRINT})
    http("POST", f"{hub.api}/share", {"name": "old", "client": agent["client_id"],
                                      "path": "/srv/o"}, token=served["root"])
    status, answer = http("POST", f"{hub.api}/link", {"path": "share=old/a.mov"},
                          token=served["root"])
    assert status == 201 and answer["pinnedpubkey"] == "", answer


def test_agents_make_no_links(hub: Hub, served: dict[str, Any]) -> None:
    status, answer = http("POST", f"{hub.api}/link", {"path": "share=projects/a.mov"},
                          token=served["agent"]["token"])
    assert status == 403 and "made by users" in answer["error"]["message"], answer
    status, answer = http("POST", f"{hub.api}/link", {"path": "share=projects/a.mov"})
    assert status == 401, answer


def test_session_checks_the_expiry_before_asking(hub: Hub, served: dict[str, Any]) -> None:
    session = Session(hub.url, username="root", password=ROOT_PASSWORD)
    for bad in ("soon", "8d", 0, "-1h"):
        with pytest.raises(HubError, match="expires"):
            session.link("share=projects/a.mov", expires=bad)
    with pytest.raises(ApiError) as info:
        session.link("share=projects/")
    assert info.value.status == 422 and info.value.details.get("field") == "path"

