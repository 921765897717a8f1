"""``ferry hub shell``: the reference's db.* calls, checked as the API checks; and the
password flows: change, and reset by mail through a real SMTP server on loopback."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from hub import Session
from tests.helpers import Hub, db_rows, ferry, http, login


def shell(hub: Hub, env: dict[str, str], code: str) -> Any:
    return ferry("hub", "shell", "--user", "--name", hub.name, "--config", str(hub.config_file),
                 "-c", code, env=env)


REFERENCE = '''
organization = db.Organization(name="IKNL", domain="iknl.nl", address1="Zernikestraat 29",
                               address2="Eindhoven", zipcode="5612HZ", country="Netherlands")
organization.save()
other_organization = db.Organization(name="Other", domain="other.example")
other_organization.save()
iknl = db.Organization.get_by_name("IKNL")
collaboration = db.Collaboration(name="collaboration-name", encrypted=False,
                                 organizations=[iknl, other_organization])
collaboration.save()
rule = db.Rule.get_by_("node", "organization", "view")
role = db.Role(name="role-name", rules=[rule], organization=iknl)
role.save()
new_user = db.User(username="john", password="super-secret", firstname="John",
                   lastname="Doe", roles=[db.Role.get(role.id)], rules=[], organization=iknl)
new_user.save()
user = db.User.get_by_username("john")
user.rules.append(db.Rule.get_by_("job", "own", "create"))
user.firstname = "Brandnew"
user.save()
collab = iknl.collaborations[0]
node = db.Node(name=f"IKNL Node - Collaboration {collab.name}", organization=iknl,
               collaboration=collab, api_key="0123456789abcdef-iknl")
node.save()
print("users", [u.username for u in db.Organization.get_by_name("IKNL").users])
print("nodes", [n.name for n in collaboration.nodes])
print("orgs", sorted(o.name for o in collaboration.organizations))
print("rules", [r.name for r in db.Role.get(role.id).rules])
print("firstname", db.User.get_by_username("john").firstname)
print("user rules", [r.name for r in db.User.get_by_username("john").rules])
print("count", len(db.Organization.get()))
db.Organization.help()
'''


def test_the_reference_shell_calls_work(hub: Hub, env: dict[str, str]) -> None:
    result = shell(hub, env, REFERENCE)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "users ['john']" in out
    assert "nodes ['IKNL Node - Collaboration collaboration-name']" in out
    assert "orgs ['IKNL', 'Other']" in out
    assert "rules ['view node (organization)']" in out
    assert "firstname Brandnew" in out
    assert "user rules ['create job (own)']" in out
    assert "count 3" in out  # root's organization too
    assert "api_key: 0123456789abcdef-iknl  (shown once" in out
    assert "relations: users, nodes, collaborations" in out
    # what the shell made, the API sees, and the node key works
    session = Session(hub.url, username="john", password="super-secret")
    assert session.user["firstname"] == "Brandnew"
    status, _ = http("POST", f"{hub.api}/agent/enroll", {
        "api_key": "0123456789abcdef-iknl", "machine_id": "m" * 16, "code": "iknl"})
    assert status == 200


@pytest.mark.parametrize(("code", "says"), [
    ('db.User(username="weak", password="short").save()',
     "password must have at least 8 characters"),
    ('db.Organization(name="").save()', "field 'name' must not be empty"),
    ('db.Node(name="n", organization="nowhere").save()', "no organization 'nowhere'"),
    ('db.Collaboration(name="c", organizations=["nowhere"]).save()', "no organization 'nowhere'"),
    ('db.Role.get_by_name("viewer").delete()', "default roles cannot be changed"),
    ('db.User.get_by_username("root").delete()', "cannot delete your own user"),
    ('db.drop_all()', "allow_drop_all: false"),
])
def test_the_shell_validates_like_the_api(hub: Hub, env: dict[str, str], code: str,
                                           says: str) -> None:
    before = db_rows(hub.database)
    result = shell(hub, env, code)
    assert result.returncode != 0
    assert says in result.stderr, result.stderr
    after = db_rows(hub.database)
    for table in ("users", "organizations", "nodes", "collaborations", "roles"):
        assert after[table] == before[table], table


def test_drop_all_when_the_config_allows_it(start_hub: Callable[..., Hub],
                                            env: dict[str, str]) -> None:
    hub = start_hub(allow_drop_all=True)
    assert shell(hub, env, 'db.Organization(name="Doomed").save()').returncode == 0
    hub.stop()
    result = shell(hub, env, "db.drop_all()")
    assert result.returncode == 0, result.stderr
    rows = db_rows(hub.database)
    assert rows["organizations"] == [] and rows["users"] == []
    hub.start()  # root and hq are made again
    assert login(hub)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server (aiosmtpd) on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


def test_a_lost_password_is_reset_by_mail(start_hub: Callable[..., Hub],
                                          smtp: tuple[int, Mailbox]) -> None:
    port, mailbox = smtp
    hub = start_hub(smtp={"server": "127.0.0.1", "port": port},
                    support_email="help@studio.example")
    root = Session(hub.url, username="root", password="test-root-password")
    root.create("User", {"username": "lars", "email": "lars@edit.com",
                         "password": "lars first password"})
    api = hub.api
    # unknown users get the same answer, and no mail
    status, body = http("POST", f"{api}/password/lost", {"username": "nobody"})
    assert status == 200 and mailbox.messages == []
    status, body = http("POST", f"{api}/password/lost", {"email": "lars@edit.com"})
    assert status == 200, body
    [raw] = mailbox.messages
    mail = message_from_bytes(raw.as_bytes(), policy=default)
    assert mail["To"] == "lars@edit.com" and mail["From"] == "help@studio.example"
    found = re.search(r"^(eyJ[\w-]+\.[\w-]+\.[\w-]+)$", mail.get_content(), re.MULTILINE)
    assert found, mail.get_content()
    token = found.group(1)
    # a reset token is no access token
    assert http("GET", f"{api}/user/{root.user['id']}", token=token)[0] == 401
    status, body = http("POST", f"{api}/password/reset", {"reset_token": token,
                                                          "password": "short"})
    assert status == 422 and body["error"]["code"] == "weak_password"
    status, body = http("POST", f"{api}/password/reset", {"reset_token": token,
                                                          "password": "lars new password"})
    assert status == 200, body
    assert login(hub, "lars", "lars new password")
    # once only
    status, body = http("POST", f"{api}/password/reset", {"reset_token": token,
                                                          "password": "lars third password"})
    assert status == 400 and body["error"]["code"] == "reset_token_used"
    status, body = http("POST", f"{api}/password/reset", {"reset_token": "x.y.z",
                                                          "password": "lars third password"})
    assert status == 400 and body["error"]["code"] == "reset_token_invalid"


def test_without_smtp_a_reset_says_so(hub: Hub) -> None:
    status, body = http("POST", f"{hub.api}/password/lost", {"username": "root"})
    assert status == 409 and body["error"]["code"] == "no_smtp"
    status, body = http("POST", f"{hub.api}/password/lost", {})
    assert status == 422


def test_changing_a_password_revokes_older_tokens(hub: Hub) -> None:
    token = login(hub)
    status, body = http("POST", f"{hub.api}/password/change", {
        "username": "root", "password": "test-root-password",
        "new_password": "root's new password"})
    assert status == 200, body
    assert http("GET", f"{hub.api}/find?query=User", token=token)[0] == 401
    assert login(hub, "root", "root's new password")


TASKS_AND_RUNS = '''
iknl = db.Organization(name="IKNL", domain="iknl.nl")
iknl.save()
other_organization = db.Organization(name="Other", domain="other.example")
other_organization.save()
db.Collaboration(name="collaboration-name", encrypted=False,
                 organizations=[iknl, other_organization]).save()

# server-shell-v4.rst, "Tasks and Results", as printed but for the id (get(1))
iknl = db.Organization.get_by_name("IKNL")
collaboration = db.Collaboration.get_by_name("collaboration-name")
job_id = db.Task.next_job_id()
task = db.Task(
    name="some-name",
    description="some human readable description",
    image="docker-registry.org/image-name",
    collaboration=collaboration,
    job_id=job_id,
    database="default",
    init_org=iknl,
)
task.save()
input_ = {
}
import datetime
for org in collaboration.organizations:
    res = db.Run(
        input=input_,
        organization=org,
        task=task,
        assigned_at=datetime.datetime.now(datetime.timezone.utc)
    )
    res.save()

parent_task = db.Task.get(task.id)
child_task = db.Task(
    name="child-name",
    description="some human readable description",
    image="docker-registry.org/image-name",
    collaboration=collaboration,
    job_id=parent_task.job_id,
    database="default",
    initiator=iknl,
    parent=parent_task
)
child_task.save()

# Ferry's one step: a task with its organizations (a run each)
both = db.Task(name="both", image="docker-registry.org/image-name",
               collaboration=collaboration, initiator=iknl,
               organizations=collaboration.organizations, input="frames 1-10")
both.save()

print("ids", task.id == job_id, task.job_id == job_id, child_task.job_id == job_id)
print("status", db.Task.get(task.id).status, child_task.status, both.status)
print("runs", sorted(r.organization.name for r in db.Task.get(task.id).runs))
print("input", repr(task.runs[0].input), repr(both.runs[0].input))
print("task of run", task.runs[0].task == task, task.runs[0].complete)
print("org runs", len(iknl.runs), len(other_organization.runs))
print("created", sorted(t.name for t in iknl.created_tasks))
print("collab tasks", sorted(t.name for t in collaboration.tasks))
print("parent", child_task.parent == task, task.parent, [c.name for c in task.children])
print("all runs", len(db.Run.get()), [r for r in db.Run.get() if r.complete])
print("run by id", db.Run.get(res.id) == res)
print("meta", task.description, task.database, task.image, task.initiator.name)
'''


def test_tasks_and_runs_as_the_reference_makes_them(hub: Hub, env: dict[str, str]) -> None:
    """A task made without runs is held until its first run, which starts it; the runs
    are the job's tasks, one per organization, as the API sees them."""
    result = shell(hub, env, TASKS_AND_RUNS)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "task 'some-name' is held (paused) until its first run" in out
    assert "ids True True True" in out
    assert "status waiting paused waiting" in out  # the child was given no runs
    assert "runs ['IKNL', 'Other']" in out
    assert "input '{}' 'frames 1-10'" in out  # the reference's dict input, as JSON text
    assert "task of run True False" in out
    assert "org runs 2 2" in out  # a run of 'some-name' and of 'both' each
    assert "created ['both', 'child-name', 'some-name']" in out
    assert "collab tasks ['both', 'child-name', 'some-name']" in out
    assert "parent True None ['child-name']" in out
    assert "all runs 4 []" in out and "run by id True" in out
    assert ("meta some human readable description default docker-registry.org/image-name "
            "IKNL") in out
    # what the shell made is a docker job with a queued run per organization for the API
    session = Session(hub.url, username="root", password="test-root-password")
    job = session.find_one("Job where code=some-name")
    assert job is not None and job["kind"] == "docker" and job["status"] == "waiting"
    runs = session.find(f"task WHERE job.id={job['id']}")
    assert len(runs) == 2 and {r["status"] for r in runs} == {"queued"}


