"""Docker jobs end to end: a real hub, a real agent per organization, a real Docker engine
(``bash scripts/docker.sh``). Each organization's node runs the image on its own data; in an
encrypted collaboration inputs and results are sealed, and the hub keeps ciphertext only.
"""

from __future__ import annotations

import contextlib
import http.client as httpclient
import io
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from hub import Session
from protocol import sealing
from tests.conftest import IMAGE
from tests.helpers import Agent, Hub, db_query, ended, http, wait_for

ORGS = ("Amsterdam", "Bergen", "Cork")
# the algorithm: the sum of this node's numbers, after the word the initiator sent
SUM = ("s=0; for n in $(cat /ferry/data/values); do s=$((s+n)); done; "
       "printf '%s %s' \"$(cat /ferry/input/input)\" $s > /ferry/output/result")
PASSWORD = "a-long-Passphrase-7"


@dataclass
class Federation:
    hub: Hub
    root: Session
    user: Session  # a researcher of the first organization
    collaboration: str
    encrypted: bool
    orgs: dict[str, str]  # name: id
    agents: dict[str, Agent] = field(default_factory=dict)
    keys: dict[str, Path] = field(default_factory=dict)  # private key files
    data: dict[str, Path] = field(default_factory=dict)  # each node's own data folder

    def key(self, name: str) -> bytes:
        return self.keys[name].read_bytes()

    def public(self, name: str) -> str:
        return str(self.root.find_one(f"Organization where name={name}")["public_key"])

    def seal_for(self, name: str, text: str, sender: str = ORGS[0]) -> str:
        return sealing.seal(text.encode(), sender=self.orgs[sender], sender_key=self.key(sender),
                            recipients={self.orgs[name]: self.public(name)}).decode()

    def submit(self, inputs: dict[str, str], command: str = SUM, *, session: Session | None = None,
               **docker_keys: Any) -> dict[str, Any]:
        runs = [{"organization": name, "input": self.seal_for(name, text) if self.encrypted
                 else text} for name, text in inputs.items()]
        body = {"collaboration": self.collaboration, "docker": {
            "image": IMAGE, "command": ["sh", "-c", command], "organizations": runs,
            "grace": 1, "timeout": 300, **docker_keys}}
        return (session or self.user).create("Job", body)  # type: ignore[no-any-return]

    def runs(self, job_id: str) -> dict[str, dict[str, Any]]:
        names = {v: k for k, v in self.orgs.items()}
        return {names[t["organization"]]: t for t in self.root.find(
            f"Task where job.id={job_id}", attributes=["*", "log_tail", "input", "result"])}

    def running(self, job: dict[str, Any]) -> str:
        """Once the job's (one) run executes: its id."""
        return wait_for(lambda: next((r["id"] for r in self.runs(job["id"]).values()
                                      if r["status"] == "executing"), None), what="a run")

    def finished(self, job_id: str) -> dict[str, Any]:
        return wait_for(lambda: ended(self.user, job_id), timeout=120, what="job ended")


def make_federation(hub: Hub, session: Session, start_agent: Callable[..., Agent],
                    tmp_path: Path, *, encrypted: bool = True, orgs: tuple[str, ...] = ORGS,
                    agent_options: dict[str, Any] | None = None,
                    **docker_config: Any) -> Federation:
    ids = {name: session.create("Organization", {"name": name})["id"] for name in orgs}
    name = "trial-encrypted" if encrypted else "trial"
    session.create("Collaboration", {"name": name, "encrypted": encrypted,
                                     "organizations": list(orgs)})
    session.create("User", {"username": "ada", "password": PASSWORD, "organization": orgs[0],
                            "roles": ["researcher"], "email": "ada@example.org"})
    user = Session(hub.url, username="ada", password=PASSWORD)
    fed = Federation(hub, session, user, name, encrypted, ids)
    for n, org in enumerate(orgs):
        data = tmp_path / "data" / org
        data.mkdir(parents=True)
        (data / "values").write_text(" ".join(str(10 * (n + 1) + k) for k in range(3)))
        fed.data[org] = data
        fed.keys[org] = tmp_path / "keys" / f"{org}.pem"
        key = session.create("Node", {"name": f"{org} node", "organization": org,
                                      "collaboration": name})["api_key"]
        fed.agents[org] = start_agent(hub, key, organization_key_file=str(fed.keys[org]),
                                      transfer=False, **(agent_options or {}), docker={
                                          "slots": 2, "images": {"names": [IMAGE]},
                                          "cpus": 0.5, "memory": "64m", "pids": 64,
                                          "data": str(data), **docker_config})
    for org, agent in fed.agents.items():
        wait_for(lambda a=agent: (a.status().get("docker") or {}).get("ready")
                 and a.status()["organization_key"]["ready"], what=f"{org} ready")
    return fed


