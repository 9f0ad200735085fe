"""Fixed verification suites for a two-term sum whose domain is too large to enumerate.

Ten-digit operands make 10^20 queries: no check walks them all. What stands in for
the exhaustive check is a set of fixed suites, each a different way to be wrong:
AdderBoard's 10,010 cases (the field's benchmark), a large uniform sample, every
carry chain by length and position, every pair of repdigit operands, and every pair
of operands with at most two nonzero digits. A model is called exact on such a domain
only with 0 wrong on all of them; the training generator never decides it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import combinations, product

import numpy as np

from adder.config import ModelConfig
from adder.eval.draws import nine_dense_pairs, propagate_run_pairs
from adder.eval.evaluate import EXHAUSTIVE_LIMIT, Evaluation, by_blocks, tally
from adder.grammar import Shape

ADDERBOARD_SEED = 2025
ADDERBOARD_RANDOM = 10_000
ADDERBOARD_LARGEST = 9_999_999_999
ADDERBOARD_EDGES = (
    (0, 0),
    (0, 1),
    (9_999_999_999, 0),
    (9_999_999_999, 1),
    (9_999_999_999, 9_999_999_999),
    (5_000_000_000, 5_000_000_000),
    (1_111_111_111, 8_888_888_889),
    (1_234_567_890, 9_876_543_210),
    (9_999_999_999, 9_999_999_999),
    (1, 9_999_999_999),
)
UNIFORM_SIZE = 10_000_000
UNIFORM_SEED = 2026  # not AdderBoard's
FRESH_SEEDS = 1_000_000  # a run's fresh draws: FRESH_SEEDS * (run seed + 1) + epoch (suites.fresh_seed)
PADDED_VARIANTS = 4  # carry chains with random non-carrying digits around them, per pattern
CHUNK = 100_000
RUNS_STREAM = 2**31 + 2  # seed stream of the propagate runs a verdict draws, apart from its uniform pairs
NINES_STREAM = 2**31 + 3  # of the nine-dense pairs a verdict draws
FAMILIES = {  # drawn families a verdict adds beside its uniform pairs: seed stream, how drawn, what
    "runs": (RUNS_STREAM, propagate_run_pairs, "pairs summing to 9 over a run with no carry into it"),
    "nines": (NINES_STREAM, nine_dense_pairs, "pairs whose every digit is 9 with probability 1/2"),
}
RUNS_PER_FURTHER = 10  # a further check's pairs of the fresh draw per propagate-run pair
FURTHER_STEP = CHUNK * RUNS_PER_FURTHER  # a further check that a later stage continues: whole blocks of both
SUM: Shape = (2, ("+",), ())  # the one shape the suites hold


def judged_by_suites(config: ModelConfig) -> bool:
    """Whether the fixed suites, not every query, judge this domain: too large to enumerate, and a sum."""
    return config.domain_size > EXHAUSTIVE_LIMIT and applies(config)


def applies(config: ModelConfig) -> bool:
    """The suites describe sums of two operands from 0 up."""
    return config.min_terms == config.max_terms == 2 and config.operators == "+" and config.min_operand == 0


def adderboard_pairs() -> np.ndarray:
    """AdderBoard's cases, in its order: 10 edge cases, then 10,000 pairs from random.Random(2025)."""
    rng = random.Random(ADDERBOARD_SEED)
    drawn = [(rng.randint(0, ADDERBOARD_LARGEST), rng.randint(0, ADDERBOARD_LARGEST)) for _ in range(ADDERBOARD_RANDOM)]
    return np.array(list(ADDERBOARD_EDGES) + drawn, dtype=np.int64)


