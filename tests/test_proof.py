"""The proof that `long` adds exactly at every length: it passes on the shipped file, it refuses
broken weights, and the float32 execution it covers is the one onnxruntime does."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from adder.eval.carried import carried_units as prove_carried_units  # noqa: E402
from adder.eval.proof import ACTIVATION_ERROR, PairWeights, column_sums, prove, run_model  # noqa: E402
from adder.session import MODELS_DIR  # noqa: E402

LONG = MODELS_DIR / "long.onnx"
pytestmark = pytest.mark.slow  # each proof takes seconds to a minute; CI runs them all


@pytest.fixture(scope="module")
def weights() -> PairWeights:
    from adder.export.pairs import graph_weights

    return graph_weights(onnx.load(LONG))


@pytest.fixture(scope="module")
def shipped_proof(weights):
    return prove(weights)


def handmade_adder() -> PairWeights:
    """A 19-unit LSTM set by hand to add: unit k writes tanh(1) when the column sum a + b + carry
    is at least k (its input gate opens), else 0, every gate saturated; the carry is unit 10 of
    the step before, and the Dense layer reads the column sum's last digit off the thresholds. A
    model the proof must pass, so the tests below show it tells a right model from a broken one."""
    units, steep, top = 19, 20.0, float(np.tanh(1.0))
    kernel = np.zeros((20, 4 * units))
    recurrent = np.zeros((units, 4 * units))
    bias = np.full(4 * units, steep)  # output gate open, candidate at 1
    bias[units : 2 * units] = -steep  # forget gate shut
    for k in range(1, units + 1):  # input gate k: open when a + b + carry >= k
        kernel[:10, k - 1] = kernel[10:, k - 1] = steep * np.arange(10)
        recurrent[9, k - 1] = steep / top  # the carry: unit 10's output over tanh(1), 0 or 1
        bias[k - 1] = steep * (0.5 - k)
    dense = np.zeros((units, 12))
    dense_bias = np.full(12, -10.0)
    dense_bias[:10] = 0.0
    for j in range(20):  # sum == j is y_j - y_(j+1), with y_k = h_k / tanh(1), y_0 = 1, y_20 = 0
        for k, sign in ((j, 10.0), (j + 1, -10.0)):
            if k == 0:
                dense_bias[j % 10] += sign
            elif k <= units:
                dense[k - 1, j % 10] += sign / top
    return PairWeights(*(x.astype(np.float32) for x in (kernel, recurrent, bias, dense, dense_bias)))


def test_a_handmade_adder_is_proven_and_right_on_long_random_pairs():
    weights = handmade_adder()
    a, b = np.random.default_rng(2).integers(0, 10, (2, 200, 300))
    logits, _ = run_model(weights, a, b)
    assert (logits.argmax(-1) == column_sums(a, b) % 10).all()
    proof = prove(weights)
    assert proof.passed, proof.failure
    assert proof.carried == (9,) and proof.regions == 2  # it reads only unit 10 of the step before
    assert proof.transitions == 100 * (1 + 2 * proof.pieces) and proof.smallest_margin > 1


def test_the_whole_state_box_proof_passes_the_handmade_adder_too():
    """The fallback for a model that reads more of its state than the carried proof takes."""
    proof = prove(handmade_adder(), history=1)
    assert proof.passed, proof.failure
    assert proof.transitions == 100 * (1 + proof.regions) and proof.smallest_margin > 1


def verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adder.commands.verify", *args], capture_output=True, text=True, timeout=300
    )


def test_the_shipped_long_model_is_proven_from_its_file_by_one_command():
    run = verify("long")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "proof passed: 2 regions (carry 0 and carry 1)" in run.stdout
    assert "every input of every length is answered right" in run.stdout
    assert "its record says the proof passed" in run.stdout


def test_the_shipped_proof_reads_one_unit_and_keeps_the_two_regions_apart(shipped_proof):
    assert shipped_proof.passed, shipped_proof.failure
    assert len(shipped_proof.carried) == 1 and shipped_proof.separation > 0.01
    assert shipped_proof.smallest_margin > 0.1


def test_a_model_whose_carried_weights_are_perturbed_until_it_errs_is_refused(model):
    """Noise on the one row of recurrent weights the carried proof reads (so it is that proof,
    not the whole-state fallback, that must refuse it) and on the input weights."""
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 10, (2, 400, 60))
    a[:200] = 9 - b[:200]
    row = int(prove_carried_units(model)[0])
    for scale in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
        recurrent, kernel = model.recurrent.copy(), model.kernel.copy()
        recurrent[row] += rng.normal(0, scale, recurrent.shape[1]).astype(np.float32)
        kernel += rng.normal(0, scale / 4, kernel.shape).astype(np.float32)
        broken = PairWeights(kernel, recurrent, model.bias, model.dense, model.dense_bias)
        logits, _ = run_model(broken, a, b)
        if (logits.argmax(-1) != column_sums(a, b) % 10).any():
            break
    else:
        pytest.fail("no perturbation made the model err")
    proof = prove(broken)
    assert proof.history == 0 and not proof.passed  # the carried proof, and it failed


def test_a_model_whose_cells_are_not_forgotten_is_refused(model):
    """The forget gate open: the cells keep growing, and the proof's bound on them fails."""
    bias = model.bias.copy()
    units = model.units
    bias[units : 2 * units] = 20.0
    proof = prove(PairWeights(model.kernel, model.recurrent, bias, model.dense, model.dense_bias))
    assert not proof.passed and proof.failure


