"""The one place where the hub's domain errors become HTTP answers.

Each kind of :class:`hub.errors.Refusal` has one status; its code, message, field, rule
and ``Retry-After`` go into the answer as they are (``{"error": {"code", "message",
"field"?, "rule"?}}``). Nothing below ``hub/api`` knows these numbers.
"""

from __future__ import annotations

from typing import Any

from core.errors import ApiError
from hub.errors import (
    BadPeer,
    Conflict,
    Forbidden,
    Invalid,
    Malformed,
    NotAllowed,
    NotFound,
    Refusal,
    TooManyFailures,
    Unauthenticated,
    Unreachable,
)

STATUS: dict[type[Refusal], int] = {
    Malformed: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    NotAllowed: 405,
    Conflict: 409,
    Invalid: 422,
    TooManyFailures: 429,
    BadPeer: 502,
    Unreachable: 503,
}


def status_of(refusal: Refusal) -> int:
    """The HTTP status of a refusal: that of its kind (a subclass answers as its parent)."""
    for kind in type(refusal).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500  # a Refusal of no kind: the hub's fault, not the caller's


def as_api_error(refusal: Refusal) -> ApiError:
    """The API's answer to ``refusal``: status, code, message and the details it has."""
    details: dict[str, Any] = {}
    if refusal.field is not None:
        details["field"] = refusal.field
    if isinstance(refusal, Forbidden) and refusal.rule is not None:
        details["rule"] = refusal.rule
    if isinstance(refusal, TooManyFailures):
        details["retry_after"] = refusal.retry_after
    return ApiError(status_of(refusal), refusal.code, refusal.message, details)
