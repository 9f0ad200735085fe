"""Keras and ONNX must give the same probabilities (within 1e-5) and the same answers."""

from pathlib import Path

import numpy as np
import pytest

from adder import Adder
from adder.codec import Codec
from adder.export.validate import ATOL_RANDOM
from tests.conftest import needs_training, run_adder

ATOL = 1e-5
REPO = Path(__file__).resolve().parents[1]

pytestmark = [needs_training, pytest.mark.slow]


def assert_parity(keras_path: Path, onnx_path: Path, expressions, randoms: int = 500, atol_random: float = ATOL):
    from adder.export.validate import keras_probs, random_inputs
    from adder.train.archive import load_keras

    model, config = load_keras(keras_path)
    adder = Adder(onnx_path)
    assert adder.config == config
    codec = Codec(config)
    x = codec.encode_expressions(expressions)
    keras_out, onnx_out = keras_probs(model, x), adder.predict_tensor(x)
    assert np.abs(keras_out - onnx_out).max() <= ATOL
    keras_answers, keras_valid = codec.decode_answers(keras_out)
    onnx_answers, onnx_valid = codec.decode_answers(onnx_out)
    assert (keras_answers == onnx_answers).all() and (keras_valid == onnx_valid).all()
    x_random = random_inputs(config, randoms, np.random.default_rng(1))
    assert np.abs(keras_probs(model, x_random) - adder.predict_tensor(x_random)).max() <= atol_random


def test_tiny_model_agrees_on_every_query_of_its_domain(tiny_model):
    from adder.eval.domain import all_expressions
    from adder.train.archive import read_keras_config

    keras_path, onnx_path = tiny_model
    (every,) = list(all_expressions(read_keras_config(keras_path)))
    assert len(every) == 100
    assert_parity(keras_path, onnx_path, every)


def test_export_uses_fused_lstm_ops_and_embeds_the_config(tiny_model):
    import onnx

    from adder.config import METADATA_KEY, ModelConfig
    from adder.export.convert import fused_lstm_count
    from adder.train.archive import read_keras_config

    keras_path, onnx_path = tiny_model
    proto = onnx.load(onnx_path)
    assert fused_lstm_count(proto) == 2
    for value in (proto.graph.input[0], proto.graph.output[0]):  # the name the runtime pins for single queries
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert ModelConfig.from_json(metadata[METADATA_KEY]) == read_keras_config(keras_path)


@pytest.mark.parametrize("rows", [0, 1, 3, 7, 8, 40])
def test_every_batch_size_gives_the_answers_of_single_queries(tiny_model, rows):
    """Small batches run row by row on the batch-of-1 session, larger ones on the batch session."""
    from adder.export.validate import random_inputs

    adder = Adder(tiny_model[1])
    x = random_inputs(adder.config, rows, np.random.default_rng(rows))
    out = adder.predict_tensor(x)
    assert out.shape == (rows, adder.config.output_length, len(adder.config.alphabet))
    for row, probs in zip(x, out):
        np.testing.assert_allclose(adder.predict_tensor(row[np.newaxis])[0], probs, atol=1e-6)


def test_export_writes_a_batch_graph_that_batches_run_on(tiny_model):
    """Written out from symbols to symbols: no LSTM op left, and Keras's answer to every query."""
    import onnx

    from adder.eval.domain import all_expressions
    from adder.export.convert import fused_lstm_count
    from adder.export.validate import keras_probs
    from adder.session import batch_graph_path
    from adder.train.archive import load_keras

    keras_path, onnx_path = tiny_model
    batch_path = batch_graph_path(onnx_path)
    assert batch_path.name == "tiny.batch.onnx" and fused_lstm_count(onnx.load(batch_path)) == 0
    model, config = load_keras(keras_path)
    (every,) = list(all_expressions(config))
    adder = Adder(onnx_path)
    codec = adder.codec
    want, valid = codec.decode_answers(keras_probs(model, codec.encode_expressions(every)))
    assert valid.all() and adder.batch([e.text() for e in every]) == want.tolist()
    assert adder.batch_path == batch_path and adder._batch_form == "symbols"


def test_an_export_whose_symbols_graph_disagrees_with_keras_is_refused(tiny_model):
    """validate_symbols compares every query: two digits' scores swapped is caught."""
    import dataclasses

    import onnx
    import onnxruntime as ort

    from adder.export.simplify import model_weights
    from adder.export.validate import ValidationError, validate_symbols
    from adder.export.written import SYMBOLS_IN, written_graph
    from adder.train.archive import load_keras

    keras_path, onnx_path = tiny_model
    model, config = load_keras(keras_path)
    proto = onnx.load(onnx_path)
    weights = model_weights(proto, config)
    kernel = weights.kernel.copy()
    kernel[:, [1, 2]] = kernel[:, [2, 1]]
    for w, fails in ((weights, False), (dataclasses.replace(weights, kernel=kernel), True)):
        session = ort.InferenceSession(written_graph(w, config, proto).SerializeToString())

        def answer(indices, session=session):
            return session.run(None, {SYMBOLS_IN: indices.astype(np.int64)})[0]

        if fails:
            with pytest.raises(ValidationError, match="answers differ over every domain query"):
                validate_symbols(model, answer, config, queries=200, randoms=100)
        else:
            assert validate_symbols(model, answer, config, queries=200, randoms=100).whole_domain


