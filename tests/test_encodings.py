"""The three input encodings: one-hot vectors, indices into an Embedding, and ordinal numbers."""

from __future__ import annotations

import numpy as np
import pytest

from adder import Adder
from adder.codec import Codec
from adder.config import ConfigError, ModelConfig
from adder.grammar import DIGITS
from tests.conftest import needs_training, run_adder
from tests.test_parity import assert_parity

ARITH = dict(min_terms=2, max_terms=3, max_operand=99, operators="+-*", brackets=True)


@pytest.mark.parametrize("grammar", [{}, ARITH], ids=["default", "arith"])
def test_ordinal_inputs_are_each_symbols_place_in_the_alphabet_scaled_to_one(grammar):
    config = ModelConfig(encoding="ordinal", **grammar)
    codec = Codec(config)
    expressions = [codec.parse(q) for q in (["3+10", "999+0"] if not grammar else ["(1-2)*3", "99+(0*7)", "5-6"])]
    x = codec.encode_expressions(expressions)
    assert x.shape == (len(expressions), config.input_length, 1) and x.dtype == np.float32
    indices = Codec(ModelConfig(**grammar)).encode_expressions(expressions).argmax(axis=-1)  # the one-hot's
    scale = len(config.alphabet) - 1
    assert np.array_equal(x[..., 0], indices.astype(np.float32) / np.float32(scale))
    # digit d is d scaled; operators, brackets and padding come after every digit, in order
    steps = codec.to_model_input(np.arange(len(config.alphabet)))[:, 0]
    assert steps[: len(DIGITS)].tolist() == pytest.approx([d / scale for d in range(10)])
    assert np.all(np.diff(steps) > 0) and steps[0] == 0 and steps[-1] == 1
    for expression, row in zip(expressions, x):
        assert np.array_equal(codec.encode_one(expression)[0], row)


def test_an_unknown_encoding_is_refused_by_name():
    with pytest.raises(ConfigError, match="encoding must be one of .*'ordinal'"):
        ModelConfig(encoding="ordinals")


@needs_training
@pytest.mark.slow
def test_an_ordinal_model_agrees_with_keras_on_every_query_and_answers_from_the_cli(tiny_ordinal_model):
    from adder.eval.domain import all_expressions
    from adder.train.archive import read_keras_config

    keras_path, onnx_path = tiny_ordinal_model
    config = read_keras_config(keras_path)
    assert config.encoding == "ordinal"
    (every,) = list(all_expressions(config))
    assert_parity(keras_path, onnx_path, every)
    adder = Adder(onnx_path)
    assert adder.single_path == onnx_path.with_name("tiny-ordinal.single.onnx")  # rebuilt, validated at export
    queries = [e.text() for e in every]
    batch = [str(r) for r in list(adder.results(queries))]
    assert [str(r) for r in (next(iter(adder.results([q]))) for q in queries)] == batch
    printed = run_adder("--model", str(onnx_path), *queries[:20])
    assert printed.stdout.decode().split("\n")[:20] == batch[:20], printed.stderr