def test_the_proof_of_the_shipped_file_says_what_the_record_inside_it_says(shipped_proof):
    from adder import Adder

    stored = Adder("long").config.training["proof"]
    assert stored["passed"] == shipped_proof.passed
    assert stored["failure"] == shipped_proof.failure
    assert stored["transitions_checked"] == shipped_proof.transitions


def test_the_float64_model_is_right_on_carry_chains_far_longer_than_it_was_trained_on(weights):
    """What the proof says, seen in one case it covers: 3,000 steps, against 16 in training."""
    a = np.full((4, 3000), 9)
    b = np.zeros((4, 3000), dtype=np.int64)
    b[:, 0] = 1  # a carry that runs the whole way
    a[1::2] = np.random.default_rng(0).integers(0, 10, (2, 3000))
    logits, _ = run_model(weights, a, b)
    assert (logits.argmax(-1) == column_sums(a, b) % 10).all()


@pytest.fixture(scope="module", params=["handmade", "shipped"])
def model(request, weights):
    return handmade_adder() if request.param == "handmade" else weights


def test_a_model_with_two_digits_swapped_in_its_output_is_refused(model):
    weights = model
    dense = weights.dense.copy()
    dense[:, [3, 4]] = dense[:, [4, 3]]
    broken = PairWeights(weights.kernel, weights.recurrent, weights.bias, dense, weights.dense_bias)
    proof = prove(broken)
    assert not proof.passed
    assert "does not write digit" in proof.failure


def test_a_model_whose_recurrent_weights_are_perturbed_until_it_errs_is_refused(model):
    """Noise on the weights that carry the carry: once the model is wrong on some input, the proof must fail."""
    weights = model
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 10, (2, 400, 60))
    a[:200] = 9 - b[:200]
    for scale in (0.5, 1.0, 2.0, 4.0):
        recurrent = weights.recurrent + rng.normal(0, scale, weights.recurrent.shape).astype(np.float32)
        broken = PairWeights(weights.kernel, recurrent, weights.bias, weights.dense, weights.dense_bias)
        logits, _ = run_model(broken, a, b)
        if (logits.argmax(-1) != column_sums(a, b) % 10).any():
            break
    else:
        pytest.fail("no perturbation made the model err")
    assert not prove(broken).passed


def test_a_broken_model_file_fails_adder_verify_with_the_case_that_fails(tmp_path, weights):
    from onnx import numpy_helper

    proto = onnx.load(LONG)
    for tensor in proto.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.shape == weights.dense.shape:  # the Dense kernel: swap two digits' columns
            array = array.copy()
            array[:, [1, 7]] = array[:, [7, 1]]
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    path = tmp_path / "broken.onnx"
    onnx.save(proto, path)
    run = verify(str(path))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "proof FAILED" in run.stdout and "does not write digit" in run.stdout
    assert "its record says the proof" in run.stdout


