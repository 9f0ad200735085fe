"""Queries for training and evaluation, drawn from a config's domain and encoded by adder.codec."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from itertools import product

import numpy as np

from adder.codec import Codec
from adder.grammar import Expression, bracket_layouts, values_of
from adder.config import ModelConfig


def sample_expressions(config: ModelConfig, count: int, rng: np.random.Generator) -> list[Expression]:
    """Uniform term count, operands, operators and bracket layout."""
    n_terms = rng.integers(config.min_terms, config.max_terms + 1, size=count)
    operands = rng.integers(config.min_operand, config.max_operand + 1, size=(count, config.max_terms))
    operators = rng.integers(0, len(config.operators), size=(count, config.max_terms - 1))
    layout_draws = rng.random(count)
    ops = config.operators
    expressions = []
    for row, op_row, n, draw in zip(operands.tolist(), operators.tolist(), n_terms.tolist(), layout_draws.tolist()):
        brackets = ()
        if config.brackets:
            layouts = bracket_layouts(n)
            brackets = layouts[int(draw * len(layouts))]
        expressions.append(Expression(tuple(row[:n]), tuple(ops[i] for i in op_row[: n - 1]), brackets))
    return expressions


def epoch_data(
    config: ModelConfig, count: int, seed: int, epoch: int, max_terms: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fresh samples for one epoch, a pure function of its arguments so a resumed run sees the same data.

    ``max_terms`` narrows the grammar for a curriculum; the encoding is always the full config's.
    """
    rng = np.random.default_rng([seed, epoch])
    drawn_from = config if max_terms is None else replace(config, max_terms=max_terms)
    expressions = sample_expressions(drawn_from, count, rng)
    codec = Codec(config)
    return codec.encode_expressions(expressions), codec.encode_answers(values_of(expressions))


def all_expressions(config: ModelConfig, chunk: int = 100_000) -> Iterator[list[Expression]]:
    """Every query of the domain in a fixed order, in chunks (exhaustive evaluation)."""
    values = range(config.min_operand, config.max_operand + 1)
    batch: list[Expression] = []
    for n in range(config.min_terms, config.max_terms + 1):
        layouts = bracket_layouts(n) if config.brackets else ((),)
        for terms in product(values, repeat=n):
            for ops in product(config.operators, repeat=n - 1):
                for brackets in layouts:
                    batch.append(Expression(terms, ops, brackets))
                    if len(batch) == chunk:
                        yield batch
                        batch = []
    if batch:
        yield batch
