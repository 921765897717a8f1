"""The hub's domain errors become HTTP answers in one place, each kind with the status it
always had, carrying its code, message, field, rule and Retry-After unchanged."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import hub.errors
from core.errors import FerryError
from hub.api.common import RUNTIME, errors
from hub.api.errors import STATUS, as_api_error, status_of
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

HUB = Path(__file__).resolve().parents[2] / "hub"

# the status each kind was answered with when the hub raised ApiError(status, …) itself
WAS = {Malformed: 400, Unauthenticated: 401, Forbidden: 403, NotFound: 404, NotAllowed: 405,
       Conflict: 409, Invalid: 422, TooManyFailures: 429,
       BadPeer: 502, Unreachable: 503}  # new with file operations (issue 19)


def refusal_kinds() -> list[type[Refusal]]:
    return [k for _, k in inspect.getmembers(hub.errors, inspect.isclass)
            if issubclass(k, Refusal) and k is not Refusal]


def test_every_kind_of_refusal_has_the_status_it_had() -> None:
    assert set(refusal_kinds()) == set(STATUS) == set(WAS)
    for kind, status in WAS.items():
        extra = {"retry_after": 1} if kind is TooManyFailures else {}
        assert status_of(kind("some_code", "some message", **extra)) == status, kind


def test_a_refusal_of_a_narrower_kind_answers_as_its_parent() -> None:
    class NotAMember(Invalid):
        pass

    assert status_of(NotAMember("not_a_member", "no")) == 422


def test_details_go_into_the_answer_as_they_are() -> None:
    rule = {"resource": "job", "operation": "edit", "scope": "own"}
    forbidden = as_api_error(Forbidden("forbidden", "missing rule: edit job (own)", rule=rule))
    assert (forbidden.status, forbidden.code, forbidden.details) == (403, "forbidden",
                                                                     {"rule": rule})
    invalid = as_api_error(Invalid("invalid_spec", "compute.items: empty",
                                   field="compute.items"))
    assert invalid.message == "compute.items: empty"
    assert invalid.details == {"field": "compute.items"}
    slow = as_api_error(TooManyFailures("too_many_failures", "wait", retry_after=7))
    assert slow.details == {"retry_after": 7}
    assert as_api_error(Conflict("job_running", "abort it first")).details == {}


@pytest.mark.parametrize(("refusal", "status", "body", "retry_after"), [
    (Invalid("not_a_member", "your organization is in no collaboration 'x'",
             field="collaboration"), 422,
     {"code": "not_a_member", "message": "your organization is in no collaboration 'x'",
      "field": "collaboration"}, None),
    (Forbidden("forbidden", "missing rule: create job (own)",
               rule={"resource": "job", "operation": "create", "scope": "own"}), 403,
     {"code": "forbidden", "message": "missing rule: create job (own)",
      "rule": {"resource": "job", "operation": "create", "scope": "own"}}, None),
    (NotFound("not_found", "no Job with id 'x'"), 404,
     {"code": "not_found", "message": "no Job with id 'x'"}, None),
    (TooManyFailures("too_many_failures", "too many failed logins", retry_after=12), 429,
     {"code": "too_many_failures", "message": "too many failed logins"}, "12"),
])
async def test_the_middleware_answers_a_refusal_with_its_status_and_body(
        refusal: Refusal, status: int, body: dict[str, object], retry_after: str | None
) -> None:
    async def handler(_request: web.Request) -> web.Response:
        raise refusal

    app = web.Application(middlewares=[errors])
    # the refusal log names the caller by its address: a hub that trusts no proxy
    app[RUNTIME] = SimpleNamespace(config=SimpleNamespace(trusted_proxies=()))  # type: ignore[assignment]
    app.router.add_get("/x", handler)
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/x")
        assert answer.status == status
        assert await answer.json() == {"error": body}
        assert answer.headers.get("Retry-After") == retry_after


def test_every_exception_of_the_hub_is_a_ferry_error() -> None:
    """One exception tree (STYLE.md): a caller catching FerryError catches the hub's."""
    outside = []
    for path in sorted(HUB.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(HUB.parent).with_suffix("").parts
        module = importlib.import_module(".".join(p for p in parts if p != "__init__"))
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, BaseException) \
                    and value.__module__ == module.__name__ and not issubclass(value, FerryError):
                outside.append(f"{module.__name__}.{name}")
    assert outside == []


def test_below_the_api_the_hub_raises_refusals_not_http_errors() -> None:
    """Only ``hub/api`` (and the clients: the Python session, the shell) build ``ApiError``:
    job logic, entities, permissions and security say what is wrong, not which status."""
    allowed = {HUB / "session.py", HUB / "shell.py", HUB / "shell_records.py"}
    found = []
    for path in sorted(HUB.rglob("*.py")):
        if path in allowed or (HUB / "api") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ApiError":
                found.append(f"{path.relative_to(HUB.parent)}:{node.lineno}")
    assert found == []

