"""Transfer tickets: what a serving agent accepts, and what it refuses."""

from __future__ import annotations

import os

import pytest

from protocol import tickets
from protocol.tickets import TicketRefused, TicketScope

KEY = tickets.private_key(os.urandom(32))
PUBLIC = tickets.public_key(tickets.public_key_text(KEY))
SCOPE = TicketScope(server="srv1", share="sh1", path="thefilm/a.mov", op="read", job="j1",
                    task="t1")
NOW = 1_800_000_000.0


def check(ticket: str, *, server: str = "srv1", share: str = "sh1", path: str = "thefilm/a.mov",
          op: tickets.Op = "read", now: float = NOW + 10) -> TicketScope:
    return tickets.verify(PUBLIC, ticket, server=server, share=share, path=path, op=op, now=now)


def test_a_genuine_ticket_is_accepted() -> None:
    ticket = tickets.issue(KEY, SCOPE, ttl=300, now=NOW)
    scope = check(ticket)
    assert (scope.job, scope.task, scope.exp, scope.iat) == ("j1", "t1", NOW + 300, NOW)


@pytest.mark.parametrize(("change", "why"), [
    ({"server": "srv2"}, "another server"),
    ({"share": "sh2"}, "another share"),
    ({"path": "thefilm/b.mov"}, "another path"),
    ({"path": "thefilm"}, "another path"),
    ({"path": "thefilm/a.mov/x"}, "another path"),
    ({"op": "write"}, "to read, not to write"),
    ({"now": NOW + 300 + tickets.SKEW + 1}, "expired ticket"),
    ({"now": NOW - tickets.SKEW - 5}, "issued in the future"),
])
def test_a_ticket_covers_only_its_scope(change: dict[str, object], why: str) -> None:
    ticket = tickets.issue(KEY, SCOPE, ttl=300, now=NOW)
    with pytest.raises(TicketRefused, match=why):
        check(ticket, **change)  # type: ignore[arg-type]


def test_folder_tickets_cover_what_is_below() -> None:
    folder = tickets.issue(KEY, TicketScope(**{**_fields(SCOPE), "path": "thefilm",
                                               "tree": True}), ttl=60, now=NOW)
    assert check(folder, path="thefilm/reel1/a.mov")
    assert check(folder, path="thefilm")
    with pytest.raises(TicketRefused, match="another path"):
        check(folder, path="thefilmx/a.mov")
    root = tickets.issue(KEY, TicketScope(**{**_fields(SCOPE), "path": "", "tree": True}),
                         ttl=60, now=NOW)
    assert check(root, path="anything/at/all")


def test_forged_and_malformed_tickets() -> None:
    ticket = tickets.issue(KEY, SCOPE, ttl=300, now=NOW)
    payload, signature = ticket.split(".")
    # another key's signature
    other = tickets.issue(tickets.private_key(os.urandom(32)), SCOPE, ttl=300, now=NOW)
    with pytest.raises(TicketRefused, match="forged"):
        check(other)
    # the payload changed after signing (a wider path, a later expiry)
    wider = tickets.issue(KEY, TicketScope(**{**_fields(SCOPE), "path": "", "tree": True}),
                          ttl=300, now=NOW).split(".")[0]
    with pytest.raises(TicketRefused, match="forged"):
        check(f"{wider}.{signature}", path="secret/x")
    for bad in ("", "x", "a.b.c", f"{payload}.", f"{payload}.!!!!", "." * 9000, f"{payload}"):
        with pytest.raises(TicketRefused):
            check(bad)


def test_bad_public_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        tickets.public_key("short")


def _fields(scope: TicketScope) -> dict[str, object]:
    return {f: getattr(scope, f) for f in scope.__struct_fields__}


def test_a_key_that_is_no_curve_point_refuses_every_ticket() -> None:
    # 32 bytes pass the length check at enrolment; the curve is checked with the first ticket
    ticket = tickets.issue(KEY, TicketScope(server="s", share="sh", path="a", op="read",
                                            job="j", task="t"), ttl=60)
    odd = tickets.PublicKey(b"\xff" * 32)
    with pytest.raises(TicketRefused, match="forged"):
        tickets.read(odd, ticket)


def test_checking_no_ticket_loads_no_cryptography() -> None:
    import subprocess
    import sys

    code = ("import sys; from protocol import tickets; "
            "tickets.public_key(tickets._b64(bytes(32))); "
            "print(sorted(m for m in sys.modules if m.startswith('cryptography')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