@pytest.fixture
def federation(engine: docker.DockerClient, hub: Hub, session: Session, start_agent: Any,
               tmp_path: Path) -> Iterator[Federation]:
    fed = make_federation(hub, session, start_agent, tmp_path)
    yield fed
    assert_no_containers_left(engine, fed)


def assert_no_containers_left(engine: docker.DockerClient, fed: Federation) -> None:
    """A test ends with every run it started gone: none left running on the engine (the
    agents are killed after it, and a container that outlives its agent waits for that
    agent's next start, which never comes here). A run that just ended may still be
    being removed by its agent: that is given a few seconds."""

    def left() -> list[Any]:
        return [c for agent in fed.agents.values() for c in listed(
            engine, f"ferry.agent={agent.info.get('agent_id', '-')}")]

    deadline = time.monotonic() + 15
    while (found := left()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for container in found:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    assert not found, f"containers left behind: {[c.name for c in found]}"


def containers_of(engine: docker.DockerClient, run_id: str) -> list[Any]:
    return listed(engine, f"ferry.run={run_id}")


def listed(engine: docker.DockerClient, label: str) -> list[Any]:
    """The containers with ``label``. The SDK lists, then looks at each: one removed in
    between (its agent is removing it) is a 404 there, and the listing is made again."""
    for _ in range(20):
        try:
            return engine.containers.list(all=True, filters={"label": label})
        except docker.errors.NotFound:
            continue
    return engine.containers.list(all=True, filters={"label": label})


def via_socket(path: Path, method: str, target: str, body: Any, token: str
               ) -> tuple[int, Any]:
    """An HTTP call over a Unix socket whose path may be longer than an address takes."""
    folder = os.open(path.parent, os.O_RDONLY)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(f"/proc/self/fd/{folder}/{path.name}")
    finally:
        os.close(folder)
    connection = httpclient.HTTPConnection("ferry", timeout=30)
    connection.sock = sock
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request(method, target, body=json.dumps(body) if body is not None else None,
                       headers=headers)
    answer = connection.getresponse()
    try:
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def test_three_organizations_each_run_on_their_own_data_sealed_for_the_initiator(
        federation: Federation, engine: docker.DockerClient) -> None:
    fed = federation
    job = fed.submit({name: f"hello-{name}" for name in ORGS})
    assert job["kind"] == "docker" and job["job_id"] == job["id"]
    assert job["organization"] == fed.orgs[ORGS[0]]
    assert fed.finished(job["id"])["status"] == "done"
    runs = fed.runs(job["id"])
    expected = {"Amsterdam": "hello-Amsterdam 33", "Bergen": "hello-Bergen 63",
                "Cork": "hello-Cork 93"}
    for name, run in runs.items():
        assert run["status"] == "done", run
        # the initiating organization opens each result and knows who sealed it
        opened = sealing.open_sealed(run["result"], reader=fed.orgs[ORGS[0]],
                                     reader_key=fed.key(ORGS[0]), sender_public=fed.public(name))
        assert opened.decode() == expected[name]
        assert sealing.sender_of(run["result"]) == fed.orgs[name]
        # nobody else does: not the organization that ran it, not another one
        for other in ORGS[1:]:
            with pytest.raises(sealing.SealError, match="not addressed"):
                sealing.open_sealed(run["result"], reader=fed.orgs[other],
                                    reader_key=fed.key(other), sender_public=fed.public(name))
    # the hub keeps ciphertext only
    stored = db_query(fed.hub.database, "SELECT input, result FROM tasks")
    assert len(stored) == 3
    for text_in, text_out in stored:
        assert "hello-" not in text_in and " 33" not in text_out and " 63" not in text_out
        sealing.parse(text_in)
        sealing.parse(text_out)
    # every run went to its own organization's node
    clients = {name: fed.agents[name].status()["client_id"] for name in ORGS}
    assert {name: run["source"]["client"] for name, run in runs.items()} == clients
    assert not [c for r in runs.values() for c in containers_of(engine, r["id"])]


def test_an_image_off_the_allowlist_is_refused_with_the_reason(
        federation: Federation, engine: docker.DockerClient) -> None:
    # an image of its own (the same image under another tag is the allowed image)
    engine.images.build(fileobj=io.BytesIO(f"FROM {IMAGE}\nLABEL unlisted=1\n".encode()),
                        tag="ferry-test/unlisted:1", rm=True)
    try:
        fed = federation
        job = fed.submit({ORGS[1]: "x"}, image="ferry-test/unlisted:1")
        assert fed.finished(job["id"])["status"] == "failed"
        run = fed.runs(job["id"])[ORGS[1]]
        assert run["status"] == "failed" and run["message"].startswith("image refused:")
        assert "ferry-test/unlisted:1" in run["message"] and "allow" in run["message"]
        assert run["attempts"] == 1 and run["result"] == ""
        # root, on a node that does not allow it; more memory than the node gives
        job = fed.submit({ORGS[1]: "x"}, user="0")
        assert fed.finished(job["id"])["status"] == "failed"
        assert "running as root (uid 0) is not allowed" in fed.runs(job["id"])[ORGS[1]]["message"]
        job = fed.submit({ORGS[1]: "x"}, memory="1g")
        assert fed.finished(job["id"])["status"] == "failed"
        assert "memory 1024 MiB asked, at most 64 MiB" in \
            fed.runs(job["id"])[ORGS[1]]["message"]
    finally:
        engine.images.remove("ferry-test/unlisted:1")


def test_a_container_over_its_memory_limit_fails_oom_killed(federation: Federation) -> None:
    job = federation.submit({ORGS[2]: "x"}, "x=$(head -c 200000000 /dev/zero | tr '\\0' a)",
                            memory="32m")
    assert federation.finished(job["id"])["status"] == "failed"
    run = federation.runs(job["id"])[ORGS[2]]
    assert run["message"].startswith("OOM killed (memory limit 32 MiB"), run["message"]


def test_abort_stops_the_container_within_the_grace(federation: Federation,
                                                    engine: docker.DockerClient) -> None:
    # it ignores TERM: only the KILL after the grace ends it
    job = federation.submit({ORGS[1]: "x"}, "trap '' TERM; echo up; while :; do sleep 1; done",
                            grace=2)
    run_id = federation.running(job)
    wait_for(lambda: [c for c in containers_of(engine, run_id) if c.status == "running"],
             what="container running")
    # its output reaches the hub while it runs
    wait_for(lambda: "up" in federation.root.get("Task", run_id)["log_tail"], what="live log")
    federation.user.update("Job", job["id"], {"status": "aborted"})
    assert federation.finished(job["id"])["status"] == "aborted"
    wait_for(lambda: not containers_of(engine, run_id), what="container removed")
    events = list(engine.events(since=int(time.time()) - 300, until=int(time.time()) + 1,
                                decode=True, filters={"label": f"ferry.run={run_id}"}))
    actions = [e["Action"] for e in events]
    # docker stop: TERM, then KILL once the grace ran out; the container is gone after
    assert "kill" in actions and "die" in actions and "destroy" in actions
    die = next(e for e in events if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "137"


def test_a_restarted_agent_adopts_running_containers_and_runs_nothing_twice(
        federation: Federation, engine: docker.DockerClient) -> None:
    fed = federation
    org = ORGS[1]
    job = fed.submit({org: "again"}, "echo started; while [ ! -e /ferry/tmp/go ]; do sleep 0.2; "
                     "done; " + SUM)
    run_id = fed.running(job)
    wait_for(lambda: [c for c in containers_of(engine, run_id) if c.status == "running"],
             what="container running")
    agent = fed.agents[org]
    agent.kill()  # SIGKILL: no drain, the container runs on
    assert [c.status for c in containers_of(engine, run_id)] == ["running"]
    agent.start()
    wait_for(lambda: run_id in (agent.status().get("docker") or {}).get("running", []),
             what="container adopted")
    assert "adopted a run's container" in agent.log()
    go = agent.paths.data_dir / "docker" / "jobs" / job["job_id"] / "go"
    wait_for(go.parent.is_dir, what="job folder")
    go.touch()
    assert fed.finished(job["id"])["status"] == "done"
    run = fed.runs(job["id"])[org]
    assert run["attempts"] == 0 and run["status"] == "done"
    opened = sealing.open_sealed(run["result"], reader=fed.orgs[ORGS[0]],
                                 reader_key=fed.key(ORGS[0]), sender_public=fed.public(org))
    assert opened == b"again 63"
    starts = [e for e in engine.events(since=int(time.time()) - 300, until=int(time.time()) + 1,
                                       decode=True, filters={"label": f"ferry.run={run_id}"})
              if e["Action"] == "start"]
    assert len(starts) == 1  # not run again
    wait_for(lambda: not containers_of(engine, run_id), what="container removed")


def test_a_run_reaches_no_network_and_no_other_runs_folder(federation: Federation,
                                                          engine: docker.DockerClient) -> None:
    fed = federation
    org = ORGS[2]
    secret = f"secret-{time.time_ns()}"
    first = fed.submit({org: "x"}, f"echo {secret} > /ferry/output/{secret}; "
                       "while [ ! -e /ferry/tmp/go ]; do sleep 0.2; done")
    wait_for(lambda: fed.runs(first["id"])[org]["status"] == "executing", what="first runs")
    port = int(fed.hub.url.rsplit(":", 1)[1])
    probe = fed.submit({org: "x"}, f"nc -w 2 127.0.0.1 {port} </dev/null; echo nc=$?; "
                       f"find / -name '{secret}*' 2>/dev/null | wc -l > /ferry/output/result; "
                       "ls /ferry > /ferry/output/listing; cat /ferry/output/listing")
    assert fed.finished(probe["id"])["status"] == "done"
    run = fed.runs(probe["id"])[org]
    assert "nc=1" in run["log_tail"]
    opened = sealing.open_sealed(run["result"], reader=fed.orgs[ORGS[0]],
                                 reader_key=fed.key(ORGS[0]), sender_public=fed.public(org))
    assert opened.strip() == b"0"  # the other run's file is nowhere to be seen
    assert set(run["log_tail"].split()) >= {"data", "input", "output", "tmp", "token"}
    fed.user.update("Job", first["id"], {"status": "aborted"})
    fed.finished(first["id"])
    first_run = fed.runs(first["id"])[org]["id"]
    wait_for(lambda: not containers_of(engine, first_run), what="the first run stopped")


def test_malformed_or_wrongly_sealed_input_fails_the_run_and_the_agent_goes_on(
        federation: Federation) -> None:
    fed = federation
    org = ORGS[1]
    # sealed for Bergen, but signed with a key that is not Amsterdam's
    forged = sealing.seal(b"x", sender=fed.orgs[ORGS[0]], sender_key=sealing.new_private_key(),
                          recipients={fed.orgs[org]: fed.public(org)}).decode()
    body = {"collaboration": fed.collaboration, "docker": {
        "image": IMAGE, "command": ["sh", "-c", SUM],
        "organizations": [{"organization": org, "input": forged}]}}
    job = fed.user.create("Job", body)
    assert fed.finished(job["id"])["status"] == "failed"
    run = fed.runs(job["id"])[org]
    assert run["message"].startswith("input: the signature does not match"), run["message"]
    # the agent runs the next one
    good = fed.submit({org: "fine"})
    assert fed.finished(good["id"])["status"] == "done"
    assert fed.agents[org].status()["status"] == "online"


def test_bad_docker_jobs_are_refused_naming_the_field_and_create_nothing(
        federation: Federation) -> None:
    fed = federation
    url, token = f"{fed.hub.api}/job", fed.user._token

    def refused(docker_keys: dict[str, Any], **top: Any) -> dict[str, Any]:
        body = {"collaboration": fed.collaboration, **top, "docker": {
            "image": IMAGE, "organizations": [{"organization": ORGS[1],
                                               "input": fed.seal_for(ORGS[1], "x")}],
            **docker_keys}}
        status, answer = http("POST", url, body, token=token)
        assert status in (409, 422), answer
        return answer["error"]  # type: ignore[no-any-return]

    error = refused({"organizations": [{"organization": ORGS[1], "input": "plain text"}]})
    assert error["code"] == "not_sealed" and error["field"] == "docker.organizations[0].input"
    error = refused({"organizations": [{"organization": "Nowhere", "input": ""}]})
    assert error["field"] == "docker.organizations[0].organization"
    sealed = fed.seal_for(ORGS[1], "x")
    error = refused({"organizations": [{"organization": ORGS[2], "input": sealed}]})
    assert error["code"] == "not_sealed" and "not for the run's organization" in error["message"]
    error = refused({"organizations": [{"organization": ORGS[1], "input": sealed},
                                       {"organization": ORGS[1], "input": sealed}]})
    assert "listed twice" in error["message"]
    assert refused({"memory": "lots"})["field"] == "docker.memory"
    assert refused({"cpus": -1})["field"] == "docker.cpus"
    assert refused({"shell": True})["field"] == "docker.shell"
    assert refused({}, collaboration="nope")["field"] == "collaboration"
    assert refused({}, parent="nope")["code"] == "unknown_parent"
    assert db_query(fed.hub.database, "SELECT count(*) FROM jobs")[0][0] == 0


def test_a_run_token_creates_child_jobs_of_its_own_job_until_the_run_ends(
        federation: Federation) -> None:
    fed = federation
    org = ORGS[1]
    parent = fed.submit({org: "p"}, "[ -S \"$FERRY_HUB_SOCKET\" ] && echo socket-there; "
                        "while [ ! -e /ferry/tmp/go ]; do sleep 0.2; done")
    run_id = fed.running(parent)
    agent = fed.agents[org]
    token = (agent.paths.data_dir / "docker" / "runs" / run_id / "token").read_text()
    child_body = {"docker": {"image": IMAGE, "command": ["sh", "-c", SUM], "organizations": [
        {"organization": ORGS[2], "input": fed.seal_for(ORGS[2], "child")}]}}
    # the run has no network: it calls the hub through the agent's socket for runs
    socket_path = agent.paths.data_dir / "docker" / "proxy" / "hub.sock"
    status, child = via_socket(socket_path, "POST", "/api/v1/job", child_body, token)
    assert status == 201, child
    status, answer = via_socket(socket_path, "GET", "/api/v1/user/1", None, token)
    assert status == 403 and answer["error"]["code"] == "not_proxied"
    status, answer = via_socket(socket_path, "GET", f"/api/v1/job/{child['id']}", None, "")
    assert status == 401
    assert child["parent"] == parent["id"] and child["job_id"] == parent["job_id"]
    assert child["collaboration"] == parent["collaboration"]
    assert child["user"] == parent["user"] and child["organization"] == fed.orgs[ORGS[0]]
    # only docker children of its own job
    status, answer = http("POST", f"{fed.hub.api}/job", {"compute": {
        "command": ["true"], "items": "1"}}, token=token)
    assert status == 403, answer
    other = fed.submit({org: "q"}, "true")
    status, answer = http("POST", f"{fed.hub.api}/job", {**child_body, "parent": other["id"]},
                          token=token)
    assert status == 422 and answer["error"]["code"] == "forbidden_parent"
    assert fed.finished(child["id"])["status"] == "done"
    go = agent.paths.data_dir / "docker" / "jobs" / parent["job_id"] / "go"
    go.touch()
    assert fed.finished(parent["id"])["status"] == "done", fed.runs(parent["id"])[org]["message"]
    assert "socket-there" in fed.runs(parent["id"])[org]["log_tail"], fed.runs(parent["id"])[org]
    # the run ended: its token with it
    status, answer = http("POST", f"{fed.hub.api}/job", child_body, token=token)
    assert status == 401 and answer["error"]["code"] == "token_expired"


def test_a_collaboration_without_encryption_carries_plain_text(
        engine: docker.DockerClient, hub: Hub, session: Session, start_agent: Any,
        tmp_path: Path) -> None:
    fed = make_federation(hub, session, start_agent, tmp_path, encrypted=False,
                          orgs=ORGS[:2])
    job = fed.submit({name: f"plain-{name}" for name in ORGS[:2]})
    assert fed.finished(job["id"])["status"] == "done"
    assert {n: r["result"] for n, r in fed.runs(job["id"]).items()} == {
        "Amsterdam": "plain-Amsterdam 33", "Bergen": "plain-Bergen 63"}
    # a binary result where results are text: that run fails, saying so
    job = fed.submit({ORGS[1]: "x"}, "printf 'a\\000b' > /ferry/output/result")
    assert fed.finished(job["id"])["status"] == "failed"
    assert "not UTF-8 text without NUL" in fed.runs(job["id"])[ORGS[1]]["message"]
    assert_no_containers_left(engine, fed)


def test_a_stopping_agent_drains_its_runs_then_hands_back_what_still_runs(
        engine: docker.DockerClient, hub: Hub, session: Session, start_agent: Any,
        tmp_path: Path) -> None:
    fed = make_federation(hub, session, start_agent, tmp_path, orgs=ORGS[:1],
                          agent_options={"drain_timeout": 1.0})
    org = ORGS[0]
    quick = fed.submit({org: "quick"}, "sleep 0.5; " + SUM)
    wait_for(lambda: fed.runs(quick["id"])[org]["status"] == "executing", what="quick runs")
    agent = fed.agents[org]
    assert agent.stop() == 0  # SIGTERM: a drain of 1 s
    # what finished within the drain is reported; nothing is left behind
    assert fed.runs(quick["id"])[org]["status"] == "done"
    slow = fed.submit({org: "slow"}, "while [ ! -e /ferry/tmp/go ]; do sleep 0.2; done; " + SUM)
    agent.start()
    run_id = fed.running(slow)
    assert agent.stop() == 0
    # past the drain deadline: stopped, handed back with no attempt spent, and removed
    run = fed.runs(slow["id"])[org]
    assert (run["status"], run["attempts"]) == ("queued", 0), run
    assert not containers_of(engine, run_id)
    agent.start()
    go = agent.paths.data_dir / "docker" / "jobs" / slow["job_id"] / "go"
    wait_for(go.parent.is_dir, what="the run again")
    go.touch()
    assert fed.finished(slow["id"])["status"] == "done"
    assert not containers_of(engine, run_id)
    assert_no_containers_left(engine, fed)
