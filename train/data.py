"""One epoch's training queries: fresh draws from adder.eval.draws with replayed ones shuffled in,
encoded by adder.codec. A pure function of its arguments, so a resumed run sees the same data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from adder.codec import Codec
from adder.config import ModelConfig
from adder.eval.draws import sample_expressions
from adder.grammar import Expression, values_of

REPLAY_COPIES = 16


def epoch_expressions(
    config: ModelConfig,
    count: int,
    seed: int,
    epoch: int,
    max_terms: int | None = None,
    small_share: float = 0.0,
    replay: list[Expression] | None = None,
    replay_share: float = 0.0,
    term_weights: tuple[float, ...] = (),
    large_share: float = 0.0,
    carry_share: float = 0.0,
    sparse_share: float = 0.0,
) -> list[Expression]:
    """One epoch's queries, a pure function of its arguments so a resumed run sees the same data.

    ``max_terms`` narrows the grammar for a curriculum. A ``replay_share`` of the
    epoch (at most REPLAY_COPIES per query in the pool) is drawn with replacement from
    ``replay``, the queries an evaluation found wrong; the rest is fresh. Replayed
    queries are shuffled in among the fresh ones.
    """
    rng = np.random.default_rng([seed, epoch])
    drawn_from = config if max_terms is None else replace(config, max_terms=max_terms)
    # At most REPLAY_COPIES draws per pooled query: 12,500 draws of 17 queries made the loss on
    # fresh queries jump tenfold the epoch after (measured on the 64/64 default).
    replayed = min(int(round(count * replay_share)), REPLAY_COPIES * len(replay)) if replay else 0
    expressions = sample_expressions(
        drawn_from, count - replayed, rng, small_share, term_weights, large_share, carry_share, sparse_share
    )
    if replayed:
        expressions += [replay[i] for i in rng.integers(0, len(replay), size=replayed).tolist()]
        expressions = [expressions[i] for i in rng.permutation(len(expressions)).tolist()]
    return expressions


def encode_epoch(config: ModelConfig, expressions: list[Expression]) -> tuple[np.ndarray, np.ndarray]:
    codec = Codec(config)
    return codec.encode_expressions(expressions), codec.encode_answers(values_of(expressions))


def epoch_data(
    config: ModelConfig, count: int, seed: int, epoch: int, max_terms: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fresh, uniformly drawn samples for one epoch, encoded."""
    return encode_epoch(config, epoch_expressions(config, count, seed, epoch, max_terms))
