"""The aligned-pairs layout: a two-term ``+`` query as one digit pair per step, lowest first.

``"123+45"`` is read as the pairs (3, 5), (2, 4), (1, 0) and a last (0, 0), each step a
20-wide one-hot (a's digit, then b's); the model writes one answer digit per step, the
last step's being the final carry: ``8, 6, 1, 0`` is 168. The query's syntax is the same as
for every model (``adder.grammar``); only what the model reads differs, so the layout is part
of the model's config (``ModelConfig.layout``) like its encoding.

A model of this layout reads any number of steps (its ONNX graph's step dimension is free):
a batch, or a single query, is run for as many steps as its longest query needs (at most
``input_length``). Answers are Python ints: a thousand-digit sum does not fit int64.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from .codec import Codec
from .config import ModelConfig
from .grammar import DIGITS, Expression, Grammar, QueryError

STEPS_DIM = "steps"  # the name of a pairs model's free step dimension in its ONNX graph
PAIR_FEATURES = 2 * len(DIGITS)


class PairsCodec:
    """Parsing, encoding and decoding for a pairs-layout model: Codec's interface, another layout.

    A query's text (``canonical_text``) interleaves the pairs' digits, ``a0 b0 a1 b1 ...``,
    two symbols a step, so a step's one-hot is its two digits' one-hots side by side.
    """

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.parse = Grammar(config).parse
        self.answer_dtype = object
        self.width = config.operand_width
        self.steps = config.input_length
        eye = np.eye(len(DIGITS), dtype=np.float32)
        self._one_hot = eye
        self._digit_bytes = [b""] * 256
        for digit in range(len(DIGITS)):
            self._digit_bytes[ord(DIGITS[digit])] = eye[digit].tobytes()
        self._plain_query = re.compile(rf"([0-9]{{1,{self.width}}})\+([0-9]{{1,{self.width}}})", re.ASCII).fullmatch

    # -- one query ------------------------------------------------------------------------
    def canonical_text(self, expression: Expression) -> str:
        """The pairs' digits interleaved, lowest first, over every step of the model."""
        return _interleaved(*map(str, expression.terms), self.steps)

    def plain_text(self, query: str) -> str | None:
        """canonical_text(parse(query)) for a query written like ``"50+11"``; None for anything else."""
        match = self._plain_query(query) if type(query) is str else None
        if match is None:
            return None
        return _interleaved(*match.groups(), self.steps)

    def text_bytes(self, text: str) -> bytes:
        rows = self._digit_bytes
        return b"".join([rows[symbol] for symbol in text.encode("ascii")])

    def encode_one(self, expression: Expression) -> np.ndarray:
        data = self.text_bytes(self.canonical_text(expression))
        return np.frombuffer(data, dtype=np.float32).reshape(1, self.steps, PAIR_FEATURES)

    def decode_one(self, output: np.ndarray) -> int | None:
        """The answer from one row of output (steps, symbols); None where a step wrote no digit."""
        indices = output.argmax(axis=-1)
        if (indices >= len(DIGITS)).any():
            return None
        return int("".join(DIGITS[i] for i in indices[::-1].tolist()))

    # -- many queries ---------------------------------------------------------------------
    def encode_batch(self, queries: Sequence[str]) -> tuple[np.ndarray, list[QueryError | None]]:
        """(digits, errors): each query's interleaved digits as a row (zeros for a bad query), rows
        as wide as the batch's longest query needs, so ten-digit queries are not padded to a thousand."""
        errors: list[QueryError | None] = [None] * len(queries)
        operands: list[tuple[int, str, str]] = []
        for row, query in enumerate(queries):
            match = self._plain_query(query) if type(query) is str else None
            if match is not None:
                operands.append((row, *match.groups()))
                continue
            try:
                operands.append((row, *map(str, self.parse(query).terms)))
            except QueryError as exc:
                errors[row] = exc
        steps = max((max(len(a), len(b)) for _, a, b in operands), default=0) + 1
        rows = np.zeros((len(queries), 2 * steps), dtype=np.intp)
        if operands:
            texts = "".join(_interleaved(a, b, steps) for _, a, b in operands)
            raw = np.frombuffer(texts.encode("ascii"), dtype=np.uint8).reshape(len(operands), 2 * steps)
            rows[[row for row, _, _ in operands]] = raw - ord("0")
        return rows, errors

    def encode_expressions(self, expressions: Iterable[Expression]) -> np.ndarray:
        texts = [self.canonical_text(expression) for expression in expressions]
        if not texts:
            return np.zeros((0, self.steps, PAIR_FEATURES), dtype=np.float32)
        raw = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8).reshape(len(texts), -1)
        return self.to_model_input(raw.astype(np.intp) - ord("0"), trim=False)

    def to_model_input(self, digits: np.ndarray, trim: bool = True) -> np.ndarray:
        """Interleaved digit rows -> one-hot pairs (n, steps, 20); with ``trim``, only as many
        steps as the longest row needs (its last nonzero pair and one more, for the carry)."""
        steps = digits.shape[1] // 2
        if trim and len(digits):
            used = np.flatnonzero(digits.reshape(len(digits), steps, 2).any(axis=(0, 2)))
            steps = min(steps, int(used[-1]) + 2 if len(used) else 1)
        pairs = digits[:, : 2 * steps]
        return np.take(self._one_hot, pairs, axis=0).reshape(len(digits), steps, PAIR_FEATURES)

    def encode_answers(self, values: Iterable[int], steps: int | None = None) -> np.ndarray:
        """Answers -> target digits (n, steps), lowest first."""
        steps = steps or self.steps
        texts = [format(int(value), f"0{steps}d")[::-1] for value in values]
        if any(len(text) != steps for text in texts):
            raise ValueError("an answer does not fit the model's output length")
        if not texts:
            return np.zeros((0, steps), dtype=np.int64)
        raw = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8).reshape(len(texts), steps)
        return raw.astype(np.int64) - ord("0")

    def decode_answers(self, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model output (n, steps, symbols) or indices (n, steps) -> (Python int values, valid)."""
        indices = output.argmax(axis=-1) if output.ndim == 3 else output
        valid = (indices < len(DIGITS)).all(axis=1)
        values = np.zeros(len(indices), dtype=object)
        if len(indices):
            text = (np.where(indices < len(DIGITS), indices, 0)[:, ::-1] + ord("0")).astype(np.uint8)
            for row, line in enumerate(_rows(text)):
                values[row] = int(line) if valid[row] else 0
        return values, valid


def _interleaved(a: str, b: str, steps: int) -> str:
    """Two operands' digits side by side, lowest first, zero-padded to ``steps`` pairs."""
    pairs = [""] * (2 * steps)
    pairs[0::2], pairs[1::2] = a.zfill(steps)[::-1], b.zfill(steps)[::-1]
    return "".join(pairs)


def _rows(text: np.ndarray) -> list[str]:
    whole, width = text.tobytes().decode("ascii"), text.shape[1]
    return [whole[start : start + width] for start in range(0, len(whole), width)]


def codec_for(config: ModelConfig) -> Codec | PairsCodec:
    """The codec of a model's layout."""
    return PairsCodec(config) if config.layout == "pairs" else Codec(config)


def signature(config: ModelConfig) -> tuple[list, list]:
    """The input and output shapes (after the batch) a pairs model's graph must have."""
    return [STEPS_DIM, PAIR_FEATURES], [STEPS_DIM, len(config.alphabet)]
