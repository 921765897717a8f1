"""What callers send, checked before anything is written: JSON bodies field by field,
and msgspec's validation errors as ``Invalid`` naming the field they are about.

Used by the entities and by job logic alike, so a job spec and a record's fields are
refused in the same words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from hub.errors import Invalid

_AT = re.compile(r" - at (?P<key>`key` in )?`\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"(?:unknown|missing required) field `([^`]+)`")


def invalid(exc: msgspec.ValidationError, code: str = "invalid_body", prefix: str = "") -> Invalid:
    """``Invalid`` naming the field a msgspec validation error is about."""
    text = str(exc)
    at = _AT.search(text)
    field = at.group("path") if at else ""
    named = _NAMED.search(text)
    if named:
        field = f"{field}.{named.group(1)}" if field else named.group(1)
    # a list's items join their list's name as its elements do: tasks[0].colour
    field = (f"{prefix}{field}" if prefix and field.startswith("[") else
             ".".join(p for p in (prefix, field) if p)) or None
    message = _AT.sub("", text)
    where = "a key of field" if at and at.group("key") else "field"
    return Invalid(code, message + (f" ({where} '{field}')" if field else ""), field=field)


def check_body(body: Any, entity: str, writable: Iterable[str], readable: Iterable[str],
               required: Iterable[str] = ()) -> dict[str, Any]:
    """Refuse anything but a mapping of writable fields, naming the first wrong one."""
    if not isinstance(body, dict):
        raise Invalid("invalid_body", f"body must be a JSON object of {entity} fields")
    writable = set(writable)
    for key in body:
        if key not in writable:
            if key in set(readable):
                raise Invalid("read_only", f"field '{key}' of {entity} cannot be set", field=key)
            raise Invalid("unknown_field", f"unknown field '{key}' for {entity} "
                          f"(writable: {', '.join(sorted(writable))})", field=key)
    for key in required:
        if key not in body:
            raise Invalid("missing_field", f"field '{key}' is required", field=key)
    return body


def expect(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str,
           *, max_length: int | None = 255, nullable: bool = False) -> Any:
    """The value of ``key`` if it has the right type; ``Invalid`` naming the field
    otherwise."""
    value = body[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise Invalid("wrong_type", f"field '{key}' must be {what}", field=key)
    if not isinstance(value, kind):
        raise Invalid("wrong_type", f"field '{key}' must be {what}, got "
                      f"{type(value).__name__}", field=key)
    if isinstance(value, str) and max_length is not None and len(value) > max_length:
        raise Invalid("too_long", f"field '{key}' is longer than {max_length} characters", field=key)
    return value


def priority_value(body: Mapping[str, Any]) -> int:
    """A record's ``priority``: an integer from 1 to 1000 (jobs and queues alike)."""
    priority: int = expect(body, "priority", int, "an integer from 1 to 1000")
    if not 1 <= priority <= 1000:
        raise Invalid("invalid_value", "field 'priority' must be from 1 to 1000",
                      field="priority")
    return priority


def name_value(body: Mapping[str, Any], key: str = "name") -> str:
    value: str = expect(body, key, str, "a string")
    value = value.strip()
    if not value:
        raise Invalid("invalid_value", f"field '{key}' must not be empty", field=key)
    return value
