"""Finding 10: accounts. A lost password is looked up by the one field given; one's own
password changes only with the current one, on every path; a user's API keys die with
the password they were made under, and may expire."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default

from hub import Session, permissions
from tests.helpers import ROOT_PASSWORD, Hub, db_query, http, login
from tests.hub.test_hub_shell import Mailbox, smtp  # noqa: F401 - the fixture
from tests.security.world import PASSWORD, World


def mailed_token(mailbox: Mailbox) -> tuple[str, str]:
    [raw] = mailbox.messages
    mailbox.messages.clear()
    mail = message_from_bytes(raw.as_bytes(), policy=default)
    found = re.search(r"^(eyJ[\w-]+\.[\w-]+\.[\w-]+)$", mail.get_content(), re.MULTILINE)
    assert found, mail.get_content()
    return str(mail["To"]), found.group(1)


def test_a_lost_password_is_found_by_the_field_given(
        start_hub: Callable[..., Hub], smtp: tuple[int, Mailbox]) -> None:  # noqa: F811
    port, mailbox = smtp
    hub = start_hub(smtp={"server": "127.0.0.1", "port": port})
    root = Session(hub.url, username="root", password=ROOT_PASSWORD)
    root.create("User", {"username": "lars", "email": "lars@edit.com",
                         "password": "lars first password"})
    root.create("User", {"username": "nomail", "password": "nomail password 1"})
    api = hub.api
    # a username never matches a user without an email (root has none)
    assert http("POST", f"{api}/password/lost", {"username": "lars"})[0] == 200
    to, token = mailed_token(mailbox)
    assert to == "lars@edit.com"
    assert http("POST", f"{api}/password/lost", {"username": "nomail"})[0] == 200
    assert http("POST", f"{api}/password/lost", {"email": "nobody@edit.com"})[0] == 200
    assert mailbox.messages == []
    assert http("POST", f"{api}/password/lost", {"email": "LARS@Edit.com"})[0] == 200
    to, token = mailed_token(mailbox)
    assert to == "lars@edit.com"
    status, body = http("POST", f"{api}/password/reset", {"reset_token": token,
                                                          "password": "lars second password"})
    assert status == 200, body
    assert login(hub, "lars", "lars second password")
    assert login(hub)  # root's password is what it was


def test_ones_own_password_changes_only_with_the_current_one(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)
    path = f"/user/{ann['id']}"
    before = db_query(hub.database, "SELECT password_hash FROM users WHERE id = ?", ann["id"])
    status, body = world.call("PATCH", path, {"password": "a stolen token's pick"},
                              ann["token"])
    assert status == 422 and body["error"]["code"] == "current_password_required", body
    status, body = world.call("PATCH", path, {"password": "a stolen token's pick",
                                              "current_password": "a guess 12345"},
                              ann["token"])
    assert status == 403 and body["error"]["code"] == "wrong_password", body
    assert db_query(hub.database, "SELECT password_hash FROM users WHERE id = ?",
                    ann["id"]) == before
    assert login(hub, ann["username"], PASSWORD)
    status, body = world.call("PATCH", path, {"password": "ann's own new one",
                                              "current_password": PASSWORD}, ann["token"])
    assert status == 200, body
    assert http("GET", f"{hub.api}{path}", token=ann["token"])[0] == 401  # older tokens die
    # an administrator sets another user's password without knowing it
    world.ok("PATCH", path, {"password": "set by the admin 1"})
    assert login(hub, ann["username"], "set by the admin 1")
    assert world.ok("GET", "/refusals")["refusals"].get("wrong_password", 0) >= 1


def test_a_stolen_token_cannot_guess_the_password(start_hub: Callable[..., Hub]) -> None:
    """The current password is checked after the right to change it and the new one's
    strength (so no answer tells a right guess from a wrong one), and guesses are limited
    per user, as failed logins are per address."""
    hub = start_hub(login_failures_per_minute=3)
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)
    path = f"/user/{ann['id']}"
    for current in ("a wrong guess", PASSWORD):  # weak new password: the same answer
        status, body = world.call("PATCH", path, {"password": "short",
                                                  "current_password": current}, ann["token"])
        assert status == 422 and body["error"]["code"] == "weak_password", body
    for n in range(3):
        status, body = world.call("PATCH", path, {"password": "a strong new one",
                                                  "current_password": f"guess {n}"},
                                  ann["token"])
        assert status == 403, body
    status, body = world.call("PATCH", path, {"password": "a strong new one",
                                              "current_password": PASSWORD}, ann["token"])
    assert status == 429 and body["error"]["code"] == "too_many_failures", body
    assert login(hub, ann["username"], PASSWORD)  # unchanged


def api_key_login(hub: Hub, key: str) -> int:
    return http("POST", f"{hub.api}/token", {"api_key": key})[0]


def test_api_keys_die_with_the_password_and_expire(hub: Hub) -> None:
    world = World(hub)
    ann = world.user("A", permissions.RESEARCHER)
    token = ann["token"]
    key = world.ok("POST", "/apikey", {"description": "script"}, token)["api_key"]
    assert api_key_login(hub, key) == 200
    # changed by the user: the key made under the old password stops working
    assert http("POST", f"{hub.api}/password/change", {
        "username": ann["username"], "password": PASSWORD,
        "new_password": "ann's second one"})[0] == 200
    assert api_key_login(hub, key) == 401
    # set by an administrator: the same
    token = login(hub, ann["username"], "ann's second one")
    key = world.ok("POST", "/apikey", {"description": "script"}, token)["api_key"]
    assert api_key_login(hub, key) == 200
    world.ok("PATCH", f"/user/{ann['id']}", {"password": "reset by the admin"})
    assert api_key_login(hub, key) == 401
    # an expiry
    token = login(hub, ann["username"], "reset by the admin")
    now = datetime.now(UTC)
    for bad in ((now - timedelta(minutes=1)).isoformat(), "next tuesday",
                (now + timedelta(days=4000)).isoformat()):
        status, body = world.call("POST", "/apikey", {"expires": bad}, token)
        assert status == 422 and body["error"]["field"] == "expires", body
    soon = (now + timedelta(seconds=2)).isoformat()
    made = world.ok("POST", "/apikey", {"expires": soon}, token)
    assert made["expires"].startswith(soon[:19])
    status, body = http("POST", f"{hub.api}/token", {"api_key": made["api_key"]})
    assert status == 200 and body["expires"] <= made["expires"], body  # no longer than the key
    time.sleep(2.5)
    status, body = http("POST", f"{hub.api}/token", {"api_key": made["api_key"]})
    assert status == 401 and "expired" in body["error"]["message"], body
