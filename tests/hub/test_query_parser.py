"""The query language's grammar: the reference's queries parse; bad ones name position and need."""

from __future__ import annotations

import pytest

from core.errors import QueryError
from hub.query import And, Comparison, Or, parse


@pytest.mark.parametrize("text, entity", [
    ("Client", "Client"),
    ("client", "client"),
    ("  Job  ", "Job"),
])
def test_entity_alone(text: str, entity: str) -> None:
    query = parse(text)
    assert query.entity == entity
    assert query.where is None


def test_reference_queries() -> None:
    q = parse('Job where code="x and y.png"')
    assert q.where == Comparison("code", "=", "x and y.png", True, 10, 15)

    q = parse("Job where user=user@mail.com")
    assert isinstance(q.where, Comparison) and q.where.value == "user@mail.com"

    q = parse('Job where destination="stockholm"')
    assert isinstance(q.where, Comparison) and q.where.value == "stockholm" and q.where.quoted

    q = parse("task WHERE job.id=5a7325f8b7ef72f5f9d74bf4 AND status<>executing")
    assert isinstance(q.where, And)
    first, second = q.where.items
    assert isinstance(first, Comparison) and first.field == "job.id"
    assert isinstance(second, Comparison) and (second.op, second.value) == ("!=", "executing")


@pytest.mark.parametrize("op", ["=", "!=", "<>", "<", ">", "<=", ">="])
def test_every_operator(op: str) -> None:
    q = parse(f"Client where benchmark{op}2.5")
    assert isinstance(q.where, Comparison)
    assert q.where.op == ("!=" if op == "<>" else op)
    assert q.where.value == "2.5"


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    q = parse("Client where a=1 or b=2 and c=3")
    assert isinstance(q.where, Or)
    assert isinstance(q.where.items[1], And)
    q = parse("Client where (a=1 OR b=2) AND c=3")
    assert isinstance(q.where, And)
    assert isinstance(q.where.items[0], Or)


def test_keywords_any_case_and_spacing() -> None:
    q = parse("Client WhErE type = 1   and   status != offline")
    assert isinstance(q.where, And)


def test_quotes_and_escapes() -> None:
    q = parse(r"Client where description='it\'s \"here\"'")
    assert isinstance(q.where, Comparison)
    assert q.where.value == "it's \"here\""


def test_keyword_inside_quotes_is_text() -> None:
    q = parse('Client where code="a OR b"')
    assert isinstance(q.where, Comparison) and q.where.value == "a OR b"


def test_bare_value_stops_at_parenthesis() -> None:
    q = parse("Client where (code=abc)")
    assert isinstance(q.where, Comparison) and q.where.value == "abc"


@pytest.mark.parametrize("text, position, needle", [
    ("", 0, "empty"),
    ("   ", 0, "empty"),
    ("9Client", 0, "expected an entity name"),
    ("Client x", 7, "expected WHERE"),
    ("Client where", 12, "expected a condition"),
    ("Client where type", 17, "expected an operator"),
    ("Client where type ~ 1", 18, "expected an operator"),
    ("Client where type=", 18, "expected a value"),
    ('Client where code="abc', 18, "unterminated quoted value"),
    ("Client where (type=1", 20, "expected ')'"),
    ("Client where type=1)", 19, "expected AND, OR or end"),
    ("Client where type=1 type=2", 20, "expected AND, OR or end"),
    ("Client where type=1 AND", 23, "expected a field name"),
    ("Client where job.=1", 17, "expected a field name after '.'"),
    ("Client where =1", 13, "expected a field name"),
])
def test_errors_name_position_and_expectation(text: str, position: int, needle: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(text)
    assert info.value.position == position
    assert needle in str(info.value)


def test_error_message_points_at_the_spot() -> None:
    with pytest.raises(QueryError) as info:
        parse("Client where type")
    lines = str(info.value).splitlines()
    assert lines[1].strip() == "Client where type"
    assert lines[2].index("^") - lines[1].index("C") == 17


def test_limits_guard_against_abuse() -> None:
    with pytest.raises(QueryError, match="longer than"):
        parse("Client where code=" + "x" * 9000)
    with pytest.raises(QueryError, match="nested deeper"):
        parse("Client where " + "(" * 40 + "a=1" + ")" * 40)


def test_not_a_string() -> None:
    with pytest.raises(QueryError, match="must be a string"):
        parse(123)  # type: ignore[arg-type]
