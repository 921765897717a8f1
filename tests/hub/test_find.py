"""``find`` against a real hub (issue 19): the operators ``in``, ``not in``, ``contains``,
``matches``, the fields compared without regard to case, ``attributes`` (only those
fields), ``limit`` and ``skip``, and ``Job where source=hq`` listing the downloads from
hq (jobs.rst). Bad queries answer 422 naming the token and its place.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from core.errors import ApiError
from hub import Session, permissions
from hub.entities import ENTITIES
from tests.helpers import Hub, http, login
from tests.security.world import World, unique


def codes(found: list[dict[str, Any]]) -> list[str]:
    return sorted(r["code"] for r in found)


def jobs(session: Session, names: list[str]) -> list[dict[str, Any]]:
    """Paused compute jobs (nothing runs) named ``names``."""
    return [session.create("Job", {"code": n, "status": "paused", "compute": {
        "command": ["true"], "items": "1"}}) for n in names]


def enroll(world: World, site: str, code: str) -> str:
    """An agent of organization A at ``site``; its client id."""
    node = world.node("A")
    status, answer = http("POST", f"{world.api}/agent/enroll", {
        "api_key": node["api_key"], "machine_id": uuid.uuid4().hex, "code": code, "type": 1,
        "lanes": 1, "site": site, "transfer": {"url": "https://127.0.0.1:9"}})
    assert status == 200, answer
    return str(answer["client_id"])


def test_operators(hub: Hub, session: Session) -> None:
    tag = unique("t")
    names = [f"{tag}_shot010.exr", f"{tag}_shot020.exr", f"{tag}_Edit 50%.mov",
             f"{tag}_edit_5x.mov", f"{tag}_notes.txt"]
    made = {j["code"]: j for j in jobs(session, names)}
    session.update("job", made[names[4]]["id"], {"status": "aborted"})
    mine = f"code contains {tag}"

    def find(where: str) -> list[str]:
        return [c.removeprefix(f"{tag}_") for c in codes(session.find(f"Job where {where}"))]

    assert find(f"{mine} and status in (paused, aborted)") == sorted(
        n.removeprefix(f"{tag}_") for n in names)
    assert find(f"{mine} and status in (aborted)") == ["notes.txt"]
    assert find(f"{mine} and status not in (paused)") == ["notes.txt"]
    assert find(f"{mine} and status NOT IN (paused, aborted)") == []
    quoted = f'"{tag}_Edit 50%.mov", \'{tag}_notes.txt\''
    assert find(f"code in ({quoted})") == ["Edit 50%.mov", "notes.txt"]
    # contains: LIKE's wildcards in the value are plain characters
    assert find(f'{mine} and code contains "50%"') == ["Edit 50%.mov"]
    assert find(f"{mine} and code contains _5") == ["edit_5x.mov"]
    assert find(f"{mine} and code contains %") == ["Edit 50%.mov"]
    assert find(f"{mine} and code not contains exr") == ["Edit 50%.mov", "edit_5x.mov",
                                                         "notes.txt"]
    # matches: a glob, whole value, without regard to case
    assert find(f'code matches "{tag}_shot0?0.exr"') == ["shot010.exr", "shot020.exr"]
    assert find(f'code matches "{tag}_*.MOV"') == ["Edit 50%.mov", "edit_5x.mov"]
    assert find(f'code matches "{tag}_edit_5?.mov"') == ["edit_5x.mov"]
    assert find(f'code matches "{tag}_edit[?]5x.mov"') == []
    assert find(f'code matches "{tag}_shot"') == []  # the whole value, not a part
    assert find(f"{mine} and code not matches *.exr") == ["Edit 50%.mov", "edit_5x.mov",
                                                         "notes.txt"]
    # codes, names, usernames and emails ignore case; ids and statuses do not
    assert find(f'code = "{tag.upper()}_EDIT 50%.MOV"') == ["Edit 50%.mov"]
    assert find(f"{mine} and id in ({made[names[0]]['id'].upper()})") == []
    assert find(f"{mine} and id in ({made[names[0]]['id']}, {made[names[1]]['id']})") == [
        "shot010.exr", "shot020.exr"]
    assert [u["username"] for u in session.find("User where username=ROOT")] == ["root"]
    assert [s["name"] for s in session.find("Site where name matches H*")] == ["hq"]
    assert [s["name"] for s in session.find("Site where name in (HQ, nowhere)")] == ["hq"]
    # a reference field takes them too, on its names
    assert len(session.find(f"Job where {mine} and user contains ROO")) == 5
    assert session.find(f"Job where {mine} and user not in (root)") == []


def test_every_field_of_a_record_can_be_asked_for(hub: Hub, session: Session) -> None:
    """``fields`` of each entity are what its records hold: what ``attributes`` may name."""
    world = World(hub)
    agent = world.agent("A")
    jobs(session, [unique("f")])
    session.create("Share", {"name": unique("s"), "client": agent.id, "path": "/srv/s"})
    session.create("Limit", {"name": unique("l"), "max": 1})
    session.create("Queue", {"name": unique("q")})
    session.create("Engine", {"name": unique("e"), "argv": ["x"]})
    session.create("ApiKey", {})
    checked = []
    for kind in ENTITIES.values():
        found = session.find(kind.name, limit=1)
        if not found:
            continue
        record = session.get(kind.name, found[0]["id"])
        assert set(record) == set(kind.fields), kind.name
        checked.append(kind.name)
    assert set(checked) >= {"Client", "Node", "User", "Site", "ApiKey", "Job", "Task", "Share",
                            "Organization", "Collaboration", "Role", "Rule", "Queue", "Limit",
                            "Engine"}, checked
    # an entity added later names its fields too (its records are checked above once the
    # test makes one)
    assert [kind.name for kind in ENTITIES.values() if not kind.fields] == []


def test_attributes_limit_and_skip(hub: Hub, session: Session) -> None:
    tag = unique("a")
    made = jobs(session, [f"{tag}{n}" for n in range(5)])
    query = f"Job where code contains {tag}"
    only = session.find(query, attributes=["code", "status"])
    assert only == [{"id": j["id"], "code": j["code"], "status": "paused"} for j in made]
    assert session.find(query, attributes="code") == [{"id": j["id"], "code": j["code"]}
                                                      for j in made]
    tasks = session.find(f"Task where job.id={made[0]['id']}", attributes=["log_tail"])
    assert [set(t) for t in tasks] == [{"id", "log_tail"}]
    # *: every field a list gives unasked (the earlier meaning of naming a large field)
    assert session.find(query, attributes=["*"]) == session.find(query)
    (task,) = session.find(f"Task where job.id={made[0]['id']}", attributes=["*", "log_tail"])
    assert {"status", "item", "log_tail"} <= set(task) and "result" not in task
    # limit and skip, with and without attributes, through the pages of the cursor
    assert codes(session.find(query, limit=2, skip=1)) == [f"{tag}1", f"{tag}2"]
    assert [r["id"] for r in session.find(query, limit=3, skip=3, page_size=1,
                                          attributes=["id"])] == [made[3]["id"], made[4]["id"]]
    assert session.find(query, skip=5) == []
    with pytest.raises(ApiError) as info:
        session.find(query, attributes=["code", "colour"])
    assert (info.value.status, info.value.code, info.value.details["field"]) == (
        422, "unknown_field", "attributes")
    assert "'colour'" in info.value.message and "code" in info.value.message


def test_source_hq_lists_the_downloads_from_hq(hub: Hub, session: Session) -> None:
    """jobs.rst: ``Job where source=hq`` ("list all downloads"): the transfer jobs whose
    source is a share at site hq; a client's code and a share path name them too."""
    world = World(hub)
    session.create("Site", {"name": "stockholm"})
    hq_code, sth_code = unique("hqsrv"), unique("sthsrv")
    hq_client, sth_client = enroll(world, "hq", hq_code), enroll(world, "stockholm", sth_code)
    hq_share, sth_share = unique("proj"), unique("back")
    session.create("Share", {"name": hq_share, "client": hq_client, "path": "/srv/p"})
    session.create("Share", {"name": sth_share, "client": sth_client, "path": "/srv/b"})
    down = session.create("Job", {"source": f"share={hq_share}/film/a.mov",
                                  "destination": f"share={sth_share}/in/", "status": "paused"})
    up = session.create("Job", {"source": f"share={sth_share}/film/b.mov",
                                "destination": f"share={hq_share}/", "status": "paused"})
    to_user = session.create("Job", {"source": f"share={hq_share}/film2/c.mov",
                                     "destination": "root"})
    compute = jobs(session, [unique("c")])[0]

    def ids(where: str) -> set[str]:
        return {j["id"] for j in session.find(f"Job where {where}")}

    assert ids("source=hq") == {down["id"], to_user["id"], compute["id"]}
    assert ids("source=HQ and kind=transfer") == {down["id"], to_user["id"]}
    assert ids("source=site:stockholm") == {up["id"]}
    assert ids("destination=stockholm") == {down["id"]}
    assert ids("destination=hq") == {up["id"]}
    assert ids(f"source=client:{hq_code}") == {down["id"], to_user["id"]}
    assert ids(f"source={sth_code.upper()}") == {up["id"]}
    assert ids(f"source={hq_share}") == {down["id"], to_user["id"]}
    assert ids(f"source=share={hq_share}/film") == {down["id"]}
    assert ids(f"source=share={hq_share}/film/a.mov") == {down["id"]}
    assert ids(f'source="share={hq_share}/fil"') == set()
    assert ids(f"source=share={hq_share}/FILM") == set()  # paths keep their case
    assert ids(f"source=share={hq_share.upper()}/film") == {down["id"]}  # share names not
    assert ids(f"destination=share={sth_share}/in") == {down["id"]}
    assert ids("destination=root") == {to_user["id"]}
    assert ids("source in (stockholm, nowhere)") == {up["id"]}
    assert ids("source!=hq and kind=transfer") == {up["id"]}
    with pytest.raises(ApiError) as info:
        session.find('Job where source="share=../x"')
    assert (info.value.status, info.value.details["position"]) == (422, 17)