def carry_chain_pairs(width: int, seed: int = 0, padded: int = PADDED_VARIANTS) -> np.ndarray:
    """Pairs whose sum carries through exactly k digits from digit s, for every k and s.

    The carry starts at digit s (a digit pair summing to 10 or more: all 45 of them),
    passes through the k - 1 digits above it (pairs summing to exactly 9, one pattern
    per digit 0..9 of the first operand), and stops. Each pattern comes once with
    every other digit 0 (``999..9 + 1``, shifted), then ``padded`` times with random
    digits around it that neither carry into the chain nor extend it.
    """
    generate = [(x, y) for x, y in product(range(10), repeat=2) if x + y >= 10]
    rng = np.random.default_rng([seed, width])
    rows = []
    for length in range(1, width + 1):
        for start in range(width - length + 1):
            for (gx, gy), p in product(generate, range(10)):
                a = np.zeros((1 + padded, width), dtype=np.int64)  # digit columns, units first
                b = np.zeros_like(a)
                if padded:  # below the chain: no carry in; above it: no carry on (pairs summing to 8 or less)
                    x = rng.integers(0, 9, size=(padded, width))
                    a[1:], b[1:] = x, (rng.random((padded, width)) * (9 - x)).astype(np.int64)
                a[:, start], b[:, start] = gx, gy
                a[:, start + 1 : start + length], b[:, start + 1 : start + length] = p, 9 - p
                rows.append(np.stack([a, b], axis=1))
    digits = np.concatenate(rows)  # (pairs, 2, width)
    return np.unique(digits @ (10 ** np.arange(width, dtype=np.int64)), axis=0)


def repdigit_pairs(width: int) -> np.ndarray:
    """Every pair of operands that are each one digit repeated (0, 7, 77, ..., 9999999999)."""
    operands = [0] + [int(str(d) * n) for d in range(1, 10) for n in range(1, width + 1)]
    return np.array(list(product(operands, repeat=2)), dtype=np.int64)


def sparse_operands(width: int) -> np.ndarray:
    """Every operand of ``width`` digits with at most two nonzero digits."""
    found = [0]
    for position in range(width):
        found += [d * 10**position for d in range(1, 10)]
    for low, high in combinations(range(width), 2):
        found += [d * 10**low + e * 10**high for d, e in product(range(1, 10), repeat=2)]
    return np.array(found, dtype=np.int64)


