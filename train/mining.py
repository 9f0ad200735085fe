"""Mining: fresh pairs a model answers right but unsurely, replayed before they turn wrong.

Near exact on a domain too large to enumerate, a model is wrong on a pair in millions:
a check meets a handful, replay teaches those few, and every new draw finds as many
others. Answers whose weakest output step wins by a small margin are far more common
(on 1,000,000 uniform pairs the epoch-370 ten-digit model had 0 wrong but 84 with a
margin below 0.95, 14 below 0.8), and they lie where the wrong ones do: replaying
them moves the boundary the errors sit on, not single points of it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adder.config import ModelConfig
from adder.eval import suites
from adder.eval.domain import expressions_of, sampled_blocks
from adder.eval.draws import dense_carry_pairs, nine_dense_pairs, propagate_run_pairs
from adder.grammar import Expression, Shape

MINE_STREAM = 2**31 + 1  # seed stream for mined draws, apart from epochs, the probe and the checks

# Output probabilities for one shape's queries, given as rows of terms.
Probabilities = Callable[[Shape, np.ndarray], np.ndarray]


def margins(probabilities: np.ndarray) -> np.ndarray:
    """Per answer: the smallest, over its output steps, of the winning symbol's probability less
    the runner-up's. Below 0 cannot happen; near 0, one step is a coin toss."""
    top = np.partition(probabilities, -2, axis=-1)[..., -2:]
    return (top[..., 1] - top[..., 0]).min(axis=1)


def mine(
    probabilities: Probabilities,
    config: ModelConfig,
    count: int,
    seed: int,
    epoch: int,
    below: float,
    runs: int = 0,
    nines: int = 0,
) -> list[Expression]:
    """Of ``count`` queries drawn afresh for this epoch, those answered with a margin below ``below``.

    Half are uniform over the domain and, for sums of two operands, half have a
    uniformly drawn share of carrying digits (``data.dense_carry_pairs``): the wrong
    pairs a ten-digit run met were carry-dense. ``runs`` more are pairs summing to 9
    over a run with no carry into it (``data.propagate_run_pairs``), drawn after the
    rest so that the others are the same draw with or without them; ``nines`` more, drawn
    after those, have every digit 9 with probability 1/2 (``data.nine_dense_pairs``).
    Right or wrong, an unsure answer is mined.
    """
    rng = np.random.default_rng([seed, epoch, MINE_STREAM])
    dense = count // 2 if suites.applies(config) else 0
    blocks = list(sampled_blocks(config, count - dense, rng))
    if dense:
        blocks.append((suites.SUM, dense_carry_pairs(config, dense, rng)))
    if runs and suites.applies(config):
        blocks.append((suites.SUM, propagate_run_pairs(config, runs, rng)))
    if nines and suites.applies(config):
        blocks.append((suites.SUM, nine_dense_pairs(config, nines, rng)))
    found: list[Expression] = []
    for shape, terms in blocks:
        unsure = margins(probabilities(shape, terms)) < below
        found += expressions_of(shape, terms[unsure])
    return found
