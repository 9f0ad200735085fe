"""The one definition of how a query becomes a tensor and a tensor becomes a number.

Training, export and the runtime all import this module; nothing else in the
project knows the alphabet, the padding or the order of symbols.

A query ``"50+11"`` is parsed strictly into terms, then written in canonical form:
every operand zero-padded to the width of the largest operand (``"050+011"``),
right-padded to the model's input length and optionally reversed. Zero-padding
puts each digit in a fixed column, which is what lets a small LSTM learn carries.
Answers are zero-padded to the output length, optionally reversed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from runtime.config import DIGITS, PAD, ModelConfig

# Longer input is refused before any parsing work; generous for spaces.
MAX_QUERY_CHARS = 256
_SPACES = " \t"


class QueryError(ValueError):
    """A query the model cannot answer, with a message a person understands."""


class Expression(NamedTuple):
    terms: tuple[int, ...]
    operators: tuple[str, ...]

    @property
    def value(self) -> int:
        return sum(self.terms)


def _example(config: ModelConfig) -> str:
    return config.operators[0].join(str(n) for n in (3, 10, 7, 1)[: config.min_terms])


def _syntax_error(query: str, config: ModelConfig) -> QueryError:
    """Explain, with a 1-based position, why a query fails the grammar."""
    ops = config.operators
    expect_number = True
    last_number_end = None
    for match in re.finditer(r"[0-9]+|[ \t]+|.", query, re.ASCII | re.DOTALL):
        token, pos = match.group(), match.start() + 1
        if token[0] in _SPACES:
            continue
        if token[0] in DIGITS:
            if not expect_number:
                return QueryError(f"missing operator before '{token}' at position {pos}")
            expect_number, last_number_end = False, match.end()
        elif token in ops:
            if expect_number:
                what = "a sign" if last_number_end is None else "a repeated operator"
                return QueryError(f"expected a number at position {pos}, got '{token}' ({what} is not accepted)")
            expect_number = True
        elif token in "+-*/×÷^%":
            return QueryError(f"this model supports only {' '.join(ops)}; got '{token}' at position {pos}")
        elif "\udc80" <= token <= "\udcff":
            return QueryError(f"invalid UTF-8 byte at position {pos}")
        elif token.isdigit():
            return QueryError(f"unsupported digit '{token}' at position {pos}; use ASCII digits 0-9")
        elif token in "._eE,":
            return QueryError(f"unexpected '{token}' at position {pos}; operands are whole numbers written 0-9")
        else:
            return QueryError(
                f"unexpected character {token!r} at position {pos}; expected a query like {_example(config)}"
            )
    if last_number_end is None:
        return QueryError(f"empty query; expected something like {_example(config)}")
    return QueryError(f"query ends with an operator; expected a number after it (like {_example(config)})")


class Codec:
    """Parsing, encoding and decoding for one model's config; tables are built once here."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        ops = re.escape(config.operators)
        self._valid = re.compile(rf"[ \t]*[0-9]+(?:[ \t]*[{ops}][ \t]*[0-9]+)*[ \t]*", re.ASCII)
        self._tokens = re.compile(rf"[0-9]+|[{ops}]", re.ASCII)
        self._symbol_index = np.full(256, -1, dtype=np.int64)
        for index, symbol in enumerate(config.alphabet):
            self._symbol_index[ord(symbol)] = index
        self._one_hot = np.eye(len(config.alphabet), dtype=np.float32)
        self._digit_value = np.full(len(config.alphabet), -1, dtype=np.int64)
        self._digit_value[: len(DIGITS)] = np.arange(len(DIGITS))
        self._powers = 10 ** np.arange(config.output_length - 1, -1, -1, dtype=np.int64)

    def parse(self, query: str) -> Expression:
        """Parse one query or raise QueryError saying what is wrong and where."""
        config = self.config
        if not isinstance(query, str):
            raise QueryError(f"a query must be text, got {type(query).__name__}")
        if len(query) > MAX_QUERY_CHARS:
            raise QueryError(f"query is {len(query)} characters long; at most {MAX_QUERY_CHARS} are accepted")
        if self._valid.fullmatch(query) is None:
            raise _syntax_error(query, config)
        tokens = self._tokens.findall(query)
        terms = tuple(int(t) for t in tokens[0::2])
        if not config.min_terms <= len(terms) <= config.max_terms:
            allowed = (
                str(config.min_terms)
                if config.min_terms == config.max_terms
                else f"{config.min_terms} to {config.max_terms}"
            )
            raise QueryError(f"this model adds {allowed} terms; got {len(terms)}")
        for term in terms:
            if not config.min_operand <= term <= config.max_operand:
                raise QueryError(
                    f"operand {term} is outside this model's range {config.min_operand}..{config.max_operand}"
                )
        return Expression(terms, tuple(tokens[1::2]))

    def canonical_text(self, expression: Expression) -> str:
        """The exact string the model reads for an expression, one symbol per time step."""
        config = self.config
        width = config.operand_width
        parts = [f"{expression.terms[0]:0{width}d}"]
        for op, term in zip(expression.operators, expression.terms[1:]):
            parts.append(op)
            parts.append(f"{term:0{width}d}")
        text = "".join(parts).ljust(config.input_length, PAD)
        return text[::-1] if config.reverse_input else text

    def answer_text(self, value: int) -> str:
        """The exact string the model writes for an answer."""
        text = f"{value:0{self.config.output_length}d}"
        return text[::-1] if self.config.reverse_output else text

    def texts_to_indices(self, texts: Sequence[str], length: int) -> np.ndarray:
        """Map equal-length ASCII texts to alphabet indices, vectorised through one byte buffer."""
        if not texts:
            return np.zeros((0, length), dtype=np.int64)
        raw = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8).reshape(len(texts), length)
        indices = self._symbol_index[raw]
        if (indices < 0).any():
            raise ValueError("text contains a symbol outside the model's alphabet")
        return indices

    def to_model_input(self, indices: np.ndarray) -> np.ndarray:
        """Indices -> the tensor the model takes: one-hot float32 or int32 indices."""
        if self.config.encoding == "index":
            return indices.astype(np.int32)
        return self._one_hot[indices]

    def encode_expressions(self, expressions: Iterable[Expression]) -> np.ndarray:
        texts = [self.canonical_text(e) for e in expressions]
        return self.to_model_input(self.texts_to_indices(texts, self.config.input_length))

    def encode_queries(self, queries: Iterable[str]) -> np.ndarray:
        """Parse and encode queries; the first bad one raises QueryError naming its position."""
        expressions = []
        for number, query in enumerate(queries, start=1):
            try:
                expressions.append(self.parse(query))
            except QueryError as exc:
                raise QueryError(f"query {number}: {exc}") from None
        return self.encode_expressions(expressions)

    def encode_answers(self, values: Iterable[int]) -> np.ndarray:
        """Answers -> target indices, shape (n, output_length)."""
        texts = [self.answer_text(v) for v in values]
        return self.texts_to_indices(texts, self.config.output_length)

    def encode_one(self, expression: Expression) -> np.ndarray:
        """encode_expressions for a single query, without the batch path's per-call overheads."""
        raw = np.frombuffer(self.canonical_text(expression).encode("ascii"), dtype=np.uint8)
        return self.to_model_input(self._symbol_index[raw][np.newaxis])

    def decode_one(self, output: np.ndarray) -> int | None:
        """decode_answers for a single row of output; None where the model wrote a non-digit."""
        indices = output.argmax(axis=-1) if output.ndim == 2 else output
        digits = self._digit_value[indices].tolist()
        if self.config.reverse_output:
            digits.reverse()
        value = 0
        for digit in digits:
            if digit < 0:
                return None
            value = value * 10 + digit
        return value

    def decode_answers(self, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model output (probabilities or indices) -> (values, valid).

        ``valid`` is False where the model wrote a non-digit symbol; such a row has
        no answer and its value is 0. Vectorised: no Python loop over rows.
        """
        indices = output.argmax(axis=-1) if output.ndim == 3 else output
        if self.config.reverse_output:
            indices = indices[:, ::-1]
        digits = self._digit_value[indices]
        valid = (digits >= 0).all(axis=1)
        values = np.where(valid, (np.maximum(digits, 0) * self._powers).sum(axis=1), 0)
        return values, valid
