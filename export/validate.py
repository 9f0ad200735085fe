"""Prove an export matches its Keras source before anyone ships it.

As in optimum's exporter: run both on the same inputs, compare with an explicit
absolute tolerance, and fail loudly with the largest difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime import Adder
from runtime.codec import Codec
from runtime.config import ModelConfig
from train.data import sample_expressions

ATOL = 1e-5


class ValidationError(ValueError):
    """The export disagrees with its Keras source."""


@dataclass(frozen=True)
class ValidationReport:
    domain_queries: int
    random_inputs: int
    max_abs_diff: float
    answers_differing: int


def keras_probs(model, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    return model.predict(x, batch_size=batch, verbose=0)


def random_inputs(config: ModelConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    """Arbitrary symbol sequences, including ones no query produces."""
    indices = rng.integers(0, len(config.alphabet), size=(count, config.input_length))
    return Codec(config).to_model_input(indices)


def validate_export(
    model,
    adder: Adder,
    config: ModelConfig,
    queries: int = 4000,
    randoms: int = 1000,
    atol: float = ATOL,
    seed: int = 0,
) -> ValidationReport:
    rng = np.random.default_rng(seed)
    x_domain = adder.codec.encode_expressions(sample_expressions(config, queries, rng))
    x_random = random_inputs(config, randoms, rng)
    worst = 0.0
    for x in (x_domain, x_random):
        diff = np.abs(keras_probs(model, x) - adder.predict_tensor(x))
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
    keras_answers, keras_valid = adder.codec.decode_answers(keras_probs(model, x_domain))
    onnx_answers, onnx_valid = adder.codec.decode_answers(adder.predict_tensor(x_domain))
    differing = int(((keras_answers != onnx_answers) | (keras_valid != onnx_valid)).sum())
    report = ValidationReport(queries, randoms, worst, differing)
    if worst > atol or differing:
        raise ValidationError(
            f"ONNX export disagrees with Keras: max probability difference {worst:.3g} "
            f"(tolerance {atol:g}), {differing} of {queries} decoded answers differ"
        )
    return report
