"""Queries for training and evaluation, drawn from a config's domain and encoded by runtime.codec."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from runtime.codec import Codec, Expression
from runtime.config import ModelConfig


def sample_expressions(config: ModelConfig, count: int, rng: np.random.Generator) -> list[Expression]:
    """Uniform operands, uniform term count, uniform operators."""
    n_terms = rng.integers(config.min_terms, config.max_terms + 1, size=count)
    operands = rng.integers(config.min_operand, config.max_operand + 1, size=(count, config.max_terms))
    operators = rng.integers(0, len(config.operators), size=(count, config.max_terms - 1))
    ops = config.operators
    return [
        Expression(tuple(row[:n].tolist()), tuple(ops[i] for i in op_row[: n - 1]))
        for row, op_row, n in zip(operands, operators, n_terms)
    ]


def epoch_data(config: ModelConfig, count: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Fresh samples for one epoch, a pure function of (seed, epoch) so a resumed run sees the same data."""
    rng = np.random.default_rng([seed, epoch])
    expressions = sample_expressions(config, count, rng)
    codec = Codec(config)
    return codec.encode_expressions(expressions), codec.encode_answers([e.value for e in expressions])


def all_expressions(config: ModelConfig, chunk: int = 100_000) -> Iterator[list[Expression]]:
    """Every query of a two-term domain in order, in chunks (exhaustive evaluation)."""
    if config.min_terms != 2 or config.max_terms != 2 or len(config.operators) != 1:
        raise ValueError("exhaustive enumeration is implemented for single-operator two-term domains")
    op = (config.operators,)
    values = range(config.min_operand, config.max_operand + 1)
    batch: list[Expression] = []
    for a in values:
        for b in values:
            batch.append(Expression((a, b), op))
            if len(batch) == chunk:
                yield batch
                batch = []
    if batch:
        yield batch
