"""How a run checks its model: the probe, the scheduled checks over the domain (every query,
a uniform sample, or the fixed suites) and the predictors they answer through.

A check runs through onnxruntime when the caller gives a Keras-to-ONNX converter (the
commands pass adder.export's; about 3x Keras's predict on a CPU), which also judges the
model the runtime will serve; else through Keras.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from adder.codec import Codec
from adder.config import ModelConfig
from adder.eval import suites
from adder.eval.domain import expressions_of, sampled_blocks
from adder.eval.draws import carry_pairs, draw_operands
from adder.eval.evaluate import EXHAUSTIVE_LIMIT, Evaluation, evaluate, tally
from adder.grammar import Expression, values_of
from adder.train.distributed import predict_rows
from adder.train.mining import margins

PROBE_SIZE = 10_000
PROBE_BATCH = 8192  # rows per Keras predict step
PROBE_STREAM = 2**31  # seed stream for the probe set, apart from every epoch number
ToOnnx = Callable[[keras.Model, ModelConfig], bytes]  # a model's ONNX bytes


def keras_predictor(model: keras.Model, config: ModelConfig, batch: int = 8192):
    """A block predictor (see adder.eval.evaluate) answering through Keras on encoded tensors."""
    codec = Codec(config)

    def predict(shape, terms):
        # predict() runs a compiled graph: many times faster than eager calls on large inputs.
        return codec.decode_answers(predict_rows(model, codec.encode_shape(shape, terms), batch))

    predict.takes_blocks = True
    return predict


def probability_predictor(model: keras.Model, config: ModelConfig, to_onnx: ToOnnx | None = None):
    """The fastest way to the model's output probabilities for one shape's terms, as it is now:
    its weights converted by ``to_onnx`` and run by onnxruntime on every core where that is
    given and the backend is TensorFlow, else Keras itself. Returns (probabilities, engine name)."""
    codec = Codec(config)
    if to_onnx is None or keras.backend.backend() != "tensorflow":
        return lambda shape, terms: predict_rows(model, codec.encode_shape(shape, terms), PROBE_BATCH), "keras"
    import tempfile

    from adder import Adder

    folder = tempfile.TemporaryDirectory(prefix="adder-check-")  # removed with the predictor
    path = Path(folder.name) / "check.onnx"
    path.write_bytes(to_onnx(model, config))
    adder = Adder(path)

    def probabilities(shape, terms, _keep=folder):
        return adder.predict_tensor(codec.encode_shape(shape, terms))

    return probabilities, "onnxruntime"


def domain_predictor(model: keras.Model, config: ModelConfig, to_onnx: ToOnnx | None = None):
    """The fastest block predictor for a full-domain check of the model as it is now
    (``probability_predictor``): a check through onnxruntime also judges the model the
    runtime will serve. Returns (predictor, engine name)."""
    probabilities, engine = probability_predictor(model, config, to_onnx)
    codec = Codec(config)

    def predict(shape, terms):
        return codec.decode_answers(probabilities(shape, terms))

    predict.takes_blocks = True
    return predict, engine


def answers_right(model: keras.Model, codec: Codec, x: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Which of these encoded queries the model answers right now, through Keras."""
    if not len(x):
        return np.zeros(0, dtype=bool)
    values, valid = codec.decode_answers(predict_rows(model, x, PROBE_BATCH))
    return (values == truth) & valid


def answers_sure(model: keras.Model, codec: Codec, x: np.ndarray, truth: np.ndarray, margin: float) -> np.ndarray:
    """Which of these encoded queries the model answers right with at least ``margin`` to spare
    (adder.train.mining.margins), through Keras."""
    if not len(x):
        return np.zeros(0, dtype=bool)
    probabilities = predict_rows(model, x, PROBE_BATCH)
    values, valid = codec.decode_answers(probabilities)
    return (values == truth) & valid & (margins(probabilities) >= margin)