@pytest.mark.parametrize(("code", "says"), [
    ("db.Organization.get(1)", 'db.Organization.get(1): ids are strings in Ferry, not '
     'numbers (they are made at random, so no record is number 1). Find one with '
     'db.Organization.get_by_name("IKNL"), or list them with [x.id for x in '
     'db.Organization.get()]'),
    ("db.Role.get(3).rules", 'Find one with db.Role.get_by_name("researcher")'),
    ("db.Task.get(1)", 'Find one with db.Task.get_by_name("some-name")'),
    ("db.Run.get(1)", 'Find one with db.Task.get_by_name("some-name").runs'),
    ('db.Task(name="t", image="i", collaboration="nowhere", initiator="root").save()',
     "no collaboration 'nowhere'"),
    ('db.Run(task="nope", organization="root").save()', "no task 'nope'"),
    ('db.Task(name="t").save()', "db.Task needs image"),
])
def test_what_the_shell_cannot_do_says_what_to_write(hub: Hub, env: dict[str, str],
                                                      code: str, says: str) -> None:
    before = db_rows(hub.database)
    result = shell(hub, env, code)
    assert result.returncode != 0
    assert says in result.stderr, result.stderr
    after = db_rows(hub.database)
    assert after["jobs"] == before["jobs"] and after["tasks"] == before["tasks"]