MALFORMED = [
    ("Job where status in running", 20, "expected '('"),
    ("Job where status in (running", 28, "expected ',' or ')'"),
    ("Job where status in (running queued)", 29, "expected ',' or ')'"),
    ("Job where status in ()", 21, "expected a value"),
    ("Job where status in (a,)", 23, "expected a value"),
    ("Job where status in (,a)", 21, "expected a value"),
    ("Job where status not running", 21, "expected in, contains or matches after NOT"),
    ("Job where status not", 20, "expected in, contains or matches after NOT"),
    ("Job where code contains", 23, "expected a value"),
    ("Job where code matches", 22, "expected a value"),
    ("Job where code like x", 15, "expected an operator"),
    ("Job where code containsx", 15, "expected an operator"),
    ('Job where code contains "x', 24, "unterminated quoted value"),
    ("Job where status in (running, bogus)", 30, "has no value 'bogus'"),
    ("Job where priority in (1, high)", 26, "expects an integer"),
    ("Job where status contains run", 10, "contains and matches apply to text fields"),
    ("Job where priority matches 1*", 10, "contains and matches apply to text fields"),
    ("Job where created contains 2024", 10, "contains and matches apply to text fields"),
    ("Job where source contains hq", 10, "contains and matches apply to text fields"),
    ("Job where colour in (red)", 10, "unknown field 'colour'"),
    ("Job where code in (a) or", 24, "expected a field name"),
    ("Job where (code in (a)", 22, "expected ')'"),
    ("Client where status matches on*", 13, "contains and matches apply to text fields"),
    ("Client where type in (server, toaster)", 30, "has no value 'toaster'"),
]


