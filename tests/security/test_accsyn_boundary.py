"""The accsyn API (``/api/v3``) attacked through accsyn's own client: a viewer's key is
refused what the native API refuses, word for word, and nothing changes (records and a
share's files); another organization's records and shares are invisible, and naming one is
answered as naming none; a wrong
key, an unknown user, a node's key and a wrong workspace are refused with a clear
message; bad input (malformed queries and events, unknown entities and attributes) gets
Ferry's message, and the hub keeps serving."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hub import permissions
from tests.helpers import Agent, Hub, wait_for
from tests.security.world import World, unique

accsyn_api = pytest.importorskip("accsyn_api")
AccsynException = pytest.importorskip("accsyn_api.session").AccsynException
requests = pytest.importorskip("requests")
# the client never verifies the hub's certificate, as against accsyn (docs/ACCSYN.md)
pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")


def _session(hub: Hub, username: str, key: str, workspace: str = "h1") -> Any:
    return accsyn_api.Session(workspace=workspace, username=username, api_key=key,
                              hostname="127.0.0.1", port=hub.info["accsyn_port"])


def _refused(call: Callable[..., Any], *args: Any) -> str:
    with pytest.raises(AccsynException) as caught:
        call(*args)
    return str(caught.value)


def _keyed(world: World, org: str, role: str) -> tuple[dict[str, Any], str]:
    """A user of ``org`` with ``role``, allowed to make its own API key, and that key."""
    user = world.user(org, role)
    if role == permissions.VIEWER:  # a viewer makes no keys by default: a role that may
        keys = world.ok("POST", "/role", {"name": unique("keys"),
                                          "organization": world.org[org]["id"],
                                          "rules": ["create apikey (own)", "view apikey (own)"]})
        world.ok("PATCH", f"/user/{user['id']}", {"roles": [
            permissions.role_id(permissions.VIEWER), keys["id"]]})
    key = world.ok("POST", "/apikey", {}, user["token"])["api_key"]
    return user, str(key)


def _state(world: World, job_id: str) -> Any:
    jobs = world.ok("POST", "/find", {"query": "Job"})["result"]
    return sorted((j["id"], j["status"], j["code"], j["priority"]) for j in jobs), \
        world.tasks(job_id)


def test_a_viewer_and_another_organization_through_accsyns_client(
        start_hub: Callable[..., Hub]) -> None:
    hub = start_hub(accsyn_api={"port": 0})
    world = World(hub)
    viewer, viewer_key = _keyed(world, "A", permissions.VIEWER)
    ann, ann_key = _keyed(world, "A", permissions.RESEARCHER)
    theirs = world.compute_job(world.user("B", permissions.RESEARCHER)["token"],
                               status="paused", code="b-secret")
    ours = world.compute_job(ann["token"], status="paused", code="a-job")
    [task] = world.tasks(ours["id"])
    before = _state(world, ours["id"])

    # the viewer: what the native API refuses, refused with the same words, nothing changed
    as_viewer = _session(hub, viewer["username"], viewer_key)
    attempts: list[tuple[Callable[[], Any], str, str, tuple[str, Any]]] = [
        (lambda: as_viewer.create("Job", {"compute": {"command": ["true"], "items": "1"}}),
         "job/create", "POST", ("/job", {"compute": {"command": ["true"], "items": "1"}})),
        (lambda: as_viewer.update("job", ours["id"], {"status": "waiting"}),
         "job/edit", "PATCH", (f"/job/{ours['id']}", {"status": "waiting"})),
        (lambda: as_viewer.update_many("task", ours["id"], [{"id": task["id"],
                                                             "status": "excluded"}]),
         "task/edit", "PATCH", (f"/job/{ours['id']}/tasks",
                                {"tasks": [{"id": task["id"], "status": "excluded"}]})),
        (lambda: as_viewer.create("task", {"tasks": ["2"]}, ours["id"]),
         "task/create", "POST", (f"/job/{ours['id']}/tasks", {"tasks": ["2"]})),
        (lambda: as_viewer.delete_one("job", ours["id"]),
         "job/delete", "DELETE", (f"/job/{ours['id']}", None)),
        (lambda: as_viewer.create("User", {"username": "mallory", "password": "x" * 12}),
         "user/create", "POST", ("/user", {"username": "mallory", "password": "x" * 12})),
    ]
    for call, name, method, (path, body) in attempts:
        said = _refused(call)
        status, answer = world.call(method, path, body, viewer["token"])
        assert 400 <= status < 500, answer
        assert said == f"{name}: {answer['error']['message']}", said
    assert _state(world, ours["id"]) == before
    # what the viewer may do, it does: its organization's jobs, never B's
    assert {j["id"] for j in as_viewer.find("Job")} == {ours["id"]}

    # another organization's records: invisible, and named as if they did not exist
    as_ann = _session(hub, ann["username"], ann_key)
    assert theirs["id"] not in {j["id"] for j in as_ann.find("Job")}
    assert as_ann.find_one(f"Job where id={theirs['id']}") is None
    assert as_ann.find('Job where code="b-secret"') == []
    assert as_ann.find(f"task WHERE job.id={theirs['id']}") == []
    nobody = "0" * 24
    for call in (lambda i: as_ann.update("job", i, {"status": "aborted"}),
                 lambda i: as_ann.delete_one("job", i),
                 lambda i: as_ann.update_many("task", i, [{"id": task["id"],
                                                           "status": "onhold"}]),
                 lambda i: as_ann.create("task", {"tasks": ["2"]}, i)):
        assert _refused(call, theirs["id"]).replace(theirs["id"], nobody) == \
            _refused(call, nobody)
    assert world.ok("GET", f"/job/{theirs['id']}")["status"] == "paused"
    assert _state(world, ours["id"]) == before


def test_wrong_credentials_and_bad_input_through_accsyns_client(
        start_hub: Callable[..., Hub]) -> None:
    hub = start_hub(accsyn_api={"port": 0, "workspace_alias": "AcmeVFX"})
    world = World(hub)
    ann, key = _keyed(world, "A", permissions.RESEARCHER)
    node_key = world.node("A")["api_key"]
    wrong = {  # (username, key, workspace): what the client raises
        (ann["username"], "not-the-key", "h1"): "login: the username or API key is not valid",
        ("somebody-else", key, "h1"): "login: the username or API key is not valid",
        ("nobody-at-all", "not-the-key", "h1"): "login: the username or API key is not valid",
        (ann["username"], node_key, "h1"): "login: the username or API key is not valid",
        (ann["username"], key, "acme"): "login: workspace 'acme' is not served here",
    }
    for (username, given, workspace), needle in wrong.items():
        assert needle in _refused(_session, hub, username, given, workspace)
    session = _session(hub, ann["username"], key, "acmevfx")  # the alias, any case
    mine = session.create("Job", {"compute": {"command": ["true"], "items": "1"},
                                  "status": "paused"})

    bad = {  # call: Ferry's message, as the client raises it
        lambda: session.find("Job where code="): "job/find: expected a value but found "
                                                 "end of query",
        lambda: session.find("Job where (status=done"): "expected ')' to close",
        lambda: session.find("Job where colour=red"): "unknown field 'colour' for Job",
        lambda: session.find("Job where status=sleeping"): "field 'status' has no value",
        lambda: session.find("Spaceship"): "spaceship/find: unknown entity 'spaceship'",
        lambda: session.find("Job", attributes=["colour"]): "'attributes' names 'colour', "
                                                           "which is not a field of Job",
        lambda: session.create("Job", {"colour": "red"}): "job/create: ",
        lambda: session.update("job", mine["id"], {"colour": "red"}): "job/edit: ",
        lambda: session.update("job", mine["id"], {"status": "running"}):
            "'running' cannot be written",
        lambda: session.update_many("task", mine["id"], [{"id": "x" * 24, "size": 1}]):
            "'size' cannot be changed",
        lambda: session.find("Job", limit=10**9): "find_page_max",
        lambda: session.find("Job", finished=True, inactive=True): "give one of 'inactive'",
    }
    for call, needle in bad.items():
        assert needle in _refused(call)
    assert [j["id"] for j in session.find("Job")] == [mine["id"]]  # still serving

    # raw events the client would never send: answered, never a failure
    url = f"https://127.0.0.1:{hub.info['accsyn_port']}/api/v3"
    auth = {"Authorization": "basic " + ":".join(base64.b64encode(v.encode()).decode()
                                                   for v in (ann["username"], key)),
            "X-Accsyn-Workspace": "h1"}
    raws = [
        ("PUT", "/event", b"{not json", auth, "event: the request is not an event"),
        ("POST", "/event", json.dumps({"uri": "job/find"}).encode(), auth,
         "job/find: find is sent with GET, not POST"),
        ("GET", "/event?" + urllib.parse.quote(json.dumps({"uri": "job/find",
                                                           "data": [1]})), None, auth,
         "job/find: find takes an object as data"),
        ("POST", "/event", json.dumps({"uri": "job/create", "gz_data": "bm90IGd6aXA="}).encode(),
         auth, "gz_data: not gzipped JSON"),
        ("PUT", "/api/login", b"{}", {"Authorization": "bearer x", "X-Accsyn-Workspace": "h1"},
         "login: send the username and API key"),
        ("GET", "/nothing", None, auth, "no such call"),
    ]
    for method, path, body, headers, needle in raws:
        answer = requests.request(method, url + path, data=body, headers=headers,
                                  verify=False, timeout=30)
        assert needle in answer.json()["message"], (path, answer.text)
        assert answer.status_code < 500, answer.text
    assert [j["id"] for j in session.find("Job")] == [mine["id"]]


def _tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1)
                  for p in root.rglob("*"))


def test_files_of_shares_through_accsyns_client(start_hub: Callable[..., Hub],
                                                start_agent: Callable[..., Agent],
                                                tmp_path: Path) -> None:
    """The rights on a share's files are the native API's: a viewer reads nor changes
    none, another organization's share is as one that does not exist."""
    hub = start_hub(accsyn_api={"port": 0})
    world = World(hub)
    agent = start_agent(hub, world.node("A")["api_key"], lanes=1)
    agent_id = wait_for(lambda: agent.status()["client_id"], what="enrolled")
    root = tmp_path / "a"
    (root / "film").mkdir(parents=True)
    (root / "film" / "cut.mov").write_bytes(b"cut" * 100)
    name = unique("a-data")
    world.ok("POST", "/share", {"name": name, "client": agent_id, "path": str(root)})
    wait_for(lambda: name in agent.status()["transfer"]["shares"], what="served")
    before = _tree(root)
    viewer, viewer_key = _keyed(world, "A", permissions.VIEWER)
    bob, bob_key = _keyed(world, "B", permissions.RESEARCHER)
    ann, ann_key = _keyed(world, "A", permissions.RESEARCHER)
    as_viewer, as_bob = _session(hub, viewer["username"], viewer_key), \
        _session(hub, bob["username"], bob_key)
    path = f"share={name}/film/cut.mov"
    calls = [  # the client's call, and the native call it maps to
        (lambda s, p: s.ls(p), "ls", {}),
        (lambda s, p: s.getsize(p), "stat", {}),
        (lambda s, p: s.mkdir(p + ".d"), "mkdir", {"suffix": ".d"}),
        (lambda s, p: s.mv(p, p.rsplit("/", 2)[0] + "/moved.mov"), "mv", {"to": "moved.mov"}),
        (lambda s, p: s.delete(p, force=True), "delete", {"recursive": True}),
    ]
    for call, op, extra in calls:
        said = _refused(call, as_viewer, path)
        body: dict[str, Any] = {"path": path + extra.get("suffix", "")}
        if "to" in extra:
            body["to"] = f"share={name}/{extra['to']}"
        if "recursive" in extra:
            body["recursive"] = True
        status, native = world.call("POST", f"/files/{op}", body, viewer["token"])
        assert status == 403, native
        assert said == f"workspace/file: {native['error']['message']}", said
        # another organization's share: answered as a share that does not exist
        theirs = _refused(call, as_bob, path).replace(name, "nothing-here")
        assert theirs == _refused(call, as_bob, path.replace(name, "nothing-here"))
    assert _tree(root) == before
    # its own organization's researcher works on it
    as_ann = _session(hub, ann["username"], ann_key)
    assert as_ann.getsize(path) == 300 and as_ann.exists(path) is True
