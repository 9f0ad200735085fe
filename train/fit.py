"""The training loop: fresh samples each epoch, a checkpoint after each, resume after a crash."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from adder.codec import Codec
from adder.config import ModelConfig
from adder.grammar import Expression, values_of
from adder.train import suites
from adder.train.archive import WriteError, save_keras, write_atomic
from adder.train.averaging import WeightMean
from adder.train.data import carry_pairs, draw_operands, encode_epoch, epoch_expressions, expressions_of, sampled_blocks
from adder.train.distributed import Cluster, alone, file_fingerprint, predict_rows, same_everywhere
from adder.train.evaluate import EXHAUSTIVE_LIMIT, Evaluation, evaluate, tally
from adder.train.mining import margins, mine
from adder.train.model import Architecture, build_model
from adder.train.policy import NEAR, Cycle, first_cycle, learning_rate_at, next_cycle
from adder.train.replay import ReplayPool

PROBE_SIZE = 10_000
PROBE_BATCH = 8192  # rows per Keras predict step, as in keras_predictor
FULL_CHECK_EVERY = 4  # epochs between full-domain checks: each costs several epochs' time on a CPU
PROBE_STREAM = 2**31  # seed stream for the probe set, apart from every epoch number
NINES_PER_BEYOND = 50  # a beyond check's uniform pairs per nine-dense pair drawn before them
RUNS_PER_MINED = 4  # a confirming epoch's mined queries per propagate-run pair drawn besides them


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 40  # the first learning-rate cycle
    samples: int = 50_000
    batch_size: int = 128
    learning_rate: float = 1e-3
    schedule: str = "cosine"  # or "constant"; cosine decays to 0 over each cycle
    seed: int = 0
    curriculum: int = 0  # epochs per term count: see terms_at
    small_operands: float = 0.25  # share of operands drawn with a uniform digit count (data.draw_operands)
    replay_share: float = 0.25  # share of each epoch drawn from the replay pool, once it holds anything
    check_every: int = 0  # epochs between checks whatever the probe says; 0: only once the probe is exact
    term_weights: tuple[float, ...] = ()  # draws per term count, from the fewest; () is uniform
    check_sample: int = 0  # scheduled checks look at this many queries drawn uniformly over the domain; 0: all
    max_epochs: int = 0  # budget: epochs in all cycles together; 0 or less than epochs: one cycle
    max_minutes: float = 0.0  # budget: minutes of training and checks, over resumes too; 0: no limit
    large_operands: float = 0.0  # share of operands drawn as the domain's largest (data.draw_operands)
    carry_chains: float = 0.0  # share of queries whose first two operands carry through a chain (data.carry_pairs)
    sparse_operands: float = 0.0  # share of operands drawn with many zero digits (data.sparse_operands)
    mine_margin: float = 0.0  # finishing cycles replay fresh queries answered unsurely (adder.train.mining)
    mine_sample: int = 0  # queries drawn afresh every finishing epoch to mine
    hold_rate: float = 0.0  # once the suites were clean, finishing cycles hold this rate (adder.train.policy)
    confirm_further: int = 0  # pairs more of the same fresh draw that must be right once its first ones are
    confirm_beyond: int = 0  # pairs more again (nine-dense ones first), drawn only once the further ones are right
    average_weights: bool = False  # once going beyond, judge the mean of the weights since (train.averaging)

    BUDGET = ("max_epochs", "max_minutes")  # not part of a run's identity: a rerun may raise them

    def identity(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in self.BUDGET}

    @property
    def epoch_budget(self) -> int:
        return max(self.epochs, self.max_epochs)

    def terms_at(self, config: ModelConfig, epoch: int) -> int:
        """Most terms drawn in an epoch: the fewest first, one more every ``curriculum`` epochs.

        Measured on 2-3 terms with + - and brackets: trained on the mix from the start,
        the answer's units digit stayed at chance (10%) for 23 epochs even on two-term
        queries; two-term queries alone learn it in about 8 epochs, and the model then
        goes on to three terms.
        """
        if not self.curriculum:
            return config.max_terms
        return min(config.max_terms, config.min_terms + epoch // self.curriculum)


def checkpoint_dir(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


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


def keras_predictor(model: keras.Model, config: ModelConfig, batch: int = 8192):
    """A block predictor (see adder.train.evaluate) answering through Keras on encoded tensors."""
    codec = Codec(config)

    def predict(shape, terms):
        # predict() runs a compiled graph: many times faster than eager calls on large inputs.
        return codec.decode_answers(predict_rows(model, codec.encode_shape(shape, terms), batch))

    predict.takes_blocks = True
    return predict


def probability_predictor(model: keras.Model, config: ModelConfig):
    """The fastest way to the model's output probabilities for one shape's terms, as it is now: its
    weights converted to ONNX and run by onnxruntime on every core where TensorFlow and
    tf2onnx are installed (about 3x Keras's predict here), else Keras itself.
    Returns (probabilities, engine name)."""
    import importlib.util

    codec = Codec(config)
    if keras.backend.backend() != "tensorflow" or importlib.util.find_spec("tf2onnx") is None:
        return lambda shape, terms: predict_rows(model, codec.encode_shape(shape, terms), PROBE_BATCH), "keras"
    import tempfile

    from adder import Adder
    from adder.export.convert import keras_to_onnx

    folder = tempfile.TemporaryDirectory(prefix="adder-check-")  # removed with the predictor
    path = Path(folder.name) / "check.onnx"
    path.write_bytes(keras_to_onnx(model, config).SerializeToString())
    adder = Adder(path)

    def probabilities(shape, terms, _keep=folder):
        return adder.predict_tensor(codec.encode_shape(shape, terms))

    return probabilities, "onnxruntime"


def domain_predictor(model: keras.Model, config: ModelConfig):
    """The fastest block predictor for a full-domain check of the model as it is now
    (``probability_predictor``): a check through onnxruntime also judges the model the
    runtime will serve. Returns (predictor, engine name)."""
    probabilities, engine = probability_predictor(model, config)
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
) -> Evaluation:
    """Every query of the domain, or every fixed suite where it is too large to enumerate and
    the suites apply (adder.train.suites); or, with ``sample``, that many drawn uniformly
    over its queries (each check its own ``seed``, so the replay pool sees fresh mistakes),
    plus, with ``carry_chains``, as many pairs again drawn to carry through long chains,
    and with ``sparse_operands``, as many pairs of operands with many zero digits: a
    uniform sample of ten-digit pairs almost never holds either."""
    predict, engine = domain_predictor(model, config)
    if not sample and config.domain_size > EXHAUSTIVE_LIMIT and suites.applies(config):
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


def suites_were_clean(history: list[dict]) -> bool:
    """Whether a check of this run has found the fixed suites clean: from then on only pairs
    drawn afresh have been wrong, a handful a check, and mining and holding begin."""
    return any("fresh_check_seed" in h for h in history)


def mining_now(settings: TrainSettings, cycle: Cycle, history: list[dict]) -> bool:
    """Whether this epoch mines unsure answers (adder.train.mining): in a finishing cycle, and
    only once the suites were clean. Before that the checks find plenty wrong to replay, and a
    run with mining options is the same run as one without, epoch for epoch."""
    return (
        bool(settings.mine_margin and settings.mine_sample)
        and cycle.kind in ("finish", "hold")
        and suites_were_clean(history)
    )


def run_identity(config: ModelConfig, arch: Architecture, settings: TrainSettings) -> dict:
    """What a checkpoint must match to be resumed: the domain, the layers and every setting but the budget."""
    identity = {"config": config.to_dict() | {"training": {}}, "arch": arch.to_dict(), "settings": settings.identity()}
    return json.loads(json.dumps(identity))  # as it will read back: tuples become lists


def confirmed_afresh(
    model: keras.Model,
    config: ModelConfig,
    result: Evaluation,
    seed: int,
    entry: dict,
    further: int = 0,
    beyond: int = 0,
) -> Evaluation:
    """Clean suites, confirmed on uniform pairs drawn for this check alone (adder.train.suites.confirmed):
    a run replays what its suites find wrong, so by the time they are clean they are partly taught.
    Any other result is returned as it is; ``entry`` (the epoch's history) gets the fresh draw's count."""
    if not (result.is_verdict and result.wrong == 0 and config.domain_size > EXHAUSTIVE_LIMIT):
        return result
    predict = domain_predictor(model, config)[0]
    result = suites.confirmed(result, predict, config, seed)
    entry.update(fresh_check_seed=seed, fresh_check_wrong=result.wrong)
    result = confirmed_further(predict, config, result, seed, entry, further)
    return confirmed_beyond(predict, config, result, seed, entry, further, beyond)


def confirmed_further(
    predict, config: ModelConfig, result: Evaluation, seed: int, entry: dict, size: int
) -> Evaluation:
    """A clean fresh draw, continued for ``size`` pairs more, plus a tenth as many pairs
    summing to 9 over a run with no carry into it; all must be clean too.

    At about one wrong pair in ten million, a draw of ten million comes out clean about a
    third of the time, so one clean draw says little; 0 wrong in n pairs bounds the error
    rate below 3/n (95%). Uniform pairs almost never hold a long run of 9s without a carry
    under it, which a model exact on all of them can still get wrong in thousands
    (adder.train.data.propagate_run_pairs). Only a clean draw is continued, so a run with
    this setting is the same run as one without until its first clean draw."""
    if not (size and result.wrong == 0):
        return result
    result = suites.confirmed(result, predict, config, seed, size, skip=suites.UNIFORM_SIZE)
    result = suites.confirmed_drawn(result, predict, config, seed, size // suites.RUNS_PER_FURTHER)
    entry.update(further_check_size=size, further_check_wrong=result.wrong)
    return result


def confirmed_beyond(
    predict, config: ModelConfig, result: Evaluation, seed: int, entry: dict, further: int, size: int
) -> Evaluation:
    """A clean further check (``confirmed_further`` of ``further`` pairs), gone on with: first
    ``size``/50 pairs whose every digit is 9 with probability 1/2, then ``size`` pairs more of
    the same uniform draw and a tenth as many more runs of 9s; all must be clean too.

    A stage of its own, so that a run going on from a model whose further check was clean
    is the same run as the one that stopped there: only the verdict at that epoch differs,
    and it differs by drawing more. Each verdict draws its stages in turn and stops at the
    first with anything wrong, so a model still wrong in ten million is not checked on
    fifty million more only to find a few more of the same. The nine-dense pairs come first
    within it: where a model that far on was still wrong, they found it four thousand
    times as often as uniform pairs (adder.train.data.nine_dense_pairs), at a fiftieth of
    the cost."""
    if not (further and size and result.wrong == 0 and "further_check_wrong" in entry):
        return result
    result = suites.confirmed_drawn(result, predict, config, seed, size // NINES_PER_BEYOND, family="nines")
    if result.wrong == 0:
        result = suites.confirmed(result, predict, config, seed, size, skip=suites.UNIFORM_SIZE + further)
        runs = further // suites.RUNS_PER_FURTHER
        result = suites.confirmed_drawn(result, predict, config, seed, size // suites.RUNS_PER_FURTHER, skip=runs)
    entry.update(beyond_check_size=size, beyond_check_wrong=result.wrong)
    return result


def averaged_model(model: keras.Model, mean: WeightMean, copy: keras.Model | None = None) -> keras.Model:
    """A copy of ``model`` holding ``mean``'s weights, with no optimizer: the model a run with
    ``average_weights`` checks and ships, while training goes on with ``model``'s own. An
    earlier ``copy`` is given the new mean rather than built again every epoch."""
    copy = keras.models.clone_model(model) if copy is None else copy
    copy.set_weights(mean.weights())
    return copy


def going_beyond(settings: TrainSettings, history: list[dict]) -> bool:
    """Whether a further check of this run has been clean, so that its verdicts go on
    (``confirmed_beyond``) and its mining draws nine-dense pairs too. Until then a run with
    ``confirm_beyond`` is the same run as one without, epoch for epoch."""
    return bool(settings.confirm_beyond) and any(h.get("further_check_wrong") == 0 for h in history)


def confirming(settings: TrainSettings, history: list[dict]) -> bool:
    """Whether a fresh draw of this run has been clean, so that its checks go on further
    (``confirmed_further``) and its mining draws propagate runs too. Until then a run with
    ``confirm_further`` is the same run as one without, epoch for epoch."""
    return bool(settings.confirm_further) and any(h.get("fresh_check_wrong") == 0 for h in history)


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed from; the message says how to start afresh."""


class Checkpoint:
    """The last completed epoch's model and optimizer state, plus what run it belongs to.

    It is four files, and a kill between writing two of them would pair one epoch's model
    with the state of the epoch before: a resume would then silently retrain an epoch from
    the wrong weights. So each save writes all of them into ``next/`` first, ``state.json``
    last, and only then moves them into place, ``state.json`` last again. While
    ``next/state.json`` exists, the files still in ``next/`` are the checkpoint's (a save
    cut off while moving them is read as the complete new epoch, and the next save ends
    the move); without it, ``next/`` is an unfinished save and is ignored.
    """

    FILES = ("last.keras", "replay.json", "mean.npz", "state.json")  # state.json last: it commits a save

    def __init__(self, out: Path, identity: dict) -> None:
        self.dir = checkpoint_dir(out)
        self.identity = identity
        self.staging = self.dir / "next"

    def _path(self, name: str) -> Path:
        staged = self.staging / name
        if (self.staging / "state.json").exists() and staged.exists():
            return staged
        return self.dir / name

    model_path = property(lambda self: self._path("last.keras"))
    pool_path = property(lambda self: self._path("replay.json"))
    mean_path = property(lambda self: self._path("mean.npz"))
    state_path = property(lambda self: self._path("state.json"))

    def _settle(self) -> None:
        """Move a committed save from ``next/`` into place; drop an uncommitted one."""
        if (self.staging / "state.json").exists():
            for name in self.FILES:
                if (self.staging / name).exists():
                    os.replace(self.staging / name, self.dir / name)
        shutil.rmtree(self.staging, ignore_errors=True)

    def load(self, config: ModelConfig) -> tuple[keras.Model, int, ReplayPool, WeightMean] | None:
        """The checkpoint to resume from, or None; a damaged one stops the run with a way out."""
        if not self.state_path.exists():
            return None
        afresh = f"delete {self.dir} to start afresh"
        try:
            state = json.loads(self.state_path.read_text())
            epochs_done = int(state["epochs_done"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{self.state_path} is unreadable ({exc}); {afresh}") from None
        if state.get("identity") != self.identity:
            raise CheckpointError(
                f"{self.dir} holds a checkpoint of a run with other options; "
                f"rerun with the same options to resume, or {afresh}"
            )
        try:
            model = keras.saving.load_model(self.model_path, compile=True, safe_mode=True)
        except Exception as exc:  # Keras raises many types for a damaged archive
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{self.model_path} could not be loaded ({reason}); {afresh}") from None
        try:
            pool = ReplayPool.load(self.pool_path, config) if self.pool_path.exists() else ReplayPool()
            mean = WeightMean.load(self.mean_path) if self.mean_path.exists() else WeightMean()
        except ValueError as exc:
            raise CheckpointError(f"{exc}; {afresh}") from None
        return model, epochs_done, pool, mean

    def save(
        self,
        model: keras.Model,
        config: ModelConfig,
        epochs_done: int,
        history: list,
        pool: ReplayPool,
        seconds: float = 0.0,
        cycles: list[Cycle] = (),
        mean: WeightMean | None = None,
    ) -> None:
        try:
            self.dir.mkdir(exist_ok=True)
            self._settle()
            self.staging.mkdir()
        except OSError as exc:
            raise WriteError(f"cannot write {self.dir}: {exc.strerror or exc}") from None
        with alone():  # only process 0 saves
            save_keras(model, config, self.staging / "last.keras")
        pool.save(self.staging / "replay.json")
        if mean is not None and mean.count:
            mean.save(self.staging / "mean.npz")
        state = {
            "identity": self.identity,
            "epochs_done": epochs_done,
            "seconds": round(seconds, 1),
            "cycles": [c.to_dict() for c in cycles],
            "history": history,
        }
        write_atomic(self.staging / "state.json", lambda tmp: tmp.write_text(json.dumps(state, indent=2)))
        try:
            self._settle()
        except OSError as exc:
            raise WriteError(f"cannot write {self.dir}: {exc.strerror or exc}") from None

    def history(self) -> list:
        if not self.state_path.exists():
            return []
        return json.loads(self.state_path.read_text()).get("history", [])

    def cycles(self) -> list[Cycle]:
        """The learning-rate cycles the run has planned so far (empty for a checkpoint without them)."""
        if not self.state_path.exists():
            return []
        try:
            return [Cycle.from_dict(c) for c in json.loads(self.state_path.read_text()).get("cycles", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                f"{self.state_path} has unreadable cycles ({exc}); delete {self.dir} to start afresh"
            ) from None

    def seconds(self) -> float:
        """Training and checking time spent by the runs that wrote this checkpoint; 0 for none, or
        for a damaged one (which ``load`` refuses with a way out)."""
        try:
            value = json.loads(self.state_path.read_text()).get("seconds", 0.0)
        except (OSError, ValueError, AttributeError):
            return 0.0
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0 else 0.0

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Outcome:
    """How a run ended: ``exact`` only when an exhaustive check found nothing wrong."""

    result: Evaluation | None  # the last check, if it is the model's final word
    exact: bool
    reason: str  # why the run stopped, in words


def fit(
    config: ModelConfig,
    arch: Architecture,
    settings: TrainSettings,
    out: Path,
    log: Callable[[str], None] = print,
    stop_when_exact: bool = False,
    init: keras.Model | None = None,
    cluster: Cluster = Cluster(),
) -> tuple[keras.Model, list[dict], Outcome]:
    """Train, checkpointing after every epoch, until exact or out of budget.

    Every probe's wrong queries join the replay pool; a check (every ``check_every``
    epochs, once the probe is exact, and at the end of every learning-rate cycle)
    replaces the pool with what is wrong. With ``stop_when_exact``, training ends once
    an exhaustive check finds nothing wrong; a cycle that ends with wrong answers is
    followed by another (``adder.train.policy``), until the
    budget (``max_epochs``, ``max_minutes``) runs out. Without it, one cycle.
    ``init`` is a model to start from (fine-tuning) instead of fresh weights; a resumed
    run starts from its checkpoint either way. Every process of a ``cluster`` runs this
    alike, on its slice of each batch; only process 0 writes the checkpoint.
    Returns the model, the per-epoch history and how the run ended.
    """
    checkpoint = Checkpoint(out, run_identity(config, arch, settings))
    if cluster.joined and not same_everywhere(file_fingerprint(checkpoint.state_path)):
        raise CheckpointError(
            f"the processes do not all see the same checkpoint {checkpoint.dir}: --out must be in a folder "
            "every process reads (shared between hosts), or delete the checkpoint to start afresh"
        )
    keras.utils.set_random_seed(settings.seed)  # before loading too: every process must build the same seed state
    resumed = checkpoint.load(config)
    codec = Codec(config)
    spent = 0.0  # seconds of earlier runs of this checkpoint, against --max-minutes
    cycles = [first_cycle(settings.epochs, settings.learning_rate)]
    mean = WeightMean()
    if resumed:
        model, start, pool, mean = resumed
        history = checkpoint.history()
        spent = checkpoint.seconds()
        cycles = checkpoint.cycles() or cycles
        log(f"resuming from epoch {start + 1} (checkpoint {checkpoint.dir}, replay pool {len(pool):,})")
    else:
        model = init if init is not None else build_model(config, arch)
        model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss="sparse_categorical_crossentropy")
        start, history, pool = 0, [], ReplayPool()
    if init is not None and not resumed and (stop_when_exact or settings.replay_share):
        # A model to finish: find everything it gets wrong before the first epoch, so replay starts
        # at once on exactly those queries (a sample would leave most of a near-exact model's few out).
        result = full_check(model, config)
        entry = {"epoch": 0}
        if stop_when_exact:
            result = confirmed_afresh(
                model,
                config,
                result,
                suites.fresh_seed(settings.seed, 0),
                entry,
                settings.confirm_further,
                settings.confirm_beyond,
            )
        pool.reset(result.wrong_queries)
        log(f"  check of the starting model: {result.summary()}")
        history.append(entry | {"full_check_wrong": result.wrong, "replay_pool": len(pool)})
        if stop_when_exact and result.wrong == 0:
            log("stopping: the starting model is already exact on the whole domain")
            return model, history, Outcome(result, True, "the starting model is exact")
    averaged = averaged_model(model, mean) if mean.count else None  # the mean's model, once there is a mean

    def judged_model() -> keras.Model:  # what the checks and mining judge, and what the run returns
        return model if averaged is None else averaged

    probe = probe_expressions(config, settings.seed)
    probe_x, probe_truth = codec.encode_expressions(probe), values_of(probe)  # once, not every epoch
    last_full_check = -FULL_CHECK_EVERY
    last_epoch = settings.epoch_budget if stop_when_exact else settings.epochs
    began = time.perf_counter()
    result = None
    for epoch in range(start, last_epoch):
        if settings.max_minutes and spent + time.perf_counter() - began >= 60 * settings.max_minutes:
            log(f"stopping: the budget of {settings.max_minutes:g} minutes is spent, after epoch {epoch}")
            final = result if result is not None and result.is_verdict else None
            reason = f"the budget of {settings.max_minutes:g} minutes is spent"
            return judged_model(), history, Outcome(final, False, reason)
        cycle = cycles[-1]
        model.optimizer.learning_rate.assign(learning_rate_at(cycle, epoch, settings.schedule))
        expressions = epoch_expressions(
            config,
            settings.samples,
            settings.seed,
            epoch,
            settings.terms_at(config, epoch),
            settings.small_operands,
            pool.queries,
            settings.replay_share,
            settings.term_weights,
            settings.large_operands,
            settings.carry_chains,
            settings.sparse_operands,
        )
        x, y = encode_epoch(config, expressions)
        started = time.perf_counter()
        loss = train_epoch(model, x, y, settings.batch_size, cluster)
        seconds = time.perf_counter() - started
        if settings.average_weights and going_beyond(settings, history):
            mean.add(model.get_weights())
            averaged = averaged_model(model, mean, averaged)
        judged = judged_model()
        probe_right = answers_right(model, codec, probe_x, probe_truth)
        probe_em = float(probe_right.mean())
        pool.add([probe[i] for i in np.flatnonzero(~probe_right).tolist()])
        entry = {"epoch": epoch + 1, "loss": loss, "probe_exact_match": probe_em}
        mining = mining_now(settings, cycle, history)
        runs = nines = 0
        if mining:
            probabilities = probability_predictor(judged, config)[0]
            runs = settings.mine_sample // RUNS_PER_MINED if confirming(settings, history) else 0
            nines = settings.mine_sample // RUNS_PER_MINED if going_beyond(settings, history) else 0
            mined = mine(
                probabilities, config, settings.mine_sample, settings.seed, epoch + 1, settings.mine_margin, runs, nines
            )
            pool.add(mined)
            entry["mined"] = len(mined)
        entry["replay_pool"] = len(pool)
        if len(cycles) > 1:
            entry["cycle"] = len(cycles)
        if judged is not model:
            entry["averaged_epochs"] = mean.count
        history.append(entry)
        log(
            f"epoch {epoch + 1}/{last_epoch}: {seconds:.1f} s, loss {loss:.5f}, "
            f"exact-match on {PROBE_SIZE:,} probe queries {100 * probe_em:.2f}%, "
            + (f"{len(mined):,} of {settings.mine_sample + runs + nines:,} fresh answers unsure, " if mining else "")
            + f"replay pool {len(pool):,}"
            + (f", judged as the mean of epochs {epoch + 2 - mean.count}-{epoch + 1}" if judged is not model else "")
        )
        scheduled = settings.check_every and (epoch + 1) % settings.check_every == 0
        probe_due = (  # without a schedule, a probe that is all right calls for a full check
            not settings.check_every
            and stop_when_exact
            and probe_em == 1.0
            and epoch + 1 - last_full_check >= FULL_CHECK_EVERY
        )
        cycle_end = stop_when_exact and epoch + 1 == cycle.end
        result = None
        if scheduled or probe_due or cycle_end:
            last_full_check = epoch + 1
            started = time.perf_counter()
            result = full_check(
                judged,
                config,
                settings.check_sample,
                settings.seed * 100_003 + epoch + 1,
                carry_chains=settings.carry_chains,
                sparse_operands=settings.sparse_operands,
            )
            if not result.is_verdict:  # a sampled check: the pool keeps what is still wrong, plus its finds
                pooled = pool.queries
                pooled_x, pooled_truth = codec.encode_expressions(pooled), values_of(pooled)
                still = ~answers_right(judged, codec, pooled_x, pooled_truth)
                known_wrong = int(still.sum())
                if mining:  # mined queries stay while they are unsure, right or not
                    still |= ~answers_sure(judged, codec, pooled_x, pooled_truth, settings.mine_margin)
                pool.reset([q for q, keep in zip(pooled, still.tolist()) if keep])
                pool.add(result.wrong_queries)
                entry.update(sample_check_wrong=result.wrong, sample_check_total=result.total)
                log(f"  sampled check: {result.summary()}; {known_wrong:,} pooled queries still wrong")
                # The whole domain's time (6 min for a 44/44 arith here) only once neither the sample
                # nor any query known to be wrong (the last full check's finds, kept in the pool) is,
                # or at the end of a cycle that is finishing: the next cycle then replays every wrong
                # query, not only those a sample happened to meet (it met arith's one wrong query,
                # 99+99+99 in its six layouts, about every other check).
                clean = result.wrong == 0 and known_wrong == 0
                finishing = cycle_end and result.wrong <= NEAR * result.total
                checkable = config.domain_size <= EXHAUSTIVE_LIMIT or suites.applies(config)
                if stop_when_exact and (clean or finishing) and checkable:
                    result = full_check(judged, config)
            if stop_when_exact:
                fresh = suites.fresh_seed(settings.seed, epoch + 1)
                result = confirmed_afresh(
                    judged, config, result, fresh, entry, settings.confirm_further, settings.confirm_beyond
                )
            if result.is_verdict:
                pool.reset(result.wrong_queries)
                entry.update(full_check_wrong=result.wrong)
                log(f"  full check: {result.summary()}")
            entry.update(full_check_seconds=round(time.perf_counter() - started, 1), replay_pool=len(pool))
        exact = result is not None and result.wrong == 0 and result.is_verdict
        if cycle_end and not exact and epoch + 1 < last_epoch:
            hold = settings.hold_rate if suites_were_clean(history) else 0.0
            cycles.append(next_cycle(cycles, result.wrong, result.total, settings.epochs, settings.learning_rate, hold))
            what = {
                "again": "the same cycle again",
                "finish": "a finishing cycle with replay",
                "hold": "a finishing cycle held at a constant rate, with replay",
            }[cycles[-1].kind]
            log(
                f"cycle {len(cycles)}: {result.wrong:,} of {result.total:,} checked queries still wrong; {what}: "
                f"epochs {cycles[-1].start + 1}-{cycles[-1].end}, peak learning rate {cycles[-1].peak:.2g}"
            )
        if cluster.writer:
            checkpoint.save(model, config, epoch + 1, history, pool, spent + time.perf_counter() - began, cycles, mean)
        if stop_when_exact and exact:
            log(f"stopping early: exact on the whole domain after epoch {epoch + 1}")
            return judged, history, Outcome(result, True, f"exact after epoch {epoch + 1}")
    final = result if result is not None and result.is_verdict else None
    judged = judged_model()
    if not stop_when_exact:
        return judged, history, Outcome(final, bool(final and final.wrong == 0), f"{last_epoch} epochs done")
    return judged, history, Outcome(final, False, f"the budget of {last_epoch} epochs is spent")


def probe_expressions(config: ModelConfig, seed: int) -> list[Expression]:
    """PROBE_SIZE queries drawn uniformly over the domain's queries, fixed for the run.

    Drawn like the training data, the probe was half two-term queries on arith (0.17% of
    its domain) and said 99.97-100% while the whole domain had thousands wrong.
    """
    rng = np.random.default_rng([seed, PROBE_STREAM])
    return [e for shape, terms in sampled_blocks(config, PROBE_SIZE, rng) for e in expressions_of(shape, terms)]
