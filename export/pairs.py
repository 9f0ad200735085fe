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
    return PairWeights.from_onnx(w, r, b, matmul[0], add[0].reshape(-1))


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
        worst = max(worst, float(np.abs(probs - exact).max()))
    if worst > VALIDATION_ATOL:
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
