"""Prove an export matches its Keras source before anyone ships it.

As in optimum's exporter: run both on the same inputs, compare with an explicit
absolute tolerance, and fail loudly with the largest difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adder import Adder
from adder.codec import Codec
from adder.config import ModelConfig
from adder.eval.draws import sample_expressions

# Domain queries: what users are answered. Random symbol sequences lie far outside
# the training distribution, where a confident model amplifies float32 rounding: on
# the default model, Keras itself is 8.5e-6 from a float64 reference there and
# onnxruntime 1.4e-5 (measured once, by hand); on the 44/44 arith model, onnxruntime
# is 1.6e-4 from Keras on random inputs and 4.3e-7 on its domain queries. A conversion
# bug moves probabilities by 1e-2 or more, so 1e-3 still catches it by an order of
# magnitude, and every decoded answer must be identical whatever the tolerance.
ATOL = 1e-5
ATOL_RANDOM = 1e-3


class ValidationError(ValueError):
    """The export disagrees with its Keras source."""


@dataclass(frozen=True)
class ValidationReport:
    domain_queries: int
    random_inputs: int
    domain_max_diff: float
    random_max_diff: float
    answers_differing: int


def keras_probs(model, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    return model.predict(x, batch_size=batch, verbose=0)


def random_inputs(config: ModelConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    """Arbitrary symbol sequences, including ones no query produces."""
    indices = rng.integers(0, len(config.alphabet), size=(count, config.input_length))
    return Codec(config).to_model_input(indices)


def max_abs_diff(model, adder: Adder, x: np.ndarray) -> float:
    diff = np.abs(keras_probs(model, x) - adder.predict_tensor(x))
    return float(diff.max()) if diff.size else 0.0


def validate_export(
    model,
    adder: Adder,
    config: ModelConfig,
    queries: int = 4000,
    randoms: int = 1000,
    atol: float = ATOL,
    atol_random: float = ATOL_RANDOM,
    seed: int = 0,
) -> ValidationReport:
    """Compare Keras and the ONNX model loaded by the runtime; raise ValidationError past tolerance."""
    rng = np.random.default_rng(seed)
    x_domain = adder.codec.encode_expressions(sample_expressions(config, queries, rng))
    x_random = random_inputs(config, randoms, rng)
    keras_answers, keras_valid = adder.codec.decode_answers(keras_probs(model, x_domain))
    onnx_answers, onnx_valid = adder.codec.decode_answers(adder.predict_tensor(x_domain))
    differing = int(((keras_answers != onnx_answers) | (keras_valid != onnx_valid)).sum())
    report = ValidationReport(
        queries, randoms, max_abs_diff(model, adder, x_domain), max_abs_diff(model, adder, x_random), differing
    )
    if report.domain_max_diff > atol or report.random_max_diff > atol_random or differing:
        raise ValidationError(
            f"ONNX export disagrees with Keras: max probability difference {report.domain_max_diff:.3g} "
            f"on domain queries (tolerance {atol:g}), {report.random_max_diff:.3g} on random inputs "
            f"(tolerance {atol_random:g}); {differing} of {queries} decoded answers differ"
        )
    return report


WHOLE_DOMAIN = 2_000_000  # a symbols graph is compared with Keras on every query of a domain up to this size


@dataclass(frozen=True)
class SymbolsReport:
    domain_queries: int
    whole_domain: bool
    random_inputs: int
    random_compared: int


def validate_symbols(
    model,
    answer_symbols,
    config: ModelConfig,
    queries: int = 4000,
    randoms: int = 1000,
    atol_random: float = ATOL_RANDOM,
    seed: int = 0,
    whole_domain: int = WHOLE_DOMAIN,
) -> SymbolsReport:
    """Compare a graph that answers in symbols (``answer_symbols(indices) -> [N, steps]``) with
    Keras's argmax: identical on the validation queries and on every query of a domain up to
    ``whole_domain``, and on random inputs wherever Keras's two best symbols are further apart
    than the probability tolerance (closer than that, float32 rounding may pick either)."""
    from adder.eval.domain import domain_blocks

    codec = Codec(config)
    rng = np.random.default_rng(seed)
    expressions = sample_expressions(config, queries, rng)
    blocks = [codec.encode_expressions(expressions)]
    indices = [np.argmax(blocks[0], axis=-1)] if config.encoding == "onehot" else None
    if indices is None:
        raise ValidationError("only one-hot models answer in symbols")
    everything = config.domain_size <= whole_domain
    if everything:
        indices += [codec.shape_indices(shape, terms) for shape, terms in domain_blocks(config)]
    differing = 0
    for block in indices:
        want = keras_probs(model, codec.to_model_input(block)).argmax(axis=-1)
        differing += int((np.asarray(answer_symbols(block)) != want).any(axis=1).sum())
    x_random = rng.integers(0, len(config.alphabet), size=(randoms, config.input_length))
    probs = keras_probs(model, codec.to_model_input(x_random))
    top2 = np.sort(probs, axis=-1)[..., -2:]
    clear = ((top2[..., 1] - top2[..., 0]) > atol_random).all(axis=1)
    random_differing = int(((np.asarray(answer_symbols(x_random)) != probs.argmax(axis=-1)).any(axis=1) & clear).sum())
    if differing or random_differing:
        where = "every domain query and the validation queries" if everything else f"{queries} validation queries"
        raise ValidationError(
            f"the symbols graph disagrees with Keras: {differing} answers differ over {where}, "
            f"{random_differing} of {int(clear.sum())} random inputs with a clear best symbol"
        )
    return SymbolsReport(queries, everything, randoms, int(clear.sum()))
