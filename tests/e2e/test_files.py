"""Files of a share through a real hub and the real agent that serves it: ``Session.ls``
(paged, recursive), ``exists``, ``getsize``, ``mkdir``, ``rename``, ``mv``, ``delete``, and
``ferry ls|mkdir|mv|rm`` as a user types them; bad input answered naming what is wrong with
nothing changed on disk; each change logged by the hub with who made it and kept; an agent
that went away named in the answer. One hub and one agent serve the whole module."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.errors import ApiError, HubError
from hub import Session
from tests.conftest import HUB_DEFAULTS, ON_POSTGRES, postgres_database
from tests.helpers import ROOT_PASSWORD, Agent, Hub, ferry, http, isolated_env, login, wait_for
from tests.transports.test_fileops import tree

pytestmark = [pytest.mark.slow, pytest.mark.one_round(
    "the hub's side runs on PostgreSQL in tests/security/test_file_ops.py")]


@dataclass
class Served:
    hub: Hub
    agent: Agent
    session: Session
    root: Path  # share "projects"
    outside: Path
    env: dict[str, str]  # for ferry commands, logged in as root through the environment


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("files")
    env = isolated_env(tmp / "env")
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "HOME",
                    "FERRY_ROOT_PASSWORD", "PYTHON_KEYRING_BACKEND"):
            patch.setenv(key, env[key])
        section: dict[str, Any] = dict(HUB_DEFAULTS)
        if ON_POSTGRES:
            section["uri"] = stack.enter_context(postgres_database())
        hub = Hub("hub", "files", tmp, section, env)
        stack.callback(hub.kill)
        hub.start()
        session = Session(hub.url, username="root", password=ROOT_PASSWORD)
        agent = Agent("agent", "fileserver", tmp, {
            "hub": hub.url, "api_key": session.create("Node", {"name": "fileserver"})["api_key"],
            "retry_max_delay": 0.5, "transfer_ip": "127.0.0.1", "lanes": 1,
            "logging": {"level": "DEBUG"}}, env)
        stack.callback(agent.kill)
        agent.start()
        client = wait_for(lambda: agent.status()["client_id"], what="enrolled")
        root, outside = tmp / "projects", tmp / "outside"
        for n in range(25):
            (root / "film" / "plates" / f"f{n:04d}.exr").parent.mkdir(parents=True,
                                                                      exist_ok=True)
            (root / "film" / "plates" / f"f{n:04d}.exr").write_bytes(b"x" * n)
        (root / "film" / "edit.mov").write_bytes(b"m" * 1000)
        outside.mkdir()
        (outside / "secret.txt").write_text("secret")
        (root / "film" / "escape").symlink_to(outside)
        session.create("Share", {"name": "projects", "client": client, "path": str(root)})
        wait_for(lambda: agent.status()["transfer"]["shares"] == ["projects"], what="served")
        yield Served(hub, agent, session, root, outside,
                     {**env, "FERRY_HUB": hub.url, "FERRY_USERNAME": "root",
                      "FERRY_PASSWORD": ROOT_PASSWORD})


def test_session_works_on_a_shares_files(served: Served) -> None:
    session, root = served.session, served.root
    listed = session.ls("share=projects/film/")
    assert [(e["name"], e["type"]) for e in listed] == [
        ("edit.mov", "file"), ("escape", "link"), ("plates", "dir")]
    assert listed[0]["path"] == "share=projects/film/edit.mov" and listed[0]["size"] == 1000
    # recursive, in pages of 7: the same entries as one page, a folder before its files
    everything = session.ls("projects/film", recursive=True)
    assert len(everything) == 3 + 25
    assert session.ls("projects/film", recursive=True, page_size=7) == everything
    assert [e["name"] for e in session.ls("projects/film/plates", limit=3, skip=2)] == \
        ["f0002.exr", "f0003.exr", "f0004.exr"]
    assert session.exists("share=projects/film/edit.mov")
    assert not session.exists("share=projects/film/nothing.mov")
    assert session.getsize("share=projects/film/edit.mov") == 1000
    assert session.getsize("share=projects/film/plates") == sum(range(25))

    assert session.mkdir("share=projects/film/shot020/comp")["changed"] is True
    assert session.mkdir("share=projects/film/shot020")["changed"] is False
    done = session.rename("share=projects/film/edit.mov", "edit_v2.mov")
    assert done["result"] == "share=projects/film/edit_v2.mov"
    done = session.mv("share=projects/film/edit_v2.mov", "share=projects/film/shot020/")
    assert done["result"] == "share=projects/film/shot020/edit_v2.mov"
    assert (root / "film/shot020/edit_v2.mov").stat().st_size == 1000

    # bad input: each says what is wrong, and nothing changes
    before, outside = tree(root), tree(served.outside)
    refused = [  # (call, status, field, what the answer says)
        (lambda: session.delete("share=projects/film/shot020"), 409, None,
         "not empty: delete it with what it holds with recursive=True"),
        (lambda: session.rename("share=projects/film/plates", "a/b"), 422, "to",
         "rename takes a new name"),
        (lambda: session.mv("share=projects/film/plates/f0001.exr",
                            "share=projects/film/plates/f0002.exr"), 409, None,
         "'film/plates/f0002.exr' is there already"),
        (lambda: session.mv("share=projects/film/plates", "share=backup/plates"), 422, "to",
         "mv moves within one share"),
        (lambda: session.ls("share=projects/../etc"), 422, "path", "'..' would leave"),
        (lambda: session.ls("share=projects//etc/passwd"), 422, "path", "is absolute"),
        (lambda: session.ls("share=projects/film/escape/secret.txt"), 422, "path",
         "'film/escape' is a symlink"),
        (lambda: session.delete("share=projects/film/escape", recursive=True), 422, "path",
         "is a symlink"),
        (lambda: session.delete("share=projects/", recursive=True), 422, "path",
         "the share's root is not deleted"),
        (lambda: session.mkdir("share=nothing/x"), 422, "path", "no share named 'nothing'"),
    ]
    for call, status, field, needle in refused:
        with pytest.raises(ApiError) as caught:
            call()
        error = caught.value
        assert error.status == status and needle in error.message, error
        assert error.details.get("field") == field, error
    assert tree(root) == before and tree(served.outside) == outside

    assert session.delete("share=projects/film/shot020", recursive=True)["changed"]
    assert not (root / "film/shot020").exists()
    # every change kept and logged, with who made it
    changes = session.file_changes("share=projects")
    assert [(c["op"], c["path"], c["result"], c["username"]) for c in changes] == [
        ("delete", "film/shot020", "", "root"),
        ("mv", "film/edit_v2.mov", "film/shot020/edit_v2.mov", "root"),
        ("rename", "film/edit.mov", "film/edit_v2.mov", "root"),
        ("mkdir", "film/shot020/comp", "film/shot020/comp", "root")]
    lines = [line for line in served.hub.log().splitlines() if "file changed" in line]
    assert len(lines) == 5, lines  # the mkdir that found its folder changed nothing
    assert all("username=root" in line and "share=projects" in line for line in lines), lines
    assert "op=rename" in lines[2] and "path=film/edit.mov" in lines[2], lines


def test_ferry_ls_mkdir_mv_rm(served: Served) -> None:
    env, root = served.env, served.root
    (root / "film/edit.mov").write_bytes(b"m" * 1000)  # the test before moved it away
    done = ferry("ls", "share=projects/film/", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[-1] for line in lines] == ["edit.mov", "escape", "plates/"]
    assert lines[0].split()[:2] == ["-", "1000"] and lines[2].startswith("d ")
    done = ferry("ls", "projects/film", "--recursive", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 28
    done = ferry("ls", "projects/film", "-R", "--limit", "4", env=env)
    assert [line.split()[-1] for line in done.stdout.splitlines()] == [
        "edit.mov", "escape", "plates/", "plates/f0000.exr"]

    assert ferry("mkdir", "share=projects/film/old", env=env).returncode == 0
    done = ferry("mv", "share=projects/film/edit.mov", "share=projects/film/old/", env=env)
    assert done.returncode == 0 and "-> share=projects/film/old/edit.mov" in done.stdout, done
    done = ferry("rm", "share=projects/film/old", env=env)
    assert done.returncode == 1 and "--recursive" in done.stderr, done
    assert (root / "film/old/edit.mov").exists()
    done = ferry("rm", "share=projects/film/old", "--recursive", env=env)
    assert done.returncode == 0 and not (root / "film/old").exists(), done
    done = ferry("ls", "share=projects/../x", env=env)
    assert done.returncode == 2 and "'..' would leave the share" in done.stderr, done


def test_bad_input_names_the_field(served: Served) -> None:
    token = login(served.hub)
    before = tree(served.root)
    cases = [  # (endpoint, body, field, what the answer says)
        ("ls", {"path": "share=projects/film", "limit": 0}, "limit", ">= 1"),
        ("ls", {"path": "share=projects/film", "limit": 10_001}, "limit", "<= 10000"),
        ("ls", {"path": "share=projects/film", "skip": -1}, "skip", ">= 0"),
        ("ls", {"path": 7}, "path", "Expected `str`"),
        ("ls", {"path": ""}, "path", "length >= 1"),
        ("ls", {"path": "share=projects/film", "colour": "red"}, "colour", "colour"),
        ("ls", {"path": "share=projects/film", "to": "x"}, "to", "ls takes no 'to'"),
        ("mkdir", {"path": "share=projects/film/x", "cursor": "a"}, "cursor",
         "only ls is paged"),
        ("rename", {"path": "share=projects/film/plates"}, "to", "rename needs 'to'"),
        ("mv", {"path": "share=projects/film/plates"}, "to", "mv needs 'to'"),
        ("mv", {"path": "share=projects/film/plates", "to": "share=projects/a\\b"}, "to",
         "back slash"),
        ("delete", {"path": "share=/film"}, "path", "names no share"),
        ("stat", {"path": "share=pro jects/film"}, "path", "a share name is"),
    ]
    for endpoint, body, field, needle in cases:
        status, answer = http("POST", f"{served.hub.api}/files/{endpoint}", body, token=token)
        assert status == 422, (endpoint, body, answer)
        assert answer["error"].get("field") == field and needle in answer["error"]["message"], \
            (endpoint, body, answer)
    assert tree(served.root) == before


def test_an_agent_gone_is_named(served: Served) -> None:
    """Last in the module: it stops the agent."""
    client = served.agent.status()["client_id"]
    code = served.session.get("Client", client)["code"]
    served.agent.kill()
    with pytest.raises(HubError) as caught:
        served.session.ls("share=projects/film/")
    assert "hub answered 503" in str(caught.value) and f"the agent '{code}' that serves " \
        "share 'projects' does not answer" in str(caught.value)
    # once the hub counts it offline, it says so without trying
    wait_for(lambda: served.session.get("Client", client)["status"] == "offline",
             what="the agent offline")
    with pytest.raises(HubError) as caught:
        served.session.mkdir("share=projects/film/new")
    assert f"the agent '{code}' that serves share 'projects' is offline (last check-in: " \
        in str(caught.value)
