"""Operands and queries drawn from a domain's families: uniform, small, large, sparse, carry chains,
runs of 9s, nine-dense pairs. Training draws its data from them and verdicts draw their checks."""

from __future__ import annotations

import numpy as np

from adder.config import ModelConfig
from adder.grammar import Expression, bracket_layouts


def draw_operands(
    config: ModelConfig,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    small_share: float,
    large_share: float = 0.0,
    carry_share: float = 0.0,
    sparse_share: float = 0.0,
):
    """Uniform operands, except that a ``small_share`` of them have a uniformly drawn digit count,
    a ``large_share`` are the domain's largest operand, a ``sparse_share`` have many zero
    digits (``sparse_operands``), and a ``carry_share`` of rows have their first two
    operands carry through a long chain of digits (``carry_pairs``).

    Uniform draws over 0..99 give a single-digit operand one time in ten and three
    of them one time in a thousand, and an arith model trained on such draws was wrong on
    1.1% of those (ten times its overall rate). Drawing the width first serves them.
    The other end starves too: ``99+99+99`` (in six bracket layouts) is arith's largest
    answer, drawn about once in 10^6 three-term queries, and the one query a 44/44
    model still had wrong after 450 epochs. Each share draws nothing when it is 0, so
    a recipe without it sees the same data as before it existed.
    """
    operands = rng.integers(config.min_operand, config.max_operand + 1, size=shape)
    if small_share > 0:
        width = rng.integers(1, config.operand_width + 1, size=shape)
        low = np.maximum(np.where(width == 1, 0, 10 ** (width - 1)), config.min_operand)
        high = np.minimum(10**width - 1, config.max_operand)
        narrow = low + (rng.random(shape) * (high - low + 1)).astype(np.int64)
        use = (rng.random(shape) < small_share) & (low <= high)
        operands = np.where(use, narrow, operands)
    if large_share > 0:
        operands = np.where(rng.random(shape) < large_share, config.max_operand, operands)
    if sparse_share > 0:
        use = rng.random(shape) < sparse_share
        drawn = sparse_operands(config, int(use.sum()), rng)
        fits = (drawn >= config.min_operand) & (drawn <= config.max_operand)
        operands[use] = np.where(fits, drawn, operands[use])
    if carry_share > 0 and len(shape) == 2 and shape[1] >= 2:
        rows = np.flatnonzero(rng.random(shape[0]) < carry_share)
        a, b = carry_pairs(config, len(rows), rng)
        operands[rows, 0], operands[rows, 1] = a, b
    return operands


