"""The training loop: fresh samples each epoch, a check now and then, a checkpoint after each.

An epoch reads top to bottom: its learning rate (adder.train.policy), its data
(adder.train.data), one pass, the probe, mining where finishing, a check when one is
due (adder.train.checks), the next cycle when one ends inexact, the checkpoint
(adder.train.checkpoint), and the decision to stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from adder.codec import Codec
from adder.config import ModelConfig
from adder.eval import suites, verdict
from adder.eval.evaluate import Evaluation
from adder.grammar import values_of
from adder.train import checks
from adder.train.averaging import WeightMean
from adder.train.checkpoint import Checkpoint, CheckpointError
from adder.train.checks import (
    PROBE_SIZE,
    ToOnnx,
    answers_right,
    check_epoch,
    full_check,
    probability_predictor,
    probe_expressions,
)
from adder.train.data import encode_epoch, epoch_expressions
from adder.train.distributed import Cluster, file_fingerprint, same_everywhere
from adder.train.growth import stuck
from adder.train.mining import mine
from adder.train.model import build_model
from adder.train.policy import Cycle, first_cycle, learning_rate_at, next_cycle
from adder.train.recipe import Recipe
from adder.train.replay import ReplayPool

FULL_CHECK_EVERY = 4  # epochs between unscheduled full checks: each costs several epochs' time on a CPU
RUNS_PER_MINED = 4  # a confirming epoch's mined queries per propagate-run pair drawn besides them
CYCLE_WORDS = {
    "again": "the same cycle again",
    "finish": "a finishing cycle with replay",
    "hold": "a finishing cycle held at a constant rate, with replay",
}


@dataclass
class Outcome:
    """How a run ended: ``exact`` only when a verdict (every query, or the suites) found nothing wrong."""

    result: Evaluation | None  # the last check, if it is the model's final word
    exact: bool
    reason: str  # why the run stopped, in words
    stuck: str = ""  # why the run stopped to grow (adder.train.growth), if it did
    epochs: int = 0  # epochs trained in all


@dataclass
class State:
    """What a run carries from epoch to epoch, and what its checkpoint holds."""

    model: keras.Model
    start: int = 0
    history: list[dict] = field(default_factory=list)
    pool: ReplayPool = field(default_factory=ReplayPool)
    cycles: list[Cycle] = field(default_factory=list)
    mean: WeightMean = field(default_factory=WeightMean)
    spent: float = 0.0  # seconds of earlier calls of this checkpoint, against max_minutes
    averaged: keras.Model | None = None  # the mean's model, once there is a mean

    @property
    def judged(self) -> keras.Model:
        """What the checks and mining judge, and what the run returns."""
        return self.model if self.averaged is None else self.averaged


def train_epoch(
    model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int, cluster: Cluster = Cluster()
) -> float:
    """One pass over the epoch's samples in order, batch by batch; the mean loss per sample.

    Each process of a ``cluster`` feeds its own slice of every batch; the loss Keras
    returns is the whole batch's.

    Not ``model.fit``: each fit call builds a tf.data pipeline, and tearing it down
    blocked for 5-12 s an epoch here (py-spy: ``~IteratorResource`` waiting on its
    thread pool), as long as the 10 s of training itself. Every epoch's samples are
    already fresh and random, so no shuffling, which keeps runs reproducible.
    """
    total = 0.0
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        mine = cluster.rows(len(x[rows]))
        total += float(model.train_on_batch(x[rows][mine], y[rows][mine])) * len(x[rows])
    return total / len(x)


def run_identity(recipe: Recipe) -> dict:
    """What a checkpoint must match to be resumed: every setting but the budget."""
    return {"recipe": recipe.identity()}


def confirming(recipe: Recipe, history: list[dict]) -> bool:
    """Whether mining draws runs of 9s too: once a fresh stage was clean, with ``confirm_further``."""
    return bool(recipe.confirm_further) and verdict.stage_cleared(history, "fresh")


def going_beyond(recipe: Recipe, history: list[dict]) -> bool:
    """Whether the run has passed a further stage, so it averages (``average_weights``) and mines
    nine-dense pairs too. Until then a run with ``confirm_beyond`` is the run without it."""
    return bool(recipe.confirm_beyond) and verdict.stage_cleared(history, "further")


def mining_now(recipe: Recipe, cycle: Cycle, history: list[dict]) -> bool:
    """Whether this epoch mines unsure answers (adder.train.mining): in a finishing cycle, once the
    suites were clean. Before that checks find plenty to replay, and the run is the one without mining."""
    return (
        bool(recipe.mine_margin and recipe.mine_sample)
        and cycle.kind in ("finish", "hold")
        and verdict.suites_were_clean(history)
    )


def averaged_model(model: keras.Model, mean: WeightMean, copy: keras.Model | None = None) -> keras.Model:
    """A copy of ``model`` holding ``mean``'s weights, with no optimizer; an earlier ``copy`` is
    given the new mean rather than built again every epoch."""
    copy = keras.models.clone_model(model) if copy is None else copy
    copy.set_weights(mean.weights())
    return copy


def start_or_resume(
    recipe: Recipe, config: ModelConfig, checkpoint: Checkpoint, init: keras.Model | None, log
) -> State:
    """The state the run begins from: its checkpoint's, or fresh (or ``init``'s) weights."""
    keras.utils.set_random_seed(recipe.seed)  # before loading too: every process must build the same seed state
    resumed = checkpoint.load(config)
    if resumed:
        model, start, pool, mean = resumed
        state = State(model, start, checkpoint.history(), pool, checkpoint.cycles(), mean, checkpoint.seconds())
        state.cycles = state.cycles or [first_cycle(recipe.cycle_epochs, recipe.learning_rate)]
        log(f"resuming from epoch {start + 1} (checkpoint {checkpoint.dir}, replay pool {len(pool):,})")
    else:
        model = init if init is not None else build_model(config, recipe.architecture())
        model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate), loss="sparse_categorical_crossentropy")
        state = State(model, cycles=[first_cycle(recipe.cycle_epochs, recipe.learning_rate)])
    if state.mean.count:
        state.averaged = averaged_model(state.model, state.mean)
    return state


def check_starting_model(state: State, recipe: Recipe, config: ModelConfig, log, to_onnx) -> Outcome | None:
    """A model to finish: everything it gets wrong, found before the first epoch so replay starts
    at once on exactly those queries; an Outcome if it is exact already."""
    result = full_check(state.model, config, to_onnx=to_onnx)
    entry = {"epoch": 0}
    if result.is_verdict and result.wrong == 0 and suites.judged_by_suites(config):
        predict = checks.domain_predictor(state.model, config, to_onnx)[0]
        plan = verdict.stages(recipe.confirm_further, recipe.confirm_beyond)
        result = verdict.judge(result, predict, config, suites.fresh_seed(recipe.seed, 0), plan, entry)
    state.pool.reset(result.wrong_queries)
    log(f"  check of the starting model: {result.summary()}")
    state.history.append(entry | {"full_check_wrong": result.wrong, "replay_pool": len(state.pool)})
    if result.wrong == 0:
        log("stopping: the starting model is already exact on the whole domain")
        return Outcome(result, True, "the starting model is exact")
    return None


def fit(
    recipe: Recipe,
    out: Path,
    log: Callable[[str], None] = print,
    init: keras.Model | None = None,
    cluster: Cluster = Cluster(),
    to_onnx: ToOnnx | None = None,
) -> tuple[keras.Model, list[dict], Outcome]:
    """Train until a check finds every query right, or the budget (``max_epochs``,
    ``max_minutes``) is spent, checkpointing after every epoch beside ``out``.

    A cycle that ends with wrong answers is followed by another (adder.train.policy).
    ``init`` is a model to start from (fine-tuning); a resumed run starts from its
    checkpoint either way. Every process of a ``cluster`` runs this alike on its slice of
    each batch; only process 0 writes. ``to_onnx`` converts a model for fast checks.
    Returns the model, the per-epoch history and how the run ended.
    """
    config = recipe.model_config()
    checkpoint = Checkpoint(out, run_identity(recipe))
    if cluster.joined and not same_everywhere(file_fingerprint(checkpoint.state_path)):
        raise CheckpointError(
            f"the processes do not all see the same checkpoint {checkpoint.dir}: --out must be in a folder "
            "every process reads (shared between hosts), or delete the checkpoint to start afresh"
        )
    state = start_or_resume(recipe, config, checkpoint, init, log)
    if init is not None and not state.start and not state.history:
        ended = check_starting_model(state, recipe, config, log, to_onnx)
        if ended:
            return state.model, state.history, ended
    codec = Codec(config)
    probe = probe_expressions(config, recipe.seed)
    probe_x, probe_truth = codec.encode_expressions(probe), values_of(probe)  # once, not every epoch
    last_full_check = -FULL_CHECK_EVERY
    last_epoch = recipe.max_epochs
    began = time.perf_counter()
    result = None
    for epoch in range(state.start, last_epoch):
        if recipe.max_minutes and state.spent + time.perf_counter() - began >= 60 * recipe.max_minutes:
            log(f"stopping: the budget of {recipe.max_minutes:g} minutes is spent, after epoch {epoch}")
            final = result if result is not None and result.is_verdict else None
            return (
                state.judged,
                state.history,
                Outcome(final, False, f"the budget of {recipe.max_minutes:g} minutes is spent", epochs=epoch),
            )
        cycle = state.cycles[-1]
        state.model.optimizer.learning_rate.assign(learning_rate_at(cycle, epoch, recipe.schedule))
        x, y = encode_epoch(config, epoch_expressions(
            config, recipe.samples, recipe.seed, epoch, recipe.terms_at(config, epoch), recipe.small_operands,
            state.pool.queries, recipe.replay_share, recipe.term_weights, recipe.large_operands,
            recipe.carry_chains, recipe.sparse_operands,
        ))  # fmt: skip
        started = time.perf_counter()
        loss = train_epoch(state.model, x, y, recipe.batch_size, cluster)
        seconds = time.perf_counter() - started
        if recipe.average_weights and going_beyond(recipe, state.history):
            state.mean.add(state.model.get_weights())
            state.averaged = averaged_model(state.model, state.mean, state.averaged)
        probe_right = answers_right(state.model, codec, probe_x, probe_truth)
        probe_em = float(probe_right.mean())
        state.pool.add([probe[i] for i in np.flatnonzero(~probe_right).tolist()])
        entry = {"epoch": epoch + 1, "loss": loss, "probe_exact_match": probe_em}
        mining = mining_now(recipe, cycle, state.history)
        mined_of = mine_epoch(state, recipe, config, epoch, entry, to_onnx) if mining else 0
        entry["replay_pool"] = len(state.pool)
        if len(state.cycles) > 1:
            entry["cycle"] = len(state.cycles)
        if state.averaged is not None:
            entry["averaged_epochs"] = state.mean.count
        state.history.append(entry)
        log(
            f"epoch {epoch + 1}/{last_epoch}: {seconds:.1f} s, loss {loss:.5f}, "
            f"exact-match on {PROBE_SIZE:,} probe queries {100 * probe_em:.2f}%, "
            + (f"{entry['mined']:,} of {mined_of:,} fresh answers unsure, " if mining else "")
            + f"replay pool {len(state.pool):,}"
            + (f", judged as the mean of epochs {epoch + 2 - state.mean.count}-{epoch + 1}" if state.averaged else "")
        )
        scheduled = recipe.check_every and (epoch + 1) % recipe.check_every == 0
        probe_due = not recipe.check_every and probe_em == 1.0 and epoch + 1 - last_full_check >= FULL_CHECK_EVERY
        cycle_end = epoch + 1 == cycle.end
        result = None
        if scheduled or probe_due or cycle_end:
            last_full_check = epoch + 1
            started = time.perf_counter()
            result = check_epoch(
                state.judged, config, recipe, epoch + 1, state.pool, entry, log, mining, cycle_end, to_onnx
            )
            entry.update(full_check_seconds=round(time.perf_counter() - started, 1), replay_pool=len(state.pool))
        exact = result is not None and result.wrong == 0 and result.is_verdict
        why = stuck(state.history, state.cycles) if recipe.grow and cycle_end and not exact else ""
        if cycle_end and not exact and not why and epoch + 1 < last_epoch:
            plan_next_cycle(state, recipe, result, log)
        if cluster.writer:
            spent = state.spent + time.perf_counter() - began
            checkpoint.save(state.model, config, epoch + 1, state.history, state.pool, spent, state.cycles, state.mean)
        if exact:
            log(f"stopping early: exact on the whole domain after epoch {epoch + 1}")
            return state.judged, state.history, Outcome(result, True, f"exact after epoch {epoch + 1}", epochs=epoch + 1)
        if why and epoch + 1 < last_epoch:
            return state.judged, state.history, Outcome(result, False, "stuck", stuck=why, epochs=epoch + 1)
    final = result if result is not None and result.is_verdict else None
    spent = f"the budget of {last_epoch} epochs is spent"
    return state.judged, state.history, Outcome(final, False, spent, epochs=last_epoch)


def mine_epoch(state: State, recipe: Recipe, config: ModelConfig, epoch: int, entry: dict, to_onnx) -> int:
    """Replay fresh queries the judged model answers unsurely; returns how many were drawn."""
    probabilities = probability_predictor(state.judged, config, to_onnx)[0]
    runs = recipe.mine_sample // RUNS_PER_MINED if confirming(recipe, state.history) else 0
    nines = recipe.mine_sample // RUNS_PER_MINED if going_beyond(recipe, state.history) else 0
    mined = mine(probabilities, config, recipe.mine_sample, recipe.seed, epoch + 1, recipe.mine_margin, runs, nines)
    state.pool.add(mined)
    entry["mined"] = len(mined)
    return recipe.mine_sample + runs + nines


def plan_next_cycle(state: State, recipe: Recipe, result: Evaluation, log) -> None:
    hold = recipe.hold_rate if verdict.suites_were_clean(state.history) else 0.0
    state.cycles.append(
        next_cycle(state.cycles, result.wrong, result.total, recipe.cycle_epochs, recipe.learning_rate, hold)
    )
    cycle = state.cycles[-1]
    log(
        f"cycle {len(state.cycles)}: {result.wrong:,} of {result.total:,} checked queries still wrong; "
        f"{CYCLE_WORDS[cycle.kind]}: epochs {cycle.start + 1}-{cycle.end}, peak learning rate {cycle.peak:.2g}"
    )
