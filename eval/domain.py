"""A config's domain as numpy blocks: every query in a fixed order, or drawn uniformly over them.

The domain is a union of shapes (term count, operators, bracket layout); within a
shape, queries differ only in their terms. Enumeration and uniform sampling work
shape by shape on numpy arrays of terms, so a 24-million-query domain is walked
without building a Python object per query.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product

import numpy as np

from adder.config import ModelConfig
from adder.grammar import Expression, Shape, bracket_layouts


def domain_shapes(config: ModelConfig) -> list[Shape]:
    """Every shape of the domain in a fixed order: term count, then operators, then bracket layout."""
    shapes = []
    for n in range(config.min_terms, config.max_terms + 1):
        layouts = bracket_layouts(n) if config.brackets else ((),)
        for ops in product(config.operators, repeat=n - 1):
            shapes += [(n, ops, brackets) for brackets in layouts]
    return shapes


def shape_size(config: ModelConfig, shape: Shape) -> int:
    return (config.max_operand - config.min_operand + 1) ** shape[0]


def shape_terms(config: ModelConfig, shape: Shape, start: int, stop: int) -> np.ndarray:
    """Queries ``start..stop-1`` of a shape in lexicographic order of their terms, as rows of terms."""
    span = config.max_operand - config.min_operand + 1
    index = np.arange(start, stop, dtype=np.int64)
    terms = np.empty((len(index), shape[0]), dtype=np.int64)
    for column in range(shape[0] - 1, -1, -1):
        index, digit = np.divmod(index, span)
        terms[:, column] = digit + config.min_operand
    return terms


def domain_blocks(config: ModelConfig, chunk: int = 100_000) -> Iterator[tuple[Shape, np.ndarray]]:
    """Every query of the domain, as (shape, terms) blocks of at most ``chunk`` rows."""
    for shape in domain_shapes(config):
        size = shape_size(config, shape)
        for start in range(0, size, chunk):
            yield shape, shape_terms(config, shape, start, min(size, start + chunk))


def sampled_blocks(config: ModelConfig, count: int, rng: np.random.Generator, chunk: int = 100_000):
    """``count`` queries drawn uniformly over the domain's queries (not over term counts or shapes).

    Each shape is drawn in proportion to how many queries it holds, so the sample's
    error rate estimates the whole domain's.
    """
    shapes = domain_shapes(config)
    sizes = np.array([shape_size(config, s) for s in shapes], dtype=np.float64)
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        picks = np.bincount(rng.choice(len(shapes), size=n, p=sizes / sizes.sum()), minlength=len(shapes))
        for shape, k in zip(shapes, picks.tolist()):
            if k:
                yield shape, rng.integers(config.min_operand, config.max_operand + 1, size=(k, shape[0]))


def expressions_of(shape: Shape, terms: np.ndarray) -> list[Expression]:
    n, operators, brackets = shape
    return [Expression(tuple(row), operators, brackets) for row in terms.tolist()]


def all_expressions(config: ModelConfig, chunk: int = 100_000) -> Iterator[list[Expression]]:
    """Every query of the domain in a fixed order, in chunks (small domains: tests, parity)."""
    batch: list[Expression] = []
    for shape, terms in domain_blocks(config, chunk):
        batch += expressions_of(shape, terms)
        while len(batch) >= chunk:
            yield batch[:chunk]
            batch = batch[chunk:]
    if batch:
        yield batch
