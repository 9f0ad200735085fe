"""What a valid query is: scanning, parsing, evaluation and bracket layouts.

The ground floor of the runtime: it imports nothing of ours, so ``config`` (which
counts bracket layouts) and ``codec`` (which writes a parsed query as a tensor) both
build on it without importing each other. A reader who wants to know which queries
a model accepts, and what each error says, needs only this file.

Functions take the model's domain as any object with the fields ``ModelConfig`` has
(``min_terms``, ``max_terms``, ``min_operand``, ``max_operand``, ``operators``,
``brackets``): duck typing keeps this module below ``config`` in the import order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import NamedTuple, Protocol

import numpy as np

DIGITS = "0123456789"


class Domain(Protocol):
    """The part of a ModelConfig that decides which queries are valid."""

    min_terms: int
    max_terms: int
    min_operand: int
    max_operand: int
    operators: str
    brackets: bool


# Longer input is refused before any parsing work; generous for spaces.
MAX_QUERY_CHARS = 256
LONG_RANGE = 10**18  # a range above this is named by its digit count in errors
_SPACES = " \t"


class QueryError(ValueError):
    """A query the model cannot answer, with a message a person understands."""


Span = tuple[int, int]  # brackets enclosing terms first..last (0-based, inclusive)


class Expression(NamedTuple):
    terms: tuple[int, ...]
    operators: tuple[str, ...]
    brackets: tuple[Span, ...] = ()

    def tokens(self) -> list[str]:
        """The written form, token by token."""
        out: list[str] = []
        for i, term in enumerate(self.terms):
            out += ["("] * sum(1 for first, _ in self.brackets if first == i)
            out.append(str(term))
            out += [")"] * sum(1 for _, last in self.brackets if last == i)
            if i < len(self.operators):
                out.append(self.operators[i])
        return out

    def text(self) -> str:
        return "".join(self.tokens())

    @property
    def value(self) -> int:
        if not self.brackets and "*" not in self.operators and "-" not in self.operators:
            return sum(self.terms)
        return _evaluate(self.tokens())


def _evaluate(tokens: list[str], number=int):
    """Integer value with the usual precedence: brackets, then *, then + and - from the left.

    ``number`` turns a number token into its value; ``shape_values`` passes whole numpy
    columns, which the same arithmetic then evaluates for a million queries at once.
    """
    position = 0

    def operand() -> int:
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "(":
            value = expression()
            position += 1  # the matching ")"
            return value
        return number(token)

    def product() -> int:
        nonlocal position
        value = operand()
        while position < len(tokens) and tokens[position] == "*":
            position += 1
            value = value * operand()  # never in place: a value may be a column of the caller's terms
        return value

    def expression() -> int:
        nonlocal position
        value = product()
        while position < len(tokens) and tokens[position] in "+-":
            op = tokens[position]
            position += 1
            value = value + product() if op == "+" else value - product()
        return value

    return expression()


Shape = tuple[int, tuple[str, ...], tuple[Span, ...]]  # term count, operators, brackets


def group_by_shape(expressions: Sequence[Expression]) -> dict[Shape, list[int]]:
    """Row numbers of the expressions that share a shape, i.e. differ only in their terms."""
    shapes: dict[Shape, list[int]] = {}
    for row, expression in enumerate(expressions):
        shapes.setdefault((len(expression.terms), expression.operators, expression.brackets), []).append(row)
    return shapes


def values_of(expressions: Sequence[Expression]) -> np.ndarray:
    """Every expression's value, as ``Expression.value`` gives it, for many at once.

    Training draws 50,000 expressions an epoch; evaluating each through the token
    parser took longer than a tenth of the epoch, so each shape is evaluated once,
    on columns of terms (``shape_values``). int64 where every value fits, else Python ints.
    """
    parts = [
        (rows, shape_values(shape, np.array([expressions[row].terms for row in rows], dtype=np.int64)))
        for shape, rows in group_by_shape(expressions).items()
    ]
    exact = all(values.dtype != object for _, values in parts)
    out = np.empty(len(expressions), dtype=np.int64 if exact else object)
    for rows, values in parts:
        out[rows] = values
    return out


def shape_values(shape: Shape, terms: np.ndarray) -> np.ndarray:
    """The values of every query of one shape, given its terms as rows of an int64 array.

    int64 when no value can reach 2**63, else Python ints (an ``object`` array): no
    expression of n terms each at most M exceeds (M + 1) ** n in size, so this bound
    decides before anything can wrap.
    """
    n, operators, brackets = shape
    largest = int(np.abs(terms).max()) if terms.size else 0
    exact = (largest + 1) ** n < 2**63
    columns = [terms[:, i] if exact else terms[:, i].astype(object) for i in range(n)]
    tokens = Expression(tuple(range(n)), operators, brackets).tokens()  # terms written as their column
    value = _evaluate(tokens, number=lambda token: columns[int(token)])
    return np.asarray(value, dtype=np.int64 if exact else object)


def shape_text(shape: Shape) -> str:
    """The written form of a shape with ``{}`` for each term: ``"({}-{})+{}"``."""
    n, operators, brackets = shape
    return "".join("{}" if t.isdigit() else t for t in Expression((0,) * n, operators, brackets).tokens())


@cache
def bracket_layouts(terms: int) -> tuple[tuple[Span, ...], ...]:
    """Every allowed placement of brackets over ``terms`` terms: nested or disjoint pairs,
    each around two or more terms, no two around the same terms (the empty layout included)."""
    spans = [(a, b) for a in range(terms) for b in range(a + 1, terms)]

    def compatible(x: Span, y: Span) -> bool:
        disjoint = x[1] < y[0] or y[1] < x[0]
        nested = (x[0] <= y[0] and y[1] <= x[1]) or (y[0] <= x[0] and x[1] <= y[1])
        return disjoint or nested

    layouts: list[tuple[Span, ...]] = []

    def extend(chosen: tuple[Span, ...], start: int) -> None:
        layouts.append(chosen)
        for k in range(start, len(spans)):
            if all(compatible(spans[k], c) for c in chosen):
                extend(chosen + (spans[k],), k + 1)

    extend((), 0)
    return tuple(layouts)


def _example(config: Domain) -> str:
    return config.operators[0].join(str(n) for n in (3, 10, 7, 1)[: config.min_terms])


def _scan(query: str, config: Domain) -> list[tuple[str, int]]:
    """Tokens with 1-based positions, spaces dropped; refuses any symbol outside the grammar."""
    tokens = []
    for match in re.finditer(r"[0-9]+|[ \t]+|.", query, re.ASCII | re.DOTALL):
        token, pos = match.group(), match.start() + 1
        if token[0] in _SPACES:
            continue
        if token[0] in DIGITS or token in config.operators:
            tokens.append((token, pos))
        elif token in "()":
            if not config.brackets:
                raise QueryError(f"this model was not trained on brackets; got '{token}' at position {pos}")
            tokens.append((token, pos))
        elif token in "+-*/×÷^%":
            raise QueryError(f"this model supports only {' '.join(config.operators)}; got '{token}' at position {pos}")
        elif "\udc80" <= token <= "\udcff":
            raise QueryError(f"invalid UTF-8 byte at position {pos}")
        elif token.isdigit():
            raise QueryError(f"unsupported digit '{token}' at position {pos}; use ASCII digits 0-9")
        elif token in "._eE,":
            raise QueryError(f"unexpected '{token}' at position {pos}; operands are whole numbers written 0-9")
        else:
            raise QueryError(
                f"unexpected character {token!r} at position {pos}; expected a query like {_example(config)}"
            )
    if not tokens:
        raise QueryError(f"empty query; expected something like {_example(config)}")
    return tokens


def _parse_tokens(tokens: list[tuple[str, int]], config: Domain) -> Expression:
    """Recursive descent over scanned tokens; every refusal names the position."""
    terms: list[int] = []
    operators: list[str] = []
    brackets: list[Span] = []
    position = 0
    end = (None, None)

    def peek() -> tuple[str | None, int | None]:
        return tokens[position] if position < len(tokens) else end

    def operand() -> None:
        nonlocal position
        token, pos = peek()
        if token is None:
            raise QueryError(f"query ends with an operator; expected a number after it (like {_example(config)})")
        position += 1
        if token[0] in DIGITS:
            terms.append(int(token))
            return
        if token == "(":
            first = len(terms)
            sequence(depth=1)
            closing, close_pos = peek()
            if closing != ")":
                raise QueryError(f"bracket opened at position {pos} is never closed")
            position += 1
            span = (first, len(terms) - 1)
            if span[0] == span[1]:
                raise QueryError(f"brackets at position {pos} enclose a single number; they must enclose an operation")
            if span in brackets:
                raise QueryError(f"redundant brackets at position {pos}")
            brackets.append(span)
            return
        what = "a sign" if not terms else "a repeated operator"
        if token == ")":
            raise QueryError(f"expected a number at position {pos}, got ')'")
        raise QueryError(f"expected a number at position {pos}, got '{token}' ({what} is not accepted)")

    def sequence(depth: int) -> None:
        nonlocal position
        operand()
        while True:
            token, pos = peek()
            if token is None or (token == ")" and depth):
                return
            if token in config.operators:
                operators.append(token)
                position += 1
                operand()
            elif token == ")":
                raise QueryError(f"unmatched ')' at position {pos}")
            else:
                raise QueryError(f"missing operator before '{token}' at position {pos}")

    sequence(depth=0)
    return Expression(tuple(terms), tuple(operators), tuple(sorted(brackets)))


class Grammar:
    """One domain's parser; the regular expressions for the common case are compiled once."""

    def __init__(self, config: Domain) -> None:
        self.config = config
        ops = re.escape(config.operators)
        # Bracket-free queries, the common case, are validated by one regular expression.
        self._valid = re.compile(rf"[ \t]*[0-9]+(?:[ \t]*[{ops}][ \t]*[0-9]+)*[ \t]*", re.ASCII)
        self._tokens = re.compile(rf"[0-9]+|[{ops}]", re.ASCII)
        self._max_chars = getattr(config, "max_query_chars", MAX_QUERY_CHARS)  # a ModelConfig says; else 256

    def parse(self, query: str) -> Expression:
        """Parse one query or raise QueryError saying what is wrong and where."""
        config = self.config
        if not isinstance(query, str):
            raise QueryError(f"a query must be text, got {type(query).__name__}")
        if len(query) > self._max_chars:
            raise QueryError(f"query is {len(query)} characters long; at most {self._max_chars} are accepted")
        if self._valid.fullmatch(query) is not None:
            tokens = self._tokens.findall(query)
            expression = Expression(tuple(int(t) for t in tokens[0::2]), tuple(tokens[1::2]))
        else:
            expression = _parse_tokens(_scan(query, config), config)
        check_domain(expression, config)
        return expression


def check_domain(expression: Expression, config: Domain) -> None:
    """Refuse a well-formed query outside the trained domain: never a silently wrong answer."""
    terms = expression.terms
    if not config.min_terms <= len(terms) <= config.max_terms:
        allowed = (
            str(config.min_terms)
            if config.min_terms == config.max_terms
            else f"{config.min_terms} to {config.max_terms}"
        )
        raise QueryError(f"this model adds {allowed} terms; got {len(terms)}")
    for term in terms:
        if not config.min_operand <= term <= config.max_operand:
            if config.max_operand > LONG_RANGE:  # a range of a thousand nines says less than its width
                width = len(str(config.max_operand))
                raise QueryError(f"operand of {len(str(term)):,} digits is outside this model's range of up to {width:,} digits")
            raise QueryError(f"operand {term} is outside this model's range {config.min_operand}..{config.max_operand}")
