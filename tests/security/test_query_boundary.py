"""The query operators never cross organizations (issue 19, docs/PROTOCOL.md §6).

A researcher of A aims ``in``, ``not in``, ``contains`` and ``matches`` at C's records:
C's job ids listed, globs that match everything, negations that leave only foreign
records, C's site, agent and share named as a job's source. Every answer holds A's records
only, and naming C's record answers as naming one that does not exist. LIKE's own
wildcards in a value are plain characters, so ``contains %`` is no "match all".
"""

from __future__ import annotations

from typing import Any

from hub import permissions
from tests.helpers import Hub
from tests.security.world import World, unique


def found(world: World, token: str, query: str, **extra: Any) -> list[dict[str, Any]]:
    return list(world.ok("POST", "/find", {"query": query, **extra}, token)["result"])


def ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in records}


def test_operators_stay_inside_the_organization(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    cid = world.user("C", permissions.RESEARCHER)["token"]
    mine = world.compute_job(ann, code="shot_a")
    theirs = [world.compute_job(cid, code=code) for code in ("shot_c", "50% c", "c_*")]
    their_ids = ", ".join(j["id"] for j in theirs)
    a_agent, c_agent = world.agent("A"), world.agent("C", code=unique("c-render"))

    # C's job ids, listed: the same answer as ids that do not exist
    assert found(world, ann, f"Job where id in ({their_ids})") == []
    assert found(world, ann, "Job where id in (000000000000000000000000)") == []
    assert ids(found(world, ann, f"Job where id in ({their_ids}, {mine['id']})")) == {
        mine["id"]}
    # a negation leaves only A's own
    assert ids(found(world, ann, f"Job where id not in ({mine['id']})")) == set()
    assert ids(found(world, ann, f"Job where code not in (shot_a) or id in ({their_ids})")
               ) == set()
    # globs and contains that match everything match A's records only
    for query in ("Job where code matches *", "Job where code matches '*a*'",
                  "Job where code contains ''", "Job where code not contains zzz",
                  "Job where code not matches shot_a or code matches *",
                  "Job where user matches *", "Job where code matches ?*"):
        assert ids(found(world, ann, query)) == {mine["id"]}, query
    for query in ("Client where code matches *", "Client where code contains -",
                  f"Client where code in ({c_agent.id}) or code matches *",
                  f"Client where id in ({c_agent.id}, {a_agent.id})"):
        got = ids(found(world, ann, query))
        assert c_agent.id not in got and a_agent.id in got, query
    assert found(world, ann, f"Client where id in ({c_agent.id})") == []
    assert found(world, ann, f"Task where job.id in ({their_ids})") == []
    assert found(world, ann, f"Task where job in ({their_ids})") == []
    # C's agent named as a job's source finds none of C's jobs
    assert found(world, ann, f"Job where source=client:{c_agent.id}") == []
    # C, for its part, sees its own: the records are there
    assert ids(found(world, cid, "Job where code matches *")) == ids(theirs)


def test_like_wildcards_in_a_value_are_plain_characters(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    tag = unique("w")
    made = {code: world.compute_job(ann, code=f"{tag}{code}")["id"]
            for code in ("50%", "500", "a_b", "axb", "x!y", "xy")}

    def codes(query: str) -> set[str]:
        return {r["code"].removeprefix(tag) for r in found(world, ann, query)}

    assert codes(f"Job where code contains {tag} and code contains %") == {"50%"}
    assert codes(f"Job where code contains {tag} and code contains _") == {"a_b"}
    assert codes(f"Job where code contains {tag} and code contains !") == {"x!y"}
    assert codes(f'Job where code matches "{tag}a_b"') == {"a_b"}
    assert codes(f'Job where code matches "{tag}50%"') == {"50%"}
    assert codes(f'Job where code matches "{tag}a?b"') == {"a_b", "axb"}
    assert codes(f'Job where code contains {tag} and code not contains "%"') == \
        set(made) - {"50%"}


def test_another_organizations_deleted_jobs_stay_invisible(hub: Hub) -> None:
    """C's deleted jobs: A's finds among inactive jobs never show them, by id, glob or
    negation; naming one answers as naming a job that does not exist; C sees its own."""
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)["token"]
    cid = world.user("C", permissions.RESEARCHER)["token"]
    mine, theirs = world.compute_job(ann), world.compute_job(cid)
    world.ok("DELETE", f"/job/{mine['id']}", token=ann)
    world.ok("DELETE", f"/job/{theirs['id']}", token=cid)
    for query in (f"Job where id in ({theirs['id']}, {mine['id']})", "Job",
                  "Job where code matches *", f"Job where id not in ({mine['id']})",
                  f"Job where id={theirs['id']} or code contains ''"):
        got = {j["id"] for j in found(world, ann, query, inactive=True)}
        assert theirs["id"] not in got and got <= {mine["id"]}, query
    assert {j["id"] for j in found(world, cid, "Job", inactive=True)} == {theirs["id"]}
    nowhere = "0123456789abcdef01234567"
    for method in ("GET", "DELETE"):
        their_answer = world.call(method, f"/job/{theirs['id']}", token=ann)
        none_answer = world.call(method, f"/job/{nowhere}", token=ann)
        assert their_answer[0] == none_answer[0] == 404, (their_answer, none_answer)
        assert their_answer[1]["error"]["message"].replace(theirs["id"], nowhere) == \
            none_answer[1]["error"]["message"]
    # and A's researcher deleting C's live job is refused, changing nothing
    live = world.compute_job(cid)
    status, _ = world.call("DELETE", f"/job/{live['id']}", token=ann)
    assert status in (403, 404)
    assert world.ok("GET", f"/job/{live['id']}", token=cid)["deleted"] is None