def sparse_operands(config: ModelConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    """Operands of the full width whose digits are each 0 with a probability drawn uniformly
    per operand, the others uniform over 1..9: so the count of nonzero digits is uniform
    over 0..width, and 1000000000 is as likely a shape as 5173920468.

    A uniform ten-digit operand has a zero digit one time in ten, and a wide model
    trained on uniform and narrow draws alone was right on 99.98% of uniform pairs yet
    wrong on 55% of pairs whose operands have at most two nonzero digits
    (5000000000+5000000000 came out 5000000000). The caller keeps only those in range.
    """
    width = config.operand_width
    zero_rate = rng.random((count, 1))
    digits = np.where(rng.random((count, width)) < zero_rate, 0, rng.integers(1, 10, size=(count, width)))
    return digits @ (10 ** np.arange(width, dtype=np.int64))


def digits_and_run(width: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Uniform digits of two operands (units first), and per pair a run of digit positions
    [start, end) of a uniformly drawn length, 1 to ``width``, placed uniformly: what
    ``carry_pairs`` and ``propagate_run_pairs`` then shape. Drawn in this order, which
    their draws, and so every run's training data, depend on."""
    a = rng.integers(0, 10, size=(count, width))
    b = rng.integers(0, 10, size=(count, width))
    length = rng.integers(1, width + 1, size=count)
    start = (rng.random(count) * (width - length + 1)).astype(np.int64)
    return a, b, start, start + length


def carry_pairs(config: ModelConfig, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose sum carries through a chain of a uniformly drawn length (1 to the operand
    width) from a uniformly drawn digit: that digit's pair sums to 10 or more, the chain's
    next digits' pairs to exactly 9, every other digit uniform.

    Of uniform ten-digit pairs, one in about 340 has a chain of four digits or more,
    one in 3,700 of five or more (measured on 200,000), and one in about 2 x 10^9 of
    all ten, yet each is a distinct way to be wrong. A pair out of the domain's range
    is replaced by a uniform one.
    """
    width = config.operand_width
    a, b, start, end = digits_and_run(width, count, rng)
    position = np.arange(width)[None, :]  # digit position, units first
    generate = position == start[:, None]
    propagate = (position > start[:, None]) & (position < end[:, None])
    high = rng.integers(1, 10, size=(count, width))  # a's digit where the carry starts
    a = np.where(generate, high, a)
    b = np.where(generate, 10 - high + (rng.random((count, width)) * high).astype(np.int64), b)
    b = np.where(propagate, 9 - a, b)
    scale = 10 ** np.arange(width, dtype=np.int64)
    a, b = a @ scale, b @ scale
    bad = (a < config.min_operand) | (a > config.max_operand) | (b < config.min_operand) | (b > config.max_operand)
    a[bad] = rng.integers(config.min_operand, config.max_operand + 1, size=int(bad.sum()))
    b[bad] = rng.integers(config.min_operand, config.max_operand + 1, size=int(bad.sum()))
    return a, b


def propagate_run_pairs(config: ModelConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    """Pairs (rows of two operands) whose digits sum to exactly 9 over a run of a uniformly
    drawn length (1 to the operand width) from a uniformly drawn digit, with no carry into
    the run: the digit pair below it sums to 8 or less. Every other digit is uniform.

    The other half of a carry chain: a run of 9s carries out only if something below
    carries into it, so the answer's every digit in and above the run hangs on a digit
    pair the run may be long away from. ``carry_pairs`` always puts a carry under its
    run; a wide model exact on 44 million suite and uniform pairs was wrong on 63 of
    200,000 pairs summing to 9,999,999,999 (a run of all ten), some by a whole digit.
    A pair out of the domain's range is replaced by a uniform one.
    """
    width = config.operand_width
    a, b, start, end = digits_and_run(width, count, rng)
    position = np.arange(width)[None, :]  # digit position, units first
    below = position == (start - 1)[:, None]  # nothing where the run starts at the units
    run = (position >= start[:, None]) & (position < end[:, None])
    low = (rng.random((count, width)) * 9).astype(np.int64)  # 0..8: a's digit below the run
    a = np.where(below, low, a)
    b = np.where(below, (rng.random((count, width)) * (9 - low)).astype(np.int64), b)  # a + b <= 8
    b = np.where(run, 9 - a, b)
    scale = 10 ** np.arange(width, dtype=np.int64)
    pairs = np.stack((a @ scale, b @ scale), axis=1)
    bad = (pairs < config.min_operand).any(axis=1) | (pairs > config.max_operand).any(axis=1)
    pairs[bad] = rng.integers(config.min_operand, config.max_operand + 1, size=(int(bad.sum()), 2))
    return pairs


def nine_dense_pairs(config: ModelConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    """Pairs (rows of two operands) whose every digit is 9 with probability 1/2, else uniform:
    digit pairs summing to 18 and to 9 side by side, each carrying or not by what lies below.

    The wrong answers left in a wide model exact on its suites, on 20,000,000 fresh pairs
    and on runs of 9s (six of 50,000,000 further uniform pairs, one of 10,000,000 held out)
    each had a pair summing to 16 or more within three digits below the wrong one, and
    only pairs summing to 9 or more between: `8992991600+9957998426` (pair sums 17 18 14
    9 18 18 9 10 2 6) came out 18940990026 for 18950990026. Drawn like this, that model
    was wrong on 86 of 200,000, four thousand times its rate on uniform pairs. A pair out
    of the domain's range is replaced by a uniform one.
    """
    width = config.operand_width
    digits = np.where(rng.random((count, 2, width)) < 0.5, 9, rng.integers(0, 10, size=(count, 2, width)))
    pairs = digits @ (10 ** np.arange(width, dtype=np.int64))
    bad = (pairs < config.min_operand).any(axis=1) | (pairs > config.max_operand).any(axis=1)
    pairs[bad] = rng.integers(config.min_operand, config.max_operand + 1, size=(int(bad.sum()), 2))
    return pairs


def dense_carry_pairs(config: ModelConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    """Pairs (rows of two operands) whose share of digit positions that carry out is drawn
    uniformly per pair, the digits otherwise uniform given where they carry: so a pair that
    carries out of 9 of its 10 digits is as likely as one that carries out of 1.

    Uniform ten-digit pairs carry out of about half their digits, and a wide model's
    wrong uniform pairs carried out of 7.1 on average (7 of 15 at 8 or more, a shape 6.9%
    of uniform pairs have): many separate carries, not the long chains of ``carry_pairs``.
    A pair out of the domain's range is replaced by a uniform one.
    """
    width = config.operand_width
    wanted = rng.random((count, width)) < rng.random((count, 1))  # carries out of digit i
    a = np.empty((count, width), dtype=np.int64)
    b = np.empty((count, width), dtype=np.int64)
    carry_in = np.zeros(count, dtype=np.int64)
    for i in range(width):  # units first: a digit's feasible pairs depend on the carry into it
        out = wanted[:, i]
        low_a = np.where(out, 1 - carry_in, 0)
        high_a = np.where(out, 9, 9 - carry_in)
        a[:, i] = low_a + (rng.random(count) * (high_a - low_a + 1)).astype(np.int64)
        low_b = np.where(out, 10 - a[:, i] - carry_in, 0)
        high_b = np.where(out, 9, 9 - a[:, i] - carry_in)
        b[:, i] = low_b + (rng.random(count) * (high_b - low_b + 1)).astype(np.int64)
        carry_in = out.astype(np.int64)
    scale = 10 ** np.arange(width, dtype=np.int64)
    pairs = np.stack((a @ scale, b @ scale), axis=1)
    bad = (pairs < config.min_operand).any(axis=1) | (pairs > config.max_operand).any(axis=1)
    pairs[bad] = rng.integers(config.min_operand, config.max_operand + 1, size=(int(bad.sum()), 2))
    return pairs


def draw_term_counts(config: ModelConfig, count: int, rng: np.random.Generator, weights: tuple[float, ...] = ()):
    """Term counts, uniform over min..max terms, or in proportion to ``weights`` (one per count
    from ``config.min_terms``; counts past ``config.max_terms``, as a curriculum narrows it, dropped).

    Uniform counts spend half of arith's epochs on its 40,000 two-term queries and half on
    its 24,000,000 three-term ones, where every wrong answer was.
    """
    counts = np.arange(config.min_terms, config.max_terms + 1)
    if not weights:
        return rng.integers(config.min_terms, config.max_terms + 1, size=count)
    p = np.array(weights[: len(counts)], dtype=np.float64)
    p = np.pad(p, (0, len(counts) - len(p))) if len(p) < len(counts) else p
    if p.sum() <= 0:
        return rng.integers(config.min_terms, config.max_terms + 1, size=count)
    return counts[rng.choice(len(counts), size=count, p=p / p.sum())]


def sample_expressions(
    config: ModelConfig,
    count: int,
    rng: np.random.Generator,
    small_share: float = 0.0,
    term_weights: tuple[float, ...] = (),
    large_share: float = 0.0,
    carry_share: float = 0.0,
    sparse_share: float = 0.0,
) -> list[Expression]:
    """Term count as ``draw_term_counts`` gives it, uniform operators and bracket layout;
    operands as ``draw_operands`` gives them."""
    n_terms = draw_term_counts(config, count, rng, term_weights)
    operands = draw_operands(
        config, (count, config.max_terms), rng, small_share, large_share, carry_share, sparse_share
    )
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