def test_a_batch_graph_of_another_model_is_not_used(tiny_model, tmp_path):
    """A stale or foreign .batch.onnx beside a model (say, an export interrupted between its two
    files) must not answer for it: the embedded configs, training record included, must match."""
    import shutil

    from adder.eval.domain import all_expressions
    from adder.train.archive import read_keras_config

    keras_path, onnx_path = tiny_model
    shutil.copy(onnx_path, tmp_path / "m.onnx")
    shutil.copy(REPO / "runtime" / "models" / "default.batch.onnx", tmp_path / "m.batch.onnx")
    adder = Adder(tmp_path / "m.onnx")
    (every,) = list(all_expressions(read_keras_config(keras_path)))
    texts = [e.text() for e in every]
    assert adder.batch(texts) == [adder(text) for text in texts]
    assert adder.batch_path == tmp_path / "m.onnx"


def test_cli_answers_with_a_freshly_exported_model(tiny_model):
    _, onnx_path = tiny_model
    result = run_adder("--model", str(onnx_path), "3+4")
    assert result.returncode == 0 and result.stdout.decode().strip().isdigit()
    refused = run_adder("--model", str(onnx_path), "3+10")
    assert refused.returncode == 1 and "0..9" in refused.stderr.decode()


def test_validation_fails_loudly_when_the_export_differs(tiny_model):
    from adder.export.validate import ValidationError, validate_export
    from adder.train.archive import load_keras

    keras_path, onnx_path = tiny_model
    model, config = load_keras(keras_path)
    model.set_weights([w + 0.05 for w in model.get_weights()])
    with pytest.raises(ValidationError, match="max probability difference .* on domain queries"):
        validate_export(model, Adder(onnx_path), config, queries=200, randoms=50)


def test_shipped_default_model_agrees_with_its_keras_source():
    from adder.eval.draws import sample_expressions
    from adder.train.archive import read_keras_config

    keras_path = REPO / "train" / "models" / "default.keras"
    config = read_keras_config(keras_path)
    expressions = sample_expressions(config, 20_000, np.random.default_rng(5))
    # Random symbol sequences amplify float32 rounding in a confident model; see export/validate.py.
    assert_parity(keras_path, REPO / "runtime" / "models" / "default.onnx", expressions, atol_random=ATOL_RANDOM)


def test_single_queries_run_on_the_one_query_graph_and_agree_with_keras(tiny_model):
    from adder.eval.domain import all_expressions
    from adder.export.validate import keras_probs
    from adder.train.archive import load_keras

    keras_path, onnx_path = tiny_model
    adder = Adder(onnx_path)
    assert adder.single_path == onnx_path.with_name("tiny.single.onnx")
    model, config = load_keras(keras_path)
    (every,) = list(all_expressions(config))
    keras_answers, keras_valid = Codec(config).decode_answers(
        keras_probs(model, Codec(config).encode_expressions(every))
    )
    for expression, answer, valid in zip(every, keras_answers.tolist(), keras_valid.tolist()):
        if valid:
            assert adder(expression.text()) == answer
    single = adder._session.run(None, {adder._input_name: Codec(config).encode_one(every[7])})[0]
    assert np.abs(single - keras_probs(model, Codec(config).encode_expressions(every[7:8]))).max() <= ATOL


def test_a_model_the_rebuild_does_not_know_exports_without_a_single_graph(tmp_path):
    import subprocess
    import sys

    keras_path, onnx_path = tmp_path / "stacked.keras", tmp_path / "stacked.onnx"
    train = [sys.executable, "-c", "from adder.commands.train import main; main()"]
    args = [
        "--largest",
        "9",
        "--epochs",
        "1",
        "--samples",
        "256",
        "--arch",
        "8,8/8",
    ]
    subprocess.run([*train, *args, "--out", str(keras_path)], check=True, capture_output=True, timeout=600)
    export = [sys.executable, "-c", "from adder.commands.export import main; main()", str(keras_path), "-o", str(onnx_path)]
    result = subprocess.run(export, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no single-query graph" in result.stdout and not onnx_path.with_name("stacked.single.onnx").exists()
    adder = Adder(onnx_path)
    assert adder.single_path == onnx_path and isinstance(adder("1+2"), int)
