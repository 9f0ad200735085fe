"""Exporting and proving a pairs-layout model (adder.layout, adder.eval.proof).

The ONNX graph is one fused LSTM with a free step dimension, a MatMul, an Add and a Softmax;
``graph_weights`` reads the proof's weights off it and refuses any graph of another form, so
the proof is about the very graph the runtime runs. ``export_pairs`` writes MODEL.onnx only:
one graph serves single queries and batches of any length, and there is no decoder to unroll.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from adder.config import METADATA_KEY, ModelConfig
from adder.eval.proof import PairWeights, Proof, prove, run_model

# Nodes a pairs graph may hold besides its LSTM, MatMul, Add and Softmax: ones that only move data.
LAYOUT_OPS = {
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Reshape",
    "Identity",
    "Shape",
    "Gather",
    "Concat",
    "Cast",
    "Slice",
    "Expand",
}
SHAPING_OPS = ("Unsqueeze", "Expand", "Identity", "Reshape", "Cast")  # what tf2onnx builds the zero start state with
FUSED_OPS = {"LSTM", "MatMul", "Add", "Softmax"}
VALIDATION_ATOL = 1e-4  # float32 onnxruntime against the float64 model, on probabilities


class GraphError(ValueError):
    """A graph the proof cannot read: not one LSTM and a Dense softmax over its every step."""


def graph_weights(proto: onnx.ModelProto) -> PairWeights:
    """The LSTM and Dense weights of a pairs graph, checked to be of the one form the proof models."""
    graph = proto.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    ops = [node.op_type for node in graph.node if node.op_type != "Constant"]
    strange = sorted(set(ops) - FUSED_OPS - LAYOUT_OPS)
    if strange or [op for op in ops if op in FUSED_OPS].count("LSTM") != 1:
        raise GraphError(
            f"not a pairs graph: expected one LSTM, a MatMul, an Add and a Softmax, found {sorted(set(ops))}"
        )
    lstm = next(node for node in graph.node if node.op_type == "LSTM")
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in lstm.attribute}
    if attributes.get("direction", b"forward") not in (b"forward", "forward") or "clip" in attributes:
        raise GraphError("the LSTM must run forward, without clipping")
    if attributes.get("activations", [b"Sigmoid", b"Tanh", b"Tanh"]) not in ([b"Sigmoid", b"Tanh", b"Tanh"],):
        raise GraphError(f"the LSTM's activations must be Sigmoid, Tanh, Tanh, got {attributes['activations']}")
    inputs = list(lstm.input) + [""] * (8 - len(lstm.input))
    w, r, b = (constants.get(name) for name in inputs[1:4])
    if w is None or r is None or b is None or any(inputs[4:5]) or len(inputs) > 8 and any(inputs[8:]):
        raise GraphError("the LSTM's W, R and B must be constants, and no sequence lengths given")
    producers = {out: node for node in graph.node for out in node.output}
    for name in inputs[5:7]:  # an initial state, if any, must be zero: the proof starts there
        if name and not _zero(name, constants, producers):
            raise GraphError("the LSTM must start from the zero state")
    if len(inputs) > 7 and inputs[7]:
        raise GraphError("the LSTM must have no peepholes")
    matmul = [constants[i] for node in graph.node if node.op_type == "MatMul" for i in node.input if i in constants]
    add = [constants[i] for node in graph.node if node.op_type == "Add" for i in node.input if i in constants]
    if len(matmul) != 1 or len(add) != 1:
        raise GraphError("expected one Dense layer (a MatMul and an Add with constant weights)")
    if not all(np.isfinite(x).all() for x in (w, r, b, matmul[0], add[0])):
        raise GraphError("the weights are not all finite numbers")
    unknown = sorted(set(attributes) - {"activations", "direction", "hidden_size"})
    if unknown or attributes.get("hidden_size") != r.shape[-1]:
        raise GraphError(
            f"the LSTM must have only activations, direction and hidden_size {r.shape[-1]}; found {sorted(attributes)}"
        )
    _check_data_path(graph, constants, producers, lstm, r.shape[-1], matmul[0])
    return PairWeights.from_onnx(w, r, b, matmul[0], add[0].reshape(-1))


def _check_data_path(graph, constants: dict, producers: dict, lstm, units: int, dense: np.ndarray) -> None:
    """The values from the input to the output pass through exactly tf2onnx's chain for a Keras LSTM
    and Dense: Transpose, LSTM, Squeeze, Transpose, Reshape, MatMul, Reshape, Add, Softmax, each
    fed by the one before. Any other node may read a value's shape (Shape), never the value: so
    nothing but the LSTM and the Dense layer the proof models can change what is answered."""
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise GraphError("a pairs graph has one input and one output (no initializer given as an input)")
    consumers: dict[str, list] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, slot))

    def const(name: str):
        value = constants.get(name)
        return None if value is None else value.tolist()

    def attribute(node, name, default=None):
        found = [onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name]
        return found[0] if found else default

    def swap(node) -> bool:
        return attribute(node, "perm") == [1, 0, 2]

    vocab = dense.shape[1]
    chain = [
        ("Transpose", swap),
        ("LSTM", lambda node: node is lstm),
        (
            "Squeeze",
            lambda node: const(node.input[1]) == [1] if len(node.input) > 1 else attribute(node, "axes") == [1],
        ),
        ("Transpose", swap),
        ("Reshape", lambda node: const(node.input[1]) == [-1, units]),
        ("MatMul", lambda node: node.input[1] in constants and constants[node.input[1]].shape == dense.shape),
        ("Reshape", lambda node: _steps_shape(node.input[1], values[4], producers, constants, vocab)),
        ("Add", lambda node: any(name in constants and constants[name].shape == (vocab,) for name in node.input)),
        ("Softmax", lambda node: attribute(node, "axis", -1) in (-1, 2)),
    ]
    values = [graph.input[0].name]  # each value on the path, the input first
    value = values[0]
    for op, right in chain:
        readers = [(node, slot) for node, slot in consumers.get(value, []) if node.op_type != "Shape"]
        if len(readers) != 1 or readers[0][0].op_type != op or not right(readers[0][0]):
            found = sorted(node.op_type for node, _ in readers)
            raise GraphError(
                f"the values must pass through {op} next (as tf2onnx writes a Keras LSTM and Dense); found {found}"
            )
        node, slot = readers[0]
        if slot != 0 and op not in ("Add",):
            raise GraphError(f"the values must be {op}'s first input")
        if op == "LSTM" and any(consumers.get(name) for name in node.output[1:]):
            raise GraphError("the LSTM's last states must not be read: the answer is its every step's output")
        value = node.output[0]
        values.append(value)
    if value != graph.output[0].name:
        raise GraphError("the graph's output must be the Softmax")


def _steps_shape(name: str, source: str, producers: dict, constants: dict, vocab: int) -> bool:
    """Whether a Reshape's target is [N, steps, vocab] read off ``source``'s shape, as tf2onnx builds
    it: Cast(Concat(Gather(Cast(Shape(source)), [0, 1]), [vocab]))."""

    def made(name, op):
        node = producers.get(name)
        return node if node is not None and node.op_type == op else None

    cast = made(name, "Cast")
    concat = cast and made(cast.input[0], "Concat")
    if not concat or len(concat.input) != 2:
        return False
    gather = made(concat.input[0], "Gather")
    tail = constants.get(concat.input[1])
    inner = gather and made(gather.input[0], "Cast")
    shape = inner and made(inner.input[0], "Shape")
    indices = gather and constants.get(gather.input[1])
    return bool(
        shape is not None
        and shape.input[0] == source
        and not shape.attribute  # the whole shape, no start or end
        and indices is not None
        and indices.tolist() == [0, 1]
        and tail is not None
        and tail.tolist() == [vocab]
    )


def _zero(name: str, constants: dict, producers: dict) -> bool:
    """Whether a tensor is all zeros: a constant, or one only reshaped or broadcast."""
    if name in constants:
        return not np.any(constants[name])
    node = producers.get(name)
    return node is not None and node.op_type in SHAPING_OPS and _zero(node.input[0], constants, producers)


def check_graph_runs_the_weights(
    session, weights: PairWeights, steps=(1, 7, 40), rows: int = 64, seed: int = 0
) -> float:
    """The graph's probabilities against the float64 model of the weights read off it (softmax of
    ``run_model``'s logits), on random pairs of several lengths: the largest difference."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for count in steps:
        a, b = rng.integers(0, 10, (2, rows, count))
        eye = np.eye(10, dtype=np.float32)
        (probs,) = session.run(None, {session.get_inputs()[0].name: np.concatenate([eye[a], eye[b]], axis=-1)})
        logits, _ = run_model(weights, a, b)
        exact = np.exp(logits - logits.max(axis=-1, keepdims=True))
        exact /= exact.sum(axis=-1, keepdims=True)
        difference = float(np.abs(probs - exact).max())
        worst = difference if np.isnan(difference) or difference > worst else worst  # a NaN is kept, and fails
        if np.isnan(worst):
            break
    if not worst <= VALIDATION_ATOL:
        raise GraphError(
            f"the graph does not run the weights read off it: probabilities differ by up to {worst:.3g} "
            f"(tolerance {VALIDATION_ATOL:g})"
        )
    return worst


def prove_graph(proto: onnx.ModelProto) -> tuple[Proof, float]:
    """Read the weights off a pairs graph, check the graph runs them, and prove them."""
    import onnxruntime as ort

    weights = graph_weights(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    difference = check_graph_runs_the_weights(session, weights)
    return prove(weights), difference


def export_pairs(keras_model, config: ModelConfig, output: Path, log=print) -> Proof:
    """MODEL.onnx for a pairs model, with the proof of its own graph in its record."""
    from adder.eval.files import atomic_path
    from adder.export.convert import keras_to_onnx

    proto = keras_to_onnx(keras_model, config)
    proof, difference = prove_graph(proto)
    log(f"float32 export: one fused LSTM; within {difference:.2g} of the float64 model of its own weights")
    for line in proof.summary():
        log(line)
    stamped = replace(config, training={**config.training, "proof": proof.to_dict(), "exact": proof.passed})
    onnx.helper.set_model_props(proto, {METADATA_KEY: stamped.to_json()})
    with atomic_path(output) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    log(f"wrote {output} ({output.stat().st_size:,} bytes)")
    return proof
