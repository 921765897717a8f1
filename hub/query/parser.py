"""Parse a query into a small tree.

Grammar (keywords and entity names are case-insensitive)::

    query      := ENTITY [WHERE expr]
    expr       := term (OR term)*
    term       := factor (AND factor)*
    factor     := "(" expr ")" | comparison
    comparison := FIELD OP VALUE | FIELD [NOT] IN list
    list       := "(" VALUE ("," VALUE)* ")"
    FIELD      := NAME ("." NAME)*
    OP         := "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
                | [NOT] CONTAINS | [NOT] MATCHES
    VALUE      := "double quoted" | 'single quoted' | bare

A bare value runs to the next space or parenthesis (in a list, also to the
next comma), so ``user@mail.com``, ``share=projects/x`` and
``2024-01-01T10:00:00`` need no quotes. Inside quotes a backslash escapes
the next character. Every error names the position and what was expected.

``status in (running, queued)`` is parsed as a ``Member``: one ``=``
comparison per value, which the field compiles as it would each alone (its
value checks, its case rule), so a list can name nothing a single
comparison could not.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import QueryError

OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")
WORDS = ("contains", "matches")  # text operators, each may follow NOT
SHOWN = "=, !=, <>, <, >, <=, >=, in, not in, contains, matches"
MAX_QUERY_LENGTH = 8192
MAX_DEPTH = 32
MAX_COMPARISONS = 256  # values of lists included


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str  # one of OPERATORS ("<>" normalised to "!="), or a WORD, or "not " + a WORD
    value: str
    quoted: bool
    position: int  # where the field starts
    value_position: int


@dataclass(frozen=True)
class Member:
    """``FIELD in (a, b)`` (``negated``: ``not in``); each item an ``=`` comparison."""

    field: str
    negated: bool
    items: tuple[Comparison, ...]
    position: int


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Comparison | Member | And | Or


@dataclass(frozen=True)
class Query:
    entity: str
    where: Node | None
    text: str


def _is_name_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_"


def _is_name_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_-"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.comparisons = 0

    # -- helpers
    def error(self, message: str, position: int | None = None) -> QueryError:
        return QueryError(message, position=self.pos if position is None else position,
                          query=self.text)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def found(self) -> str:
        if self.pos >= len(self.text):
            return "end of query"
        end = self.pos
        while end < len(self.text) and not self.text[end].isspace() and end - self.pos < 20:
            end += 1
        return f"'{self.text[self.pos:end]}'"

    def name(self, what: str) -> tuple[str, int]:
        self.skip_space()
        start = self.pos
        if self.pos >= len(self.text) or not _is_name_start(self.text[self.pos]):
            raise self.error(f"expected {what} but found {self.found()}")
        while self.pos < len(self.text) and _is_name_char(self.text[self.pos]):
            self.pos += 1
        return self.text[start:self.pos], start

    def keyword(self, word: str) -> bool:
        """Consume ``word`` (case-insensitive) if it comes next as a whole word."""
        self.skip_space()
        end = self.pos + len(word)
        if self.text[self.pos:end].lower() != word.lower():
            return False
        if end < len(self.text) and _is_name_char(self.text[end]):
            return False
        self.pos = end
        return True

    # -- grammar
    def query(self) -> Query:
        if len(self.text) > MAX_QUERY_LENGTH:
            raise QueryError(f"query is longer than {MAX_QUERY_LENGTH} characters")
        entity, _ = self.name("an entity name (e.g. Client)")
        where: Node | None = None
        if not self.at_end():
            if not self.keyword("where"):
                raise self.error(f"expected WHERE but found {self.found()}")
            if self.at_end():
                raise self.error("expected a condition after WHERE")
            where = self.expr()
            if not self.at_end():
                raise self.error(f"expected AND, OR or end of query but found {self.found()}")
        return Query(entity, where, self.text)

    def expr(self) -> Node:
        items = [self.term()]
        while self.keyword("or"):
            items.append(self.term())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def term(self) -> Node:
        items = [self.factor()]
        while self.keyword("and"):
            items.append(self.factor())
        return items[0] if len(items) == 1 else And(tuple(items))

    def factor(self) -> Node:
        self.skip_space()
        if self.pos < len(self.text) and self.text[self.pos] == "(":
            open_at = self.pos
            self.pos += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"parentheses nested deeper than {MAX_DEPTH}")
            node = self.expr()
            self.skip_space()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise self.error(
                    f"expected ')' to close the '(' at position {open_at} but found {self.found()}"
                )
            self.pos += 1
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Comparison | Member:
        self.count()
        field, start = self.name("a field name")
        while self.pos < len(self.text) and self.text[self.pos] == ".":
            self.pos += 1
            if self.pos >= len(self.text) or not _is_name_start(self.text[self.pos]):
                raise self.error(f"expected a field name after '.' but found {self.found()}")
            part, _ = self.name("a field name")
            field = f"{field}.{part}"
        self.skip_space()
        for op in OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                break
        else:
            op = self.word_operator(field)
            if op in {"in", "not in"}:
                return self.member(field, start, op == "not in")
        value, quoted, value_at = self.value()
        return Comparison(field, "!=" if op == "<>" else op, value, quoted, start, value_at)

    def word_operator(self, field: str) -> str:
        """``in``, ``contains`` or ``matches``, each maybe after ``not``."""
        at = self.pos
        negated = self.keyword("not")
        op = next((w for w in ("in", *WORDS) if self.keyword(w)), "")
        if not op:
            self.skip_space()
            if negated:
                raise self.error(f"expected in, contains or matches after NOT but found "
                                 f"{self.found()}")
            raise self.error(f"expected an operator ({SHOWN}) after '{field}' but found "
                             f"{self.found()}", at)
        return f"not {op}" if negated else op

    def member(self, field: str, start: int, negated: bool) -> Member:
        self.skip_space()
        if self.pos >= len(self.text) or self.text[self.pos] != "(":
            raise self.error(f"expected '(' and a list of values after IN but found "
                             f"{self.found()}")
        open_at = self.pos
        self.pos += 1
        items: list[Comparison] = []
        while True:
            if items:
                self.count()
            value, quoted, value_at = self.value(in_list=True)
            items.append(Comparison(field, "=", value, quoted, start, value_at))
            self.skip_space()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith(")", self.pos):
                self.pos += 1
                return Member(field, negated, tuple(items), start)
            raise self.error(f"expected ',' or ')' to close the list opened at position "
                             f"{open_at} but found {self.found()}")

    def count(self) -> None:
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise self.error(f"more than {MAX_COMPARISONS} comparisons in one query")

    def value(self, in_list: bool = False) -> tuple[str, bool, int]:
        self.skip_space()
        start = self.pos
        if self.pos >= len(self.text):
            raise self.error("expected a value but found end of query")
        quote = self.text[self.pos]
        if quote in "\"'":
            self.pos += 1
            chars: list[str] = []
            while self.pos < len(self.text):
                ch = self.text[self.pos]
                if ch == "\\" and self.pos + 1 < len(self.text):
                    chars.append(self.text[self.pos + 1])
                    self.pos += 2
                    continue
                if ch == quote:
                    self.pos += 1
                    return "".join(chars), True, start
                chars.append(ch)
                self.pos += 1
            raise self.error(f"unterminated quoted value (expected a closing {quote})", start)
        stops = "()," if in_list else "()"
        while self.pos < len(self.text) and not self.text[self.pos].isspace() \
                and self.text[self.pos] not in stops:
            self.pos += 1
        if self.pos == start:
            raise self.error(f"expected a value but found {self.found()}")
        return self.text[start:self.pos], False, start


def parse(text: str) -> Query:
    """Parse ``text``; raises QueryError naming the position and the expectation."""
    if not isinstance(text, str):
        raise QueryError("query must be a string")
    if not text.strip():
        raise QueryError("query is empty; expected an entity name (e.g. Client)", position=0)
    return _Parser(text).query()
