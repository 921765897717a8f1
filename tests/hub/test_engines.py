"""Engines against a real hub (issue 18): records, jobs made from them with their
defaults or the job's own, and bad input (each a 422 naming the field, nothing made).
Another organization's engine is in tests/security/test_engine_boundary.py; an engine job
run by a real agent in tests/e2e/test_progress_engines.py."""

from __future__ import annotations

from typing import Any

from hub import permissions
from tests.helpers import Hub, db_query
from tests.security.world import World

BLENDER = ["blender", "-b", "{scene}", "-o", "/renders/{shot}/####", "-f", "{item}"]


def count(hub: Hub, table: str) -> int:
    return int(db_query(hub.database, f"SELECT count(*) FROM {table}")[0][0])


def test_engines_are_records_that_jobs_are_made_from(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    world.agent("A", code="render-gpu")
    world.ok("PATCH", f"/client/{world.agent('A', code='render-b').id}", {"tags": ["gpu"]})
    engine = world.ok("POST", "/engine", {
        "name": "blender", "argv": BLENDER, "env": {"BLENDER_USER_SCRIPTS": "/studio/py"},
        "bucket_size": 5, "clients": ["tag:gpu", "ram:>32GB"]}, admin)
    assert (engine["name"], engine["arguments"], engine["bucket_size"], engine["clients"],
            engine["organization"]) == ("blender", ["scene", "shot"], 5,
                                        ["tag:gpu", "ram:>32GB"], world.org["A"]["id"])
    status, answer = world.call("POST", "/engine", {"name": "blender", "argv": ["x"]}, admin)
    assert (status, answer["error"]["code"], answer["error"]["field"]) == \
        (409, "duplicate", "name")
    assert [e["id"] for e in world.ok("POST", "/find", {"query": "Engine where name=blender"},
                                      ann)["result"]] == [engine["id"]]

    # the engine's defaults
    job = world.ok("POST", "/job", {"engine": "blender", "args": {
        "scene": "shot010.blend", "shot": 10}, "compute": {"items": "1-240"}}, ann)
    assert (job["engine"], job["args"]) == ("blender", {"scene": "shot010.blend",
                                                        "shot": "10"})
    compute = job["compute"]
    assert compute["command"] == ["blender", "-b", "shot010.blend", "-o", "/renders/10/####",
                                  "-f", "{item}"]
    assert (compute["bucket_size"], compute["clients"], compute["env"]) == \
        (5, ["tag:gpu", "ram:>32GB"], {"BLENDER_USER_SCRIPTS": "/studio/py"})
    assert job["code"] == "blender 1-240" and sum(job["counts"].values()) == 240

    # the job's own, by the engine's id
    own = world.ok("POST", "/job", {"engine": engine["id"], "args": {
        "scene": "a.blend", "shot": "20"}, "compute": {
        "items": "1", "bucket_size": 1, "clients": [], "env": {"OCIO": "/ocio",
                                                            "BLENDER_USER_SCRIPTS": "/mine"}}},
        ann)
    assert (own["compute"]["bucket_size"], own["compute"]["clients"], own["compute"]["env"]) \
        == (1, [], {"BLENDER_USER_SCRIPTS": "/mine", "OCIO": "/ocio"})

    # a changed engine changes the jobs made after, not those before
    changed = world.ok("PATCH", f"/engine/{engine['id']}", {"argv": ["blender", "{scene}"]},
                       admin)
    assert (changed["arguments"], changed["bucket_size"]) == (["scene"], 5)
    assert world.ok("GET", f"/job/{job['id']}", token=ann)["compute"]["command"][4] == \
        "/renders/10/####"
    status, answer = world.call("POST", "/job", {"engine": "blender", "args": {
        "scene": "s", "shot": "1"}, "compute": {"items": "1"}}, ann)
    assert (status, answer["error"]["field"]) == (422, "args.shot")
    world.ok("DELETE", f"/engine/{engine['id']}", token=admin)
    assert world.ok("GET", f"/job/{job['id']}", token=ann)["engine"] == "blender"
    assert world.ok("POST", "/find", {"query": "Engine"}, admin)["result"] == []


def test_bad_engines_are_422_naming_the_field_and_nothing_is_made(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    before = count(hub, "engines")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"argv": ["x"]}, "name"),
        ({"name": "e"}, "argv"),
        ({"name": "", "argv": ["x"]}, "name"),
        ({"name": "e", "argv": []}, "argv"),
        ({"name": "e", "argv": "blender -b"}, "argv"),
        ({"name": "e", "argv": [" "]}, "argv[0]"),
        ({"name": "e", "argv": ["x", 5]}, "argv[1]"),
        ({"name": "e", "argv": ["x", "a\0b"]}, "argv[1]"),
        ({"name": "e", "argv": ["x"], "env": {"A B": "1"}}, "env"),
        ({"name": "e", "argv": ["x"], "env": {"A": 1}}, "env[...]"),  # as compute.env says
        ({"name": "e", "argv": ["x"], "bucket_size": 0}, "bucket_size"),
        ({"name": "e", "argv": ["x"], "bucket_size": "5"}, "bucket_size"),
        ({"name": "e", "argv": ["x"], "clients": ["ram:>lots"]}, "clients[0]"),
        ({"name": "e", "argv": ["x"], "clients": ["tag:a", "wat:x"]}, "clients[1]"),
        ({"name": "e", "argv": ["x"], "arguments": ["a"]}, "arguments"),
        ({"name": "e", "argv": ["x"], "command": ["x"]}, "command"),
    ]
    for body, field in cases:
        status, answer = world.call("POST", "/engine", body, admin)
        assert status == 422 and answer["error"]["field"] == field, (body, answer)
    engine = world.ok("POST", "/engine", {"name": "e", "argv": ["x", "{a}"]}, admin)
    for body, field in (({"argv": []}, "argv"), ({"clients": ["!"]}, "clients[0]"),
                        ({"name": " "}, "name"), ({"organization": "x"}, "organization")):
        status, answer = world.call("PATCH", f"/engine/{engine['id']}", body, admin)
        assert status == 422 and answer["error"]["field"] == field, (body, answer)
    assert count(hub, "engines") == before + 1
    assert world.ok("GET", f"/engine/{engine['id']}", token=admin)["argv"] == ["x", "{a}"]


