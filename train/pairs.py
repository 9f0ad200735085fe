"""Training a pairs-layout model (adder.layout): one small LSTM read one digit pair a step.

The model is a many-to-many LSTM (``return_sequences``) and a Dense softmax per step, not the
encoder-decoder of the text layout: each step reads a pair and writes that column's digit.
Training shapes it for the proof (adder.eval.proof); the shaping is dropped before it is saved
(``plain_model``: the same weights in a plain Keras LSTM):

* the forget gate is held shut (its weights 0, its bias -20, so it passes 2e-9 of the old
  cell): the state after a step depends on the step before only through h;
* ``recurrent_units``: the next step reads only that many units of h (the recurrent kernel's
  other rows held at 0), so a step passes on little more than the carry;
* ``state_noise``: Gaussian noise on the h each step reads, so the model must answer right
  from near every state it reaches;
* ``settle`` (off in the shipped recipe): every output pulled toward 0 or +-tanh(1).

An epoch is ``samples`` fresh sequences of TRAIN_STEPS pairs, a share of them ending in
(0, 0) pairs as short operands do. Every ``check_every`` epochs the proof runs on the
weights; the run stops as soon as it passes: the check is a proof, not a sample.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np

from adder.config import ModelConfig
from adder.eval.proof import PairWeights, column_sums, prove
from adder.layout import PAIR_FEATURES
from adder.train.recipe import Recipe

TRAIN_STEPS = 16  # pairs per training sequence; the proof covers every length
SHUT_BIAS = -20.0  # the forget gate's bias: sigmoid(-20) = 2.1e-9
PROBE = 500  # sequences of PROBE_STEPS pairs judged after every epoch
PROBE_STEPS = 60
LOW_RATE = 0.05
CHAIN_ROWS, CHAIN_STEPS = 0.3, 0.9  # a cosine schedule ends at this share of the learning rate


class ShutForget(keras.constraints.Constraint):
    """Holds the forget gate's slice of an LSTM weight (Keras gate order i, f, c, o) at one value."""

    def __init__(self, units: int, value: float) -> None:
        self.units, self.value = units, value

    def __call__(self, w):
        mask = np.zeros(w.shape[-1], dtype="float32")
        mask[self.units : 2 * self.units] = 1.0
        return w * (1.0 - mask) + self.value * mask


class ShutRecurrent(ShutForget):
    """The recurrent kernel: the forget gate's columns held at 0, and every row but the first
    ``read`` held at 0 too, so the next step reads only those units of the state."""

    def __init__(self, units: int, read: int) -> None:
        super().__init__(units, 0.0)
        self.read = read

    def __call__(self, w):
        rows = np.zeros((w.shape[0], 1), dtype="float32")
        rows[: self.read] = 1.0
        return super().__call__(w) * rows


class Settle(keras.regularizers.Regularizer):
    """weight * mean squared distance of each output from the nearest of 0 and +-tanh(1).

    Keras divides a layer's activity penalty by the batch size; it is multiplied back here, so
    ``weight`` weighs the mean against the cross-entropy as written.
    """

    def __init__(self, weight: float) -> None:
        self.weight = keras.Variable(weight, trainable=False, name="settle")  # raised epoch by epoch

    def __call__(self, h):
        top, size = float(np.tanh(1.0)), keras.ops.abs(h)
        distance = keras.ops.mean(keras.ops.square(keras.ops.minimum(size, keras.ops.abs(top - size))))
        return self.weight * distance * keras.ops.cast(keras.ops.shape(h)[0], "float32")


class NoisyStateCell(keras.layers.LSTMCell):
    """An LSTM cell that, in training only, adds Gaussian noise to the state h it reads: a model
    that must stay right under it maps a neighbourhood of each state into one of the next."""

    def __init__(self, units: int, noise: float, seed: int, **options) -> None:
        super().__init__(units, **options)
        self.noise = noise
        self.noise_seed = keras.random.SeedGenerator(seed)

    def call(self, inputs, states, training=False):
        h, c = states[0], states[1]
        if training and self.noise:
            h = h + keras.random.normal(keras.ops.shape(h), stddev=self.noise, seed=self.noise_seed)
        return super().call(inputs, [h, c], training=training)