def test_bad_queries_answer_422_naming_the_token(hub: Hub) -> None:
    token = login(hub)
    for query, position, needle in MALFORMED:
        status, answer = http("POST", f"{hub.api}/find", {"query": query}, token=token)
        assert status == 422, (query, answer)
        error = answer["error"]
        assert (error["code"], error["position"]) == ("query_error", position), (query, error)
        assert needle in error["message"], (query, error)


def test_a_researcher_finds_as_root_does(hub: Hub) -> None:
    """The operators go through the same visibility as ``=``: a researcher's ``in`` of all
    ids finds only the jobs it may see."""
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    mine = world.compute_job(ann)
    other = world.compute_job(world.user("C", permissions.RESEARCHER)["token"])
    found = world.ok("POST", "/find", {"query": f"Job where id in ({mine['id']}, "
                                                f"{other['id']})"}, ann)["result"]
    assert [j["id"] for j in found] == [mine["id"]]


def test_inactive_finds_the_deleted_jobs(hub: Hub, session: Session) -> None:
    """``delete_one`` makes a job inactive: out of every find and ``get``, never run again,
    its tasks kept; ``find(..., inactive=True)`` finds it."""
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    kept, gone, running = (world.compute_job(ann, items="1-3", code=unique(c))
                           for c in ("kept", "gone", "run"))
    agent = world.agent("A", lanes=1)
    assert [b["job_id"] for b in agent.claim()] == [kept["id"]]  # kept runs, gone waits
    world.ok("DELETE", f"/job/{gone['id']}", token=ann)

    def find(body: dict[str, Any]) -> set[str]:
        return {j["id"] for j in world.ok("POST", "/find", body, ann)["result"]}

    assert find({"query": "Job"}) == {kept["id"], running["id"]}
    assert find({"query": "Job", "inactive": True}) == {gone["id"]}
    assert find({"query": f"Job where id in ({gone['id']}, {kept['id']})",
                 "inactive": True}) == {gone["id"]}
    (record,) = world.ok("POST", "/find", {"query": "Job", "inactive": True}, ann)["result"]
    assert record["status"] == "aborted" and record["deleted"] is not None
    assert session.find(f"Job where id={gone['id']}", inactive=True,
                        attributes=["deleted"])[0]["deleted"] == record["deleted"]
    # GET, a change, a second delete: as a job that never was
    for method, body in (("GET", None), ("PATCH", {"status": "waiting"}), ("DELETE", None)):
        status, answer = world.call(method, f"/job/{gone['id']}", body, ann)
        assert (status, answer["error"]["code"]) == (404, "not_found"), (method, answer)
    status, answer = world.call("POST", f"/job/{gone['id']}/tasks", {"tasks": ["9"]}, ann)
    assert status == 404, answer
    # its tasks stay, for audit (jobs.rst), and never run
    assert len(world.tasks(gone["id"])) == 3
    claimed = [b["job_id"] for b in world.agent("A", lanes=8).claim()]
    assert running["id"] in claimed and gone["id"] not in claimed, claimed
    # nor does it show among an organization's jobs, nor may a job wait for it
    org = world.org["A"]["id"]
    related = world.ok("GET", f"/organization/{org}/jobs")["result"]
    assert gone["id"] not in {j["id"] for j in related}
    status, answer = world.call("POST", "/job", {"compute": {"command": ["true"], "items": "1"},
                                                 "after": [gone["id"]]}, ann)
    assert (status, answer["error"]["code"]) == (422, "unknown_job"), answer
    # inactive is for jobs, and alone
    for body, flag in (({"query": "Client", "inactive": True}, "'inactive' applies to jobs"),
                       ({"query": "Job", "inactive": True, "finished": True}, "one of")):
        status, answer = world.call("POST", "/find", body, ann)
        assert (status, answer["error"]["code"]) == (422, "query_error"), answer
        assert flag in answer["error"]["message"]
    status, answer = world.call("GET", "/find?query=Job&inactive=perhaps", token=ann)
    assert (status, answer["error"]["field"]) == (400, "inactive"), answer
    status, answer = world.call("GET", "/find?query=Job&inactive=true", token=ann)
    assert [j["id"] for j in answer["result"]] == [gone["id"]]
