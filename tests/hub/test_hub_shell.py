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