def test_a_weight_that_is_not_a_number_is_refused(tmp_path, weights):
    """NaN compares false with every bound: the graph reader and the proof must both refuse it."""
    from onnx import numpy_helper

    from adder.export.pairs import GraphError, graph_weights

    proto = onnx.load(LONG)
    for tensor in proto.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.shape == weights.dense.shape:
            array = array.copy()
            array[0, 3] = np.nan
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    with pytest.raises(GraphError, match="not all finite"):
        graph_weights(proto)
    dense = weights.dense.copy()
    dense[0, 3] = np.nan
    proof = prove(PairWeights(weights.kernel, weights.recurrent, weights.bias, dense, weights.dense_bias))
    assert not proof.passed and "finite" in proof.failure
    path = tmp_path / "nan.onnx"
    onnx.save(proto, path)
    run = verify(str(path))
    assert run.returncode == 2 and "not all finite" in run.stderr and "Traceback" not in run.stderr


def test_a_graph_whose_values_pass_through_anything_else_is_refused():
    """A node spliced into the data path (here an Identity after the LSTM's steps; it could as
    well be a Slice that reorders steps past the lengths the numeric check runs) changes what is
    answered without changing the weights: the graph reader refuses it before any proof."""
    from onnx import helper

    from adder.export.pairs import GraphError, graph_weights

    proto = onnx.load(LONG)
    squeeze = next(node for node in proto.graph.node if node.op_type == "Squeeze")
    spliced = helper.make_node("Identity", [squeeze.output[0]], ["spliced"])
    for node in proto.graph.node:
        node.input[:] = ["spliced" if name == squeeze.output[0] else name for name in node.input]
    proto.graph.node.insert(list(proto.graph.node).index(squeeze) + 1, spliced)
    with pytest.raises(GraphError, match="must pass through Transpose next"):
        graph_weights(proto)
    proto = onnx.load(LONG)  # the LSTM's last state read by something else
    lstm = next(node for node in proto.graph.node if node.op_type == "LSTM")
    proto.graph.node.append(helper.make_node("Identity", [lstm.output[1]], ["stray"]))
    with pytest.raises(GraphError, match="last states must not be read"):
        graph_weights(proto)


def test_adder_verify_refuses_a_text_layout_model_in_one_line():
    run = verify("default")
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr


def _one_unit_lstm(gate: str):
    """An ONNX LSTM of one unit whose cell output Y_c is sigmoid(x) ('i') or tanh(x) ('c'),
    the other gates held at 1 (or the forget gate at 0) by large biases."""
    from onnx import TensorProto, helper

    w = np.zeros((1, 4, 1), dtype=np.float32)  # gates i, o, f, c
    bias = np.zeros((1, 8), dtype=np.float32)
    bias[0, [0, 1, 3]] = 40.0  # i, o and g saturated at 1
    bias[0, 2] = -40.0  # f at 0
    row = {"i": 0, "c": 3}[gate]
    w[0, row, 0], bias[0, row] = 1.0, 0.0
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R", "B"], ["", "", "c"], hidden_size=1)],
        "activation",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, 1])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, None, 1])],
        [
            helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel()),
            helper.make_tensor("R", TensorProto.FLOAT, (1, 4, 1), np.zeros(4, dtype=np.float32)),
            helper.make_tensor("B", TensorProto.FLOAT, bias.shape, bias.ravel()),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("gate, real", [("i", lambda x: 1 / (1 + np.exp(-x))), ("c", np.tanh)])
def test_onnxruntime_lstm_activations_are_within_the_error_the_proof_allows(gate, real):
    import onnxruntime as ort

    session = ort.InferenceSession(_one_unit_lstm(gate).SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.linspace(-30, 30, 600_001, dtype=np.float32)
    (cell,) = session.run(None, {"x": x.reshape(1, -1, 1)})
    error = np.abs(cell.reshape(-1).astype(np.float64) - real(x.astype(np.float64))).max()
    assert error < ACTIVATION_ERROR / 4, f"{gate}: {error:.3g}"