def build_pairs_model(
    config: ModelConfig, units: int, settle: float, noise: float = 0.0, seed: int = 0, read: int = 0
) -> keras.Model:
    """The model trained: a noisy-state LSTM (a plain one without noise), its forget gate shut,
    reading only the first ``read`` units of the state it passes on (all of them for 0)."""
    shut = {
        "unit_forget_bias": False,
        "kernel_constraint": ShutForget(units, 0.0),
        "recurrent_constraint": ShutRecurrent(units, read or units),
        "bias_constraint": ShutForget(units, SHUT_BIAS),
    }
    inputs = keras.Input((None, PAIR_FEATURES), name="query")
    if noise:
        layer = keras.layers.RNN(NoisyStateCell(units, noise, seed, **shut), return_sequences=True)
        layer.activity_regularizer = Settle(settle)
    else:
        layer = keras.layers.LSTM(units, return_sequences=True, activity_regularizer=Settle(settle), **shut)
    outputs = keras.layers.Dense(len(config.alphabet), activation="softmax")(layer(inputs))
    model = keras.Model(inputs, outputs, name="adder_pairs")
    for weight in model.layers[1].weights:  # start shut too, not only after the first step
        if weight.constraint is not None:
            weight.assign(weight.constraint(weight))
    return model


def plain_model(config: ModelConfig, trained: keras.Model) -> keras.Model:
    """The trained weights in a plain LSTM and Dense: the constraints, the pull and the noise only
    shaped training, and what is saved and exported is an ordinary Keras LSTM."""
    units = trained.layers[1].weights[1].shape[0]
    inputs = keras.Input((None, PAIR_FEATURES), name="query")
    lstm = keras.layers.LSTM(units, return_sequences=True)
    outputs = keras.layers.Dense(len(config.alphabet), activation="softmax")(lstm(inputs))
    model = keras.Model(inputs, outputs, name="adder_pairs")
    model.set_weights(trained.get_weights())
    return model


def pair_weights(model: keras.Model) -> PairWeights:
    """The LSTM and Dense weights as the proof reads them."""
    lstm, dense = model.layers[1], model.layers[2]
    kernel, recurrent, bias = (np.asarray(w.numpy()) for w in lstm.weights)
    return PairWeights(kernel, recurrent, bias, *(np.asarray(w.numpy()) for w in dense.weights))