def sparse_blocks(width: int) -> Iterator[np.ndarray]:
    """Every pair of sparse operands (13,957,696 at ten digits), in blocks."""
    operands = sparse_operands(width)
    per_block = max(1, CHUNK // len(operands))
    for start in range(0, len(operands), per_block):
        first = operands[start : start + per_block]
        yield np.stack([np.repeat(first, len(operands)), np.tile(operands, len(first))], axis=1)


def uniform_blocks(config: ModelConfig, size: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    for start in range(0, size, CHUNK):
        yield rng.integers(0, config.max_operand + 1, size=(min(CHUNK, size - start), 2))


def in_range(config: ModelConfig, pairs: np.ndarray) -> np.ndarray:
    return pairs[(pairs <= config.max_operand).all(axis=1)]


def chunks(pairs: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(pairs), CHUNK):
        yield pairs[start : start + CHUNK]


def suite_blocks(
    config: ModelConfig, uniform: int = UNIFORM_SIZE, seed: int = UNIFORM_SEED
) -> dict[str, tuple[int, Iterator]]:
    """Each suite's name, size and (shape, terms) blocks. AdderBoard's only for its own domain."""
    if not applies(config):
        raise ValueError(f"the verification suites are for two terms joined by '+', not {config.describe()}")
    width = config.operand_width
    found: dict[str, tuple[int, Iterator]] = {}

    def add(name: str, size: int, blocks) -> None:
        found[name] = (size, ((SUM, block) for block in blocks))

    if config.max_operand == ADDERBOARD_LARGEST:
        add("AdderBoard (10 edge cases + 10,000 from random.Random(2025))", 10_010, chunks(adderboard_pairs()))
    if uniform:
        add(f"uniform pairs (numpy seed {seed})", uniform, uniform_blocks(config, uniform, seed))
    chains = in_range(config, carry_chain_pairs(width))
    add("carry chains (every length and start)", len(chains), chunks(chains))
    repeated = in_range(config, repdigit_pairs(width))
    add("repdigit pairs", len(repeated), chunks(repeated))
    sparse = sparse_operands(width)
    sparse = sparse[sparse <= config.max_operand]
    if len(sparse) == len(sparse_operands(width)):
        add("at most two nonzero digits each", len(sparse) ** 2, sparse_blocks(width))
    else:
        pairs = np.array(list(product(sparse.tolist(), repeat=2)), dtype=np.int64)
        add("at most two nonzero digits each", len(pairs), chunks(pairs))
    return found


def evaluate_suites(
    predict, config: ModelConfig, uniform: int = UNIFORM_SIZE, seed: int = UNIFORM_SEED, progress=None
) -> dict[str, Evaluation]:
    """Each suite's evaluation, in order; ``progress(name)`` gives a progress callback per suite."""
    predict = by_blocks(predict)
    return {
        name: tally(predict, config, "every case", size, blocks, progress(name) if progress else None)
        for name, (size, blocks) in suite_blocks(config, uniform, seed).items()
    }


def fresh_seed(run_seed: int, epoch: int) -> int:
    """The seed of the uniform pairs a run draws afresh after ``epoch``: never the fixed
    suite's 2026, nor a small seed such as ``adder-eval --uniform-seed 7`` would use."""
    return FRESH_SEEDS * (run_seed + 1) + epoch


def confirmed(
    result: Evaluation, predict, config: ModelConfig, seed: int, size: int | None = None, skip: int = 0
) -> Evaluation:
    """The suites' ``result``, with ``size`` uniform pairs drawn under ``seed`` added to it as one more group.

    A run replays what the fixed suites find wrong, so by the time they are clean it has
    been taught some of their cases: the fixed uniform suite's 0 that ended the first
    ten-digit run came with 5 wrong of 10,000,000 pairs under another seed. Pairs drawn
    for this check alone, which no epoch has replayed, are the held-out half of the verdict.
    """
    size = UNIFORM_SIZE if size is None else size
    if skip % CHUNK:
        raise ValueError(f"skip must be whole blocks of {CHUNK:,} pairs, got {skip:,}")
    drawn = uniform_blocks(config, skip + size, seed)
    blocks = ((SUM, block) for i, block in enumerate(drawn) if i >= skip // CHUNK)
    fresh = tally(by_blocks(predict), config, "every case", size, blocks)
    group = f"uniform pairs drawn afresh (numpy seed {seed})"
    return with_group(result, group, fresh, skip, first=group, then="pairs of that draw")


def confirmed_drawn(
    result: Evaluation, predict, config: ModelConfig, seed: int, size: int, skip: int = 0, family: str = "runs"
) -> Evaluation:
    """The ``result``, with ``size`` pairs of a drawn ``family`` (``FAMILIES``) drawn under
    ``seed``, added as one more group; with ``skip``, the same draw continued past its first
    ``skip`` pairs."""
    if skip % CHUNK:
        raise ValueError(f"skip must be whole blocks of {CHUNK:,} pairs, got {skip:,}")
    stream, draw, what = FAMILIES[family]
    rng = np.random.default_rng([seed, stream])
    for _ in range(skip // CHUNK):  # drawn in the same blocks as the first group, so the stream goes on alike
        draw(config, CHUNK, rng)
    blocks = ((SUM, draw(config, min(CHUNK, size - start), rng)) for start in range(0, size, CHUNK))
    drawn = tally(by_blocks(predict), config, "every case", size, blocks)
    return with_group(result, f"{what} (numpy seed {seed})", drawn, skip, first=what, then=what)


def with_group(result: Evaluation, group: str, drawn: Evaluation, skip: int, first: str, then: str) -> Evaluation:
    """``result`` with ``drawn`` added as ``group``; where ``skip`` pairs of the same draw came
    before it (another group), the group names its pairs' place in the draw."""
    if skip:
        result.add_group(f"{group}, pairs {skip + 1:,}-{skip + drawn.total:,}", drawn)
        result.method += f", plus the next {drawn.total:,} {then}"
    else:
        result.add_group(group, drawn)
        result.method += f", plus {drawn.total:,} {first}"
    return result


def combined(results: dict[str, Evaluation]) -> Evaluation:
    """All suites as one evaluation (method "suites ..."), one group per suite: exact only with
    0 wrong on each."""
    total = Evaluation("suites")
    for name, result in results.items():
        total.add_group(name, result)
    total.method = f"suites of {total.total:,} fixed cases"
    return total
