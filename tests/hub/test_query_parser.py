"""The query language's grammar: the reference's queries parse; bad ones name position and need."""

from __future__ import annotations

import pytest

from core.errors import QueryError
from hub.query import And, Comparison, Member, Or, parse
from hub.query.fields import like_pattern


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


def test_in_and_not_in_take_a_list() -> None:
    q = parse("Job where status in (running, queued)")
    assert q.where == Member("status", False, (
        Comparison("status", "=", "running", False, 10, 21),
        Comparison("status", "=", "queued", False, 10, 30)), 10)
    q = parse("Job where code NOT IN ( 'a, b' ,\"c)\",d )")
    assert isinstance(q.where, Member) and q.where.negated
    assert [(i.value, i.quoted) for i in q.where.items] == [("a, b", True), ("c)", True),
                                                            ("d", False)]
    q = parse("Job where status in (done) and (code in (x) or code=y)")
    assert isinstance(q.where, And) and isinstance(q.where.items[1], Or)
    # outside a list a comma is part of a bare value, as before
    q = parse("Job where code=a,b")
    assert isinstance(q.where, Comparison) and q.where.value == "a,b"


@pytest.mark.parametrize("text, op, value", [
    ("Job where code contains shot", "contains", "shot"),
    ("Job where code CONTAINS 'a b'", "contains", "a b"),
    ("Job where code matches *.exr", "matches", "*.exr"),
    ("Job where code not contains tmp", "not contains", "tmp"),
    ("Job where code Not Matches \"*_v?.mov\"", "not matches", "*_v?.mov"),
])
def test_text_operators(text: str, op: str, value: str) -> None:
    q = parse(text)
    assert isinstance(q.where, Comparison) and (q.where.op, q.where.value) == (op, value)


def test_a_field_may_start_like_a_keyword() -> None:
    q = parse("Job where notes=1 and index=2 and contains_x=3")
    assert isinstance(q.where, And)
    assert [c.field for c in q.where.items if isinstance(c, Comparison)] == [
        "notes", "index", "contains_x"]


@pytest.mark.parametrize("op, value, pattern", [
    ("contains", "50%", "%50!%%"),
    ("contains", "a_b", "%a!_b%"),
    ("contains", "x!y", "%x!!y%"),
    ("contains", "*?", "%*?%"),
    ("contains", "ABC", "%abc%"),
    ("matches", "*.EXR", "%.exr"),
    ("matches", "shot0?0_%", "shot0_0!_!%"),
    ("matches", "a[*]b[?]c[[]", "a*b?c["),
    ("matches", "[x]", "[x]"),
    ("not matches", "*", "%"),
])
def test_like_patterns_escape_every_wildcard(op: str, value: str, pattern: str) -> None:
    """LIKE's own wildcards in a value are plain characters; only the glob's are not."""
    assert like_pattern(Comparison("code", op, value, False, 0, 0)) == pattern


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
    ("Client where code in", 20, "expected '('"),
    ("Client where code in x", 21, "expected '('"),
    ("Client where code in (", 22, "expected a value"),
    ("Client where code in (a", 23, "expected ',' or ')'"),
    ("Client where code in (a b)", 24, "expected ',' or ')'"),
    ("Client where code in (a,,b)", 24, "expected a value"),
    ("Client where code not", 21, "after NOT"),
    ("Client where code not = 1", 22, "after NOT"),
    ("Client where code not like x", 22, "after NOT"),
    ("Client where code is x", 18, "expected an operator (=, !=, <>, <, >, <=, >=, in, not in"),
    ("Client where code contains", 26, "expected a value"),
    ("Client where code matches 'x", 26, "unterminated quoted value"),
    ("Client where code in (a) code in (b)", 25, "expected AND, OR or end"),
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
    with pytest.raises(QueryError, match="more than 256 comparisons"):
        parse("Client where code in (" + ",".join(["x"] * 300) + ")")


def test_not_a_string() -> None:
    with pytest.raises(QueryError, match="must be a string"):
        parse(123)  # type: ignore[arg-type]
