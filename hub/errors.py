"""What the hub's own logic refuses, and why: its domain errors.

Job logic, the entities, the permission rules and the token service raise these. They
say what is wrong in words a caller can act on and know nothing of HTTP: the API turns
each into its answer in one place (``hub/api/errors.py``), the importer names the entry
it is about, and the shell shows it with the API's status and code::

    HubError (core.errors)
     ├── Refusal               the hub will not do what was asked (``code``, ``message``, ``field``)
     │    ├── Malformed        what was sent cannot be used at all (a reset token that is none)
     │    ├── Unauthenticated  no valid credentials (a token expired, invalid or revoked)
     │    ├── Forbidden        a rule is missing (``rule`` names it), or a narrowed token's limit
     │    ├── NotFound         no such record, or none the caller may know of
     │    ├── NotAllowed       no such operation on this kind of record
     │    ├── Conflict         the state of a record does not allow it now
     │    ├── Invalid          a body, field or value is wrong (``field`` names it)
     │    ├── TooManyFailures  too many failures from one source: try again in ``retry_after`` s
 │    ├── BadPeer          a party the hub asked for it (an agent) failed or refused the hub
 │    └── Unreachable      a party the hub needs for it (an agent) does not answer now
     └── ShuttingDown          a part of the hub was asked for work while it stops

``code`` is the machine-readable reason (``invalid_spec``, ``not_pending``, …): the same
string the API answers with, so it is part of the API's contract.
"""

from __future__ import annotations

from core.errors import HubError


class Refusal(HubError):
    """The hub will not do what was asked. ``field``: the field of the request it is about."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, field={self.field!r})"


class Malformed(Refusal):
    """What was sent cannot be used at all (a reset token that is not one, or expired)."""


class Unauthenticated(Refusal):
    """No valid credentials: a token that expired, is not one of this hub's, or was revoked."""


class Forbidden(Refusal):
    """The caller may not do this. ``rule``: the missing rule (resource, operation, scope),
    when one would allow it; None when no rule would (a narrowed token's limit)."""

    def __init__(self, code: str, message: str, *, field: str | None = None,
                 rule: dict[str, str] | None = None) -> None:
        super().__init__(code, message, field=field)
        self.rule = rule


class NotFound(Refusal):
    """No such record; or one the caller may not know of, answered the same way."""


class NotAllowed(Refusal):
    """No such operation on this kind of record (tasks are never deleted, for instance)."""


class Conflict(Refusal):
    """The state of a record does not allow this now (a running job cannot be deleted)."""


class Invalid(Refusal):
    """A body, a field or a value is wrong; ``field`` names it when one is to blame."""


class TooManyFailures(Refusal):
    """Too many failures from one source (failed logins): try again in ``retry_after`` s."""

    def __init__(self, code: str, message: str, *, retry_after: int,
                 field: str | None = None) -> None:
        super().__init__(code, message, field=field)
        self.retry_after = retry_after


class BadPeer(Refusal):
    """A party the hub asked on the caller's behalf (the agent serving a share) answered
    with something else than its answer or refused the hub's request: not the caller's
    doing, nor worth repeating as it is."""


class Unreachable(Refusal):
    """A party the hub needs for this (the agent serving a share) is offline or does not
    answer: try again when it is back."""


class ShuttingDown(HubError):
    """A part of the hub was asked for work while it stops (a check-in after its writer
    closed)."""