def draw_pairs(rng: np.random.Generator, count: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Digit rows (count, steps) for a and b, lowest first. Three rows in ten are mostly carry
    chains (nine pairs in ten summing to 9, which pass a carry on), and three in ten end early
    in (0, 0) pairs as short operands do. Uniform pairs alone meet a chain of k nines one time in
    10**k: a model trained on them passed a carry along a short chain and lost it along a long one.
    """
    a, b = rng.integers(0, 10, (2, count, steps))
    chains = (rng.random(count) < CHAIN_ROWS)[:, np.newaxis] & (rng.random((count, steps)) < CHAIN_STEPS)
    a = np.where(chains, 9 - b, a)
    short = rng.random(count) < 0.3
    ends = rng.integers(1, steps, count)
    padded = short[:, np.newaxis] & (np.arange(steps) >= ends[:, np.newaxis])
    a[padded], b[padded] = 0, 0
    return a, b


def one_hot_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    eye = np.eye(10, dtype=np.float32)
    return np.concatenate([eye[a], eye[b]], axis=-1)


def fit_pairs(recipe: Recipe, config: ModelConfig, log=print) -> tuple[keras.Model, list[dict], object, str]:
    """Train until the proof passes or the budget is spent: (model, history, last proof, why it stopped)."""
    keras.utils.set_random_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    units = recipe.architecture().encoder[0]
    model = build_pairs_model(
        config, units, settle_weight(recipe, 1), recipe.state_noise, recipe.seed, recipe.recurrent_units
    )
    settle = model.layers[1].activity_regularizer if recipe.settle else None
    optimizer = keras.optimizers.Adam(recipe.learning_rate)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    probe_a, probe_b = draw_pairs(np.random.default_rng(recipe.seed + 1), PROBE, PROBE_STEPS)
    probe_x, probe_y = one_hot_pairs(probe_a, probe_b), column_sums(probe_a, probe_b) % 10
    history: list[dict] = []
    started, proof, reason = time.perf_counter(), None, f"{recipe.max_epochs} epochs were spent"
    for epoch in range(1, recipe.max_epochs + 1):
        rate = learning_rate_of(recipe, epoch)
        optimizer.learning_rate.assign(rate)
        if settle is not None:  # first the sums, then the regions (settle_weight)
            settle.weight.assign(settle_weight(recipe, epoch))
        a, b = draw_pairs(rng, recipe.samples, TRAIN_STEPS)
        fitted = model.fit(
            one_hot_pairs(a, b),
            column_sums(a, b) % 10,
            batch_size=recipe.batch_size,
            epochs=1,
            verbose=0,
            shuffle=False,
        )
        probe = float((model.predict(probe_x, batch_size=PROBE, verbose=0).argmax(-1) == probe_y).all(axis=1).mean())
        entry = {"epoch": epoch, "loss": round(float(fitted.history["loss"][-1]), 6), "learning_rate": rate}
        entry |= {"probe_exact_match": probe, "seconds": round(time.perf_counter() - started, 1)}
        due = recipe.check_every and epoch % recipe.check_every == 0 or epoch == recipe.max_epochs
        if probe == 1.0 and due:
            proof = prove(pair_weights(plain_model(config, model)))
            entry["proof_passed"] = proof.passed
            log(
                f"epoch {epoch}: loss {entry['loss']:.5f}, proof "
                + ("passed" if proof.passed else f"failed: {proof.failure}")
            )
            if proof.passed:
                history.append(entry)
                reason = f"the proof passed at epoch {epoch}"
                break
        else:
            probed = f"probe exact-match {probe:.3f} ({PROBE} x {PROBE_STEPS} pairs)"
            log(f"epoch {epoch}: loss {entry['loss']:.5f}, {probed}")
        history.append(entry)
        if recipe.max_minutes and time.perf_counter() - started > 60 * recipe.max_minutes:
            reason = f"{recipe.max_minutes:g} minutes were spent"
            break
    model = plain_model(config, model)
    if proof is None or not proof.passed:
        proof = prove(pair_weights(model))
    return model, history, proof, reason


def settle_weight(recipe: Recipe, epoch: int) -> float:
    """0 for the first settle_epochs epochs, while the model learns to add; then rising to settle
    over as many again. Pulled from the start, 8 units learned no more than one sum in ten."""
    start = recipe.settle_epochs
    return recipe.settle * min(1.0, max(0.0, (epoch - start) / start))


def learning_rate_of(recipe: Recipe, epoch: int) -> float:
    if recipe.schedule == "constant":
        return recipe.learning_rate
    share = (epoch - 1) / max(1, recipe.max_epochs - 1)
    return recipe.learning_rate * (LOW_RATE + (1 - LOW_RATE) * 0.5 * (1 + math.cos(math.pi * share)))


def train_pairs(recipe: Recipe, out: Path, *, name: str, command: str, log=print):
    """``train()`` for the pairs layout: the model, its record (with the proof) and curves."""
    import os

    from adder.train.device import versions
    from adder.train.run import Trained, write_model

    config = recipe.model_config()
    log(
        f"training on the CPU: {config.describe()}, pairs layout, {recipe.arch} LSTM units, "
        f"up to {recipe.max_epochs} epochs x {recipe.samples:,} sequences of {TRAIN_STEPS} pairs, until proven"
    )
    started = time.perf_counter()
    model, history, proof, reason = fit_pairs(recipe, config, log)
    seconds = time.perf_counter() - started
    for line in proof.summary():
        log(line)
    record = {
        "command": command,
        "recipe": {"name": name, **recipe.to_dict()},
        "arch": recipe.arch,
        "layers": {"encoder": [proof.units], "decoder": [], "embedding": 0},
        "family": "pairs: one LSTM over aligned digit pairs, a Dense softmax per step (no decoder)",
        "parameters": int(model.count_params()),
        "device": "CPU",
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "versions": versions(),
        "train_seconds": round(seconds, 1),
        "call_seconds": round(seconds, 1),
        "history": history,
        "proof": proof.to_dict(),
        "exact": proof.passed,
    }
    write_model(model, replace(config, training=record), out, recipe.arch)
    log(f"wrote {out}, {out.with_suffix('.json')} and {out.with_suffix('.png')} (trained in {seconds:.0f} s)")
    return Trained(proof.passed, record, "exact" if proof.passed else f"not proven when {reason}: {proof.failure}")
