"""The agent holds the hub to what it pinned about sealing (issue 14, finding 11): a run
sent unencrypted in a collaboration that was encrypted at enrollment, or naming another
key for the initiating organization than the pinned one, is refused before anything of
its input is opened or run.

A real hub, a real agent, the real Docker engine. What a compromised hub would do is done
here by its root user through the API (change an organization's key, switch encryption
off): no reaching into the database is needed for it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from agent.pins import Pins
from hub import Session
from protocol import DockerWork, sealing
from tests.conftest import IMAGE
from tests.e2e.test_docker_jobs import PASSWORD, containers_of
from tests.helpers import Agent, Hub, ended, wait_for

pytestmark = pytest.mark.one_round("the node's own sealing pins")

RESULT = "printf 'ran on %s' \"$(cat /ferry/input/input)\" > /ferry/output/result"


@dataclass
class Station:
    """One initiating organization (no node: root publishes its key) and one station that
    runs its jobs, in an encrypted collaboration."""

    hub: Hub
    root: Session
    user: Session  # a researcher of the initiating organization
    agent: Agent
    collaboration: str  # id
    initiator: str  # organization ids
    station: str
    initiator_key: bytes  # its private key (the test holds it, as the organization would)

    def station_public(self) -> str:
        return str(self.root.get("Organization", self.station)["public_key"])

    def submit(self, data: str, *, key: bytes | None = None, sealed: bool = True,
               tamper: bool = False) -> dict[str, Any]:
        text = data
        if sealed:
            envelope = sealing.seal(data.encode(), sender=self.initiator,
                                    sender_key=key or self.initiator_key,
                                    recipients={self.station: self.station_public()})
            if tamper:  # a change that opening would notice ("changed on the way")
                found = json.loads(envelope)
                found["data"] = found["data"][:-4] + ("AAAA" if found["data"][-4:] != "AAAA"
                                                      else "BBBB")
                envelope = json.dumps(found, separators=(",", ":")).encode()
            text = envelope.decode()
        return self.user.create("Job", {"collaboration": self.collaboration, "docker": {  # type: ignore[no-any-return]
            "image": IMAGE, "command": ["sh", "-c", RESULT], "grace": 1, "timeout": 120,
            "organizations": [{"organization": self.station, "input": text}]}})

    def run_of(self, job: dict[str, Any]) -> dict[str, Any]:
        wait_for(lambda: ended(self.user, job["id"]), timeout=60, what="job ended")
        [run] = self.root.find(f"Task where job.id={job['id']}")
        return self.root.get("Task", run["id"])  # type: ignore[no-any-return]

    def refused(self) -> int:
        return int(self.agent.status()["refusals"].get("sealing", 0))


@pytest.fixture
def station(engine: docker.DockerClient, hub: Hub, session: Session, start_agent: Any,
            tmp_path: Path) -> Station:
    initiator_key = sealing.new_private_key()
    initiator = session.create("Organization", {
        "name": "Initiator", "public_key": sealing.public_key(initiator_key)})["id"]
    station = session.create("Organization", {"name": "Station"})["id"]
    collaboration = session.create("Collaboration", {
        "name": "sealed", "encrypted": True, "organizations": [initiator, station]})["id"]
    session.create("User", {"username": "ada", "password": PASSWORD, "organization": initiator,
                            "roles": ["researcher"], "email": "ada@example.org"})
    node = session.create("Node", {"name": "station node", "organization": station,
                                   "collaboration": collaboration})
    agent = start_agent(hub, node["api_key"], transfer=False,
                        organization_key_file=str(tmp_path / "station-key.pem"),
                        docker={"slots": 1, "images": {"names": [IMAGE]}, "cpus": 0.5,
                                "memory": "64m", "pids": 64})

    def ready() -> bool:
        status = agent.status()
        docker_status = status.get("docker") or {}
        return bool(docker_status.get("ready") and status["organization_key"]["ready"]
                    and docker_status["pins"]["encrypted"])

    wait_for(ready, what="the station ready, its collaboration pinned encrypted")
    return Station(hub, session, Session(hub.url, username="ada", password=PASSWORD), agent,
                   collaboration, initiator, station, initiator_key)


def never_ran(engine: docker.DockerClient, run: dict[str, Any]) -> bool:
    """No container was ever made for the run (the engine's events since the test began)."""
    events = engine.events(since=int(time.time()) - 300, until=int(time.time()) + 1,
                           decode=True, filters={"label": f"ferry.run={run['id']}"})
    return not list(events) and not containers_of(engine, run["id"])


def test_a_run_naming_another_key_than_the_pinned_one_is_refused(
        station: Station, engine: docker.DockerClient) -> None:
    s = station
    # the first sealed run pins the initiating organization's key (trust on first use)
    run = s.run_of(s.submit("first"))
    assert run["status"] == "done", run["message"]
    assert sealing.open_sealed(run["result"], reader=s.initiator, reader_key=s.initiator_key,
                               sender_public=s.station_public()) == b"ran on first"
    assert s.agent.status()["docker"]["pins"]["organizations"] == [s.initiator]

    # the hub now names another key for the initiator: whoever holds it could seal inputs
    # in its name and read the results sealed for it
    rogue = sealing.new_private_key()
    s.root.update("Organization", s.initiator, {"public_key": sealing.public_key(rogue)})
    run = s.run_of(s.submit("forged", key=rogue))
    assert run["status"] == "failed"
    assert run["message"].startswith("refused by the node: the hub names another key for "
                                     f"the initiating organization {s.initiator}"), run
    assert run["result"] == "" and never_ran(engine, run)
    assert s.refused() == 1
    # refused before its input is opened: opening this one would have failed otherwise
    run = s.run_of(s.submit("tampered", key=rogue, tamper=True))
    assert run["message"].startswith("refused by the node:"), run["message"]
    assert never_ran(engine, run)
    assert s.refused() == 2
    log = s.agent.log()
    assert "refused" in log and "sealing" in log and "does not open" not in log


def test_a_run_sent_unencrypted_in_an_encrypted_collaboration_is_refused(
        station: Station, engine: docker.DockerClient) -> None:
    s = station
    # the hub switches encryption off: its jobs now come with plain inputs, and results
    # would go back unsealed
    s.root.update("Collaboration", s.collaboration, {"encrypted": False})
    run = s.run_of(s.submit("in the clear", sealed=False))
    assert run["status"] == "failed"
    assert run["message"].startswith("refused by the node: the hub sent this run "
                                     "unencrypted"), run["message"]
    assert never_ran(engine, run)
    assert s.refused() == 1
    # a restarted agent, told at enrollment that the collaboration is not encrypted, keeps
    # what it pinned
    s.agent.stop()
    s.agent.start()
    wait_for(lambda: (s.agent.status().get("docker") or {}).get("ready"), what="restarted")
    run = s.run_of(s.submit("again", sealed=False))
    assert run["message"].startswith("refused by the node: the hub sent this run "
                                     "unencrypted"), run["message"]
    assert never_ran(engine, run)
    assert s.refused() == 1  # counted by this agent process
    assert "keeps it encrypted" in s.agent.log()


# -- the pins themselves, in process

def work(initiator: str, key: str, *, encrypted: bool = True,
         organization: str = "station") -> DockerWork:
    return DockerWork(image=IMAGE, job_id="j", organization=organization, initiator=initiator,
                      encrypted=encrypted, initiator_key=key)


def test_pins_are_kept_on_disk_stricter_wins_and_deleting_the_file_resets_them(
        tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    a, b = sealing.public_key(sealing.new_private_key()), \
        sealing.public_key(sealing.new_private_key())
    pins = Pins(path)
    assert "not pinned" in pins.refusal(work("init", a), None)  # before any enrollment
    assert pins.enrolled("c1", True) == ""
    assert pins.refusal(work("init", a), None) == ""  # first use: pinned
    assert json.loads(path.read_text())["organizations"] == {"init": a}

    again = Pins(path)  # a restarted agent
    assert "keeps it encrypted" in again.enrolled("c1", False)
    assert "unencrypted" in again.refusal(work("init", a, encrypted=False), None)
    assert "another key" in again.refusal(work("init", b), None)
    assert again.refusal(work("init", a), None) == ""
    # the node's own organization: held to the key this node holds, never pinned
    assert "own organization" in again.refusal(work("station", b), a)
    assert again.refusal(work("station", a), a) == ""
    assert json.loads(path.read_text()) == {"version": 1, "collaboration": "c1",
                                            "encrypted": True, "organizations": {"init": a}}

    path.write_text("{not json")  # damaged (or tampered with): every run is refused
    assert "cannot be read" in Pins(path).refusal(work("init", a), None)
    path.unlink()  # the operator resets the pins: the next enrollment pins afresh
    fresh = Pins(path)
    assert fresh.enrolled("c2", False) == ""
    assert fresh.refusal(work("init", b, encrypted=False), None) == ""
    assert fresh.refusal(work("init", b), None) == ""