def test_bad_engine_jobs_are_422_naming_the_field_and_create_nothing(hub: Hub) -> None:
    world = World(hub)
    admin = world.user("A", permissions.ORG_ADMIN)["token"]
    ann = world.user("A", permissions.RESEARCHER)["token"]
    world.ok("POST", "/engine", {"name": "blender", "argv": BLENDER}, admin)
    jobs, tasks = count(hub, "jobs"), count(hub, "tasks")
    good = {"scene": "s.blend", "shot": "010"}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"engine": "maya", "args": good}, "engine", "unknown_engine"),
        ({"engine": "", "args": good}, "engine", "invalid_spec"),
        ({"engine": 5, "args": good}, "engine", "invalid_spec"),
        ({"engine": None, "args": good}, "engine", "invalid_spec"),
        ({"engine": "blender", "args": {"scene": "s.blend"}}, "args.shot", "missing_argument"),
        ({"engine": "blender"}, "args.scene", "missing_argument"),
        ({"engine": "blender", "args": {**good, "camera": "c"}}, "args.camera",
         "unknown_argument"),
        ({"engine": "blender", "args": {**good, "item": "7"}}, "args.item",
         "unknown_argument"),
        ({"engine": "blender", "args": ["s.blend"]}, "args", "invalid_spec"),
        ({"engine": "blender", "args": {**good, "scene": ["a", "b"]}}, "args.scene",
         "invalid_spec"),
        ({"engine": "blender", "args": {**good, "scene": True}}, "args.scene",
         "invalid_spec"),
        ({"engine": "blender", "args": {**good, "scene": None}}, "args.scene",
         "invalid_spec"),
        ({"engine": "blender", "args": {**good, "scene": {"a": 1}}}, "args.scene",
         "invalid_spec"),
        ({"engine": "blender", "args": {**good, "scene": "a\0b"}}, "args.scene",
         "invalid_value"),  # refused as the body is read, as NUL anywhere
        ({"engine": "blender", "args": {**good, "scene": "x" * 4097}}, "args.scene",
         "invalid_spec"),
        ({"engine": "blender", "args": good, "compute": {"items": "1",
                                                         "command": ["sh"]}},
         "compute.command", "invalid_spec"),
        ({"engine": "blender", "args": good, "compute": "1-10"}, "compute", "invalid_spec"),
        ({"engine": "blender", "args": good, "compute": {}}, "compute.items", "invalid_spec"),
        ({"engine": "blender", "args": good, "compute": {"items": "1",
                                                         "clients": ["ram:>lots"]}},
         "compute.clients[0]", "invalid_spec"),
        ({"engine": "blender", "args": good, "compute": {"items": "1", "env": ["A"]}},
         "compute.env", "invalid_spec"),
        ({"args": good, "compute": {"items": "1", "command": ["true"]}}, "args",
         "invalid_spec"),
    ]
    for extra, field, code in cases:
        body = {"compute": {"items": "1-240"}, **extra}
        status, answer = world.call("POST", "/job", body, ann)
        assert status == 422, (body, answer)
        assert (answer["error"]["field"], answer["error"]["code"]) == (field, code), \
            (body, answer)
    assert (count(hub, "jobs"), count(hub, "tasks")) == (jobs, tasks)
