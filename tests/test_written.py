"""The batch graph written out from symbols to symbols (export/written.py): what it is made of,
that its shortcuts change no answer, and that the runtime trusts none of what it returns."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from adder import Adder, ModelError
from adder.session import MODELS_DIR, shipped_models

onnx = pytest.importorskip("onnx")

from adder.export import written  # noqa: E402  (needs onnx)
from adder.export.simplify import model_weights  # noqa: E402

QUERIES = [f"{n}+{2 * n}" for n in range(40)]


def weights_of(name: str):
    proto = onnx.load(MODELS_DIR / f"{name}.onnx")
    return proto, model_weights(proto, Adder(name).config)


TEXT_MODELS = [name for name in shipped_models() if Adder(name).config.layout == "text"]  # long has one graph


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_every_shipped_batch_graph_takes_and_gives_symbols_without_lstm_or_softmax(name):
    proto = onnx.load(MODELS_DIR / f"{name}.batch.onnx")
    ops = {node.op_type for node in proto.graph.node}
    assert "LSTM" not in ops and "Softmax" not in ops and "ArgMax" in ops
    (given,), (taken,) = proto.graph.input, proto.graph.output
    assert given.type.tensor_type.elem_type == taken.type.tensor_type.elem_type == onnx.TensorProto.INT64
    adder = Adder(name)
    adder.batch(["1+1"] * 9)
    assert adder.batch_path.name == f"{name}.batch.onnx" and adder._batch_form == "symbols"


@pytest.mark.parametrize("name", ["default", "calc"])
def test_the_tabulated_first_steps_change_no_symbol(name, monkeypatch):
    """The same graph with no step tabulated, on random symbol sequences (any symbol anywhere)."""
    import onnxruntime as ort

    proto, weights = weights_of(name)
    config = Adder(name).config
    assert written.tabulated_steps(config, weights.encoder[1].shape[-1]) >= 2
    tabulated = written.written_graph(weights, config, proto)
    monkeypatch.setattr(written, "TABLE_BYTES", 0)
    assert written.tabulated_steps(config, weights.encoder[1].shape[-1]) == 0
    plain = written.written_graph(weights, config, proto)
    x = np.random.default_rng(48).integers(0, len(config.alphabet), (20_000, config.input_length))
    runs = [ort.InferenceSession(g.SerializeToString()).run(None, {written.SYMBOLS_IN: x})[0] for g in (tabulated, plain)]
    assert (runs[0] != runs[1]).any(axis=1).sum() <= 2  # float32 rounding on inputs no query makes, at most
    answers = Adder(name)
    codec = answers.codec
    indices, _ = codec.encode_batch(QUERIES if name == "default" else ["3*4", "(7-9)*2", "99*99", "0-99"] * 10)
    symbols = [ort.InferenceSession(g.SerializeToString()).run(None, {written.SYMBOLS_IN: indices})[0] for g in (tabulated, plain)]
    assert np.array_equal(symbols[0], symbols[1])


def model_with_batch_graph(tmp_path: Path, graph) -> Path:
    shutil.copy(MODELS_DIR / "default.onnx", tmp_path / "m.onnx")
    shutil.copy(MODELS_DIR / "default.single.onnx", tmp_path / "m.single.onnx")
    onnx.save(graph, tmp_path / "m.batch.onnx")
    return tmp_path / "m.onnx"


@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_scores_that_are_not_finite_are_a_model_error_never_a_digit(tmp_path, poison, engine):
    """Argmax in the graph would read a NaN or infinite score as some symbol; the graph marks
    such a step past the alphabet and the runtime refuses it, as it refuses a NaN probability."""
    import dataclasses

    proto, weights = weights_of("default")
    bias = weights.bias.copy()
    bias[3] = poison
    graph = written.written_graph(dataclasses.replace(weights, bias=bias), Adder("default").config, proto)
    adder = Adder(model_with_batch_graph(tmp_path, graph), engine=engine)
    with pytest.raises(ModelError, match="m.batch.onnx: the model wrote a value that is not a finite number"):
        adder.batch(QUERIES)
    assert adder("50+11") == 61  # single queries run the untouched one-query graph


def constant_symbols(value: int, rows_minus: int = 0):
    """A graph with a batch graph's signature that writes ``value`` at every step."""
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(MODELS_DIR / "default.batch.onnx")
    config = Adder("default").config
    steps = config.output_length
    nodes = [
        helper.make_node("Slice", [written.SYMBOLS_IN, "start", "stop", "axis"], ["cut"]),
        helper.make_node("Mul", ["cut", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "value"], ["all"]),
        helper.make_node("Slice", ["all", "row0", "rows_end", "axis0"], [written.SYMBOLS_OUT]),
    ]
    constants = {
        "start": [0], "stop": [steps], "axis": [1], "zero": 0, "value": value,
        "row0": [0], "rows_end": [-rows_minus if rows_minus else 2**62], "axis0": [0],
    }
    graph = helper.make_graph(
        nodes,
        "constant",
        list(proto.graph.input),
        list(proto.graph.output),
        [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in constants.items()],
    )
    out = helper.make_model(graph, opset_imports=list(proto.opset_import))
    out.ir_version = proto.ir_version
    out.metadata_props.extend(proto.metadata_props)
    return out


@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
@pytest.mark.parametrize(
    ("value", "rows_minus", "message"),
    [
        (12, 0, "not a finite number"),  # the alphabet's size added: the graph's own mark
        (23, 0, "not a finite number"),
        (24, 0, "a symbol index outside its alphabet of 12"),
        (-1, 0, "a symbol index outside its alphabet of 12"),
        (2**40, 0, "a symbol index outside its alphabet of 12"),
        (3, 1, r"returned int64 \[39, 4\] for 40 queries, not int64 \[40, 4\]"),
    ],
)
def test_a_batch_graph_writing_no_symbol_of_the_alphabet_is_a_model_error(tmp_path, value, rows_minus, message, engine):
    adder = Adder(model_with_batch_graph(tmp_path, constant_symbols(value, rows_minus)), engine=engine)
    with pytest.raises(ModelError, match=message):
        adder.batch(QUERIES)
    with pytest.raises(ModelError, match=message):
        list(adder.results(QUERIES))


def test_a_batch_graph_writing_a_digit_everywhere_answers_that_digit(tmp_path):
    """The checks let a well-formed answer through: symbol 3 at every step reads 3333."""
    adder = Adder(model_with_batch_graph(tmp_path, constant_symbols(3)))
    assert adder.batch(QUERIES) == [3333] * len(QUERIES)


def test_predict_tensor_gives_probabilities_from_the_model_graph_when_batches_run_on_symbols():
    adder = Adder("default")
    x = adder.codec.encode_queries(QUERIES)
    probabilities = adder.predict_tensor(x)
    assert probabilities.shape == (40, 4, 12) and np.allclose(probabilities.sum(-1), 1, atol=1e-5)
    assert np.array_equal(probabilities.argmax(-1), adder.answer_symbols(adder.codec.encode_batch(QUERIES)[0]))