def full_check(
    model: keras.Model,
    config: ModelConfig,
    sample: int = 0,
    seed: int = 2026,
    carry_chains: float = 0.0,
    sparse_operands: float = 0.0,
    to_onnx: ToOnnx | None = None,
) -> Evaluation:
    """Every query of the domain, or every fixed suite where it is too large to enumerate and
    the suites apply (adder.eval.suites); or, with ``sample``, that many drawn uniformly
    over its queries (each check its own ``seed``, so the replay pool sees fresh mistakes),
    plus, with ``carry_chains``, as many pairs again drawn to carry through long chains,
    and with ``sparse_operands``, as many pairs of operands with many zero digits: a
    uniform sample of ten-digit pairs almost never holds either."""
    predict, engine = domain_predictor(model, config, to_onnx)
    if not sample and suites.judged_by_suites(config):
        result = suites.combined(suites.evaluate_suites(predict, config))
    else:
        result = evaluate(predict, config, sample=sample, seed=seed)
    if sample and suites.applies(config):
        rng = np.random.default_rng([seed, PROBE_STREAM])
        drawn_groups = []
        if carry_chains:
            pairs = carry_pairs(config, sample, rng)
            drawn_groups.append(("carry chains (drawn)", "to carry through long chains", pairs))
        if sparse_operands:
            pairs = draw_operands(config, (sample, 2), rng, 0.0, sparse_share=1.0)  # in range, as in training
            drawn_groups.append(("sparse operands (drawn)", "with many zero digits", (pairs[:, 0], pairs[:, 1])))
        for group, why, (a, b) in drawn_groups:
            pairs = np.stack((a, b), axis=1)
            result.add_group(group, tally(predict, config, "drawn", sample, [(suites.SUM, pairs)]))
            result.method += f", plus {sample:,} pairs drawn {why}"
    result.engine = engine
    return result


def probe_expressions(config: ModelConfig, seed: int) -> list[Expression]:
    """PROBE_SIZE queries drawn uniformly over the domain's queries, fixed for the run.

    Drawn like the training data, the probe was half two-term queries on arith (0.17% of
    its domain) and said 99.97-100% while the whole domain had thousands wrong.
    """
    rng = np.random.default_rng([seed, PROBE_STREAM])
    return [e for shape, terms in sampled_blocks(config, PROBE_SIZE, rng) for e in expressions_of(shape, terms)]


def check_epoch(
    judged: keras.Model,
    config: ModelConfig,
    recipe,
    epoch: int,
    pool,
    entry: dict,
    log: Callable[[str], None],
    mining: bool,
    cycle_end: bool,
    to_onnx: ToOnnx | None = None,
) -> Evaluation:
    """One check after ``epoch`` (from 1): the domain or a sample of it, then the verdict's
    drawn stages; the replay ``pool`` is refilled with what it found wrong, ``entry`` (the
    epoch's history) gets the counts."""
    from adder.eval import verdict
    from adder.train.policy import NEAR

    codec = Codec(config)
    result = full_check(
        judged,
        config,
        recipe.check_sample,
        recipe.seed * 100_003 + epoch,
        carry_chains=recipe.carry_chains,
        sparse_operands=recipe.sparse_operands,
        to_onnx=to_onnx,
    )
    if not result.is_verdict:  # a sampled check: the pool keeps what is still wrong, plus its finds
        pooled = pool.queries
        pooled_x, pooled_truth = codec.encode_expressions(pooled), values_of(pooled)
        still = ~answers_right(judged, codec, pooled_x, pooled_truth)
        known_wrong = int(still.sum())
        if mining:  # mined queries stay while they are unsure, right or not
            still |= ~answers_sure(judged, codec, pooled_x, pooled_truth, recipe.mine_margin)
        pool.reset([q for q, keep in zip(pooled, still.tolist()) if keep])
        pool.add(result.wrong_queries)
        entry.update(sample_check_wrong=result.wrong, sample_check_total=result.total)
        log(f"  sampled check: {result.summary()}; {known_wrong:,} pooled queries still wrong")
        # The whole domain's time (6 min for a 44/44 arith here) only once neither the sample
        # nor any query known to be wrong is, or at the end of a cycle that is finishing: the
        # next cycle then replays every wrong query, not only those a sample happened to meet.
        clean = result.wrong == 0 and known_wrong == 0
        finishing = cycle_end and result.wrong <= NEAR * result.total
        checkable = config.domain_size <= EXHAUSTIVE_LIMIT or suites.applies(config)
        if (clean or finishing) and checkable:
            result = full_check(judged, config, to_onnx=to_onnx)
    seed = suites.fresh_seed(recipe.seed, epoch)
    plan = verdict.stages(recipe.confirm_further, recipe.confirm_beyond)
    if result.is_verdict and result.wrong == 0 and suites.judged_by_suites(config):
        predict = domain_predictor(judged, config, to_onnx)[0]
        result = verdict.judge(result, predict, config, seed, plan, entry)
    if result.is_verdict:
        pool.reset(result.wrong_queries)
        entry.update(full_check_wrong=result.wrong)
        log(f"  full check: {result.summary()}")
    entry.update(check_wrong=result.wrong, checked=result.total)  # what growth (adder.train.growth) reads
    return result
