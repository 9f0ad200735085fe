"""The model graph rebuilt from its weights with nothing but the model in it.

tf2onnx's graph of the adder (about 60 nodes) carries TensorFlow's shape
bookkeeping: Shape, Cast, Slice, Concat and Expand to build zero initial states,
Tile and Reshape for RepeatVector, and one MatMul per decoder step. Rebuilt as
Reshape -> LSTM -> Expand -> LSTM -> Squeeze -> Reshape -> MatMul -> Add -> Softmax
with every shape fixed at one query (``single``), the 32/32 model answers one
query in 21 us on onnxruntime instead of 31 for tf2onnx's graph with its batch
pinned to 1 (same outputs to the last bit, measured interleaved). adder-export saves
it as OUTPUT.single.onnx; Adder answers single queries with it. The general form
(Transposes, a free batch) measured no faster than tf2onnx's graph and is not used.
The weights are taken from tf2onnx's own LSTM and MatMul nodes, so the conversion
stays tf2onnx's; the export validates the rebuilt graph against Keras.

Only the shape adder-train builds is rebuilt: one-hot input, one encoder LSTM, one
decoder LSTM reading the repeated encoder state, one Dense softmax per step.
Anything else (stacked layers, an Embedding) keeps tf2onnx's graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from adder.config import BATCH_DIM, ModelConfig


class SimplifyError(ValueError):
    """The graph is not the shape this rebuild knows."""


def _input(node: onnx.NodeProto, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


@dataclass(frozen=True)
class Weights:
    """The adder's layers as arrays, in ONNX's LSTM layout (gates i, o, f, c; W [1, 4H, in],
    R [1, 4H, H], B [1, 8H]), taken from tf2onnx's nodes: what every rebuilt graph is made of."""

    encoder: tuple[np.ndarray, np.ndarray, np.ndarray]
    decoder: tuple[np.ndarray, np.ndarray, np.ndarray]
    encoder_attributes: dict
    decoder_attributes: dict
    kernel: np.ndarray  # [H, vocab]
    bias: np.ndarray  # [vocab]


def model_weights(proto: onnx.ModelProto, config: ModelConfig) -> Weights:
    """The weights of the shape adder-train builds, or SimplifyError saying what else the graph is."""
    if config.encoding not in ("onehot", "ordinal"):
        raise SimplifyError("only float inputs (one-hot or ordinal) are rebuilt")
    features = config.input_features
    graph = proto.graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    lstms = [node for node in graph.node if node.op_type == "LSTM"]
    if len(lstms) != 2 or any(_input(node, 4) or _input(node, 7) for node in lstms):
        raise SimplifyError("expected two LSTMs without sequence lengths or peepholes")
    # tf2onnx feeds initial states built as zeros from the batch's shape; Keras starts from zeros,
    # which is the LSTM op's default, so they are left out (the export's validation would see otherwise).
    dense = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    if not dense or len({n.input[1] for n in dense}) != 1:
        raise SimplifyError("expected one Dense layer shared by every decoder step")
    kernel = weights[dense[0].input[1]]
    bias_adds = [n for n in graph.node if n.op_type == "Add" and n.input[0] == dense[0].output[0]]
    if len(bias_adds) != 1 or bias_adds[0].input[1] not in weights:
        raise SimplifyError("expected the Dense layer's bias as an Add")
    bias = weights[bias_adds[0].input[1]]
    vocab = len(config.alphabet)
    hidden = [int(weights[node.input[2]].shape[-1]) for node in lstms]
    if kernel.shape != (hidden[1], vocab) or weights[lstms[0].input[1]].shape[-1] != features:
        raise SimplifyError("layer sizes do not match the config")
    layers = []
    for node in lstms:
        if len(node.input) < 4 or node.input[3] not in weights:
            raise SimplifyError("expected each LSTM's bias as a constant")
        layers.append(tuple(np.asarray(weights[name], np.float32) for name in node.input[1:4]))
    attributes = [{a.name: helper.get_attribute_value(a) for a in node.attribute} for node in lstms]
    return Weights(layers[0], layers[1], attributes[0], attributes[1], np.asarray(kernel), np.asarray(bias))


def simplify(proto: onnx.ModelProto, config: ModelConfig, single: bool = False) -> onnx.ModelProto:
    """The rebuilt graph; with ``single``, for exactly one query: every shape fixed at batch 1,
    the transposes written as reshapes (free views), which onnxruntime runs about a third
    faster than the same graph with the batch dimension merely pinned to 1."""
    weights = model_weights(proto, config)
    features = config.input_features
    kernel, bias = weights.kernel, weights.bias
    vocab, steps = len(config.alphabet), config.output_length
    hidden = [weights.encoder[1].shape[-1], weights.decoder[1].shape[-1]]

    def lstm(attributes: dict, x: str, outputs: list[str], name: str) -> onnx.NodeProto:
        inputs = [x, f"{name}_W", f"{name}_R", f"{name}_B"]
        return helper.make_node("LSTM", inputs, outputs, name=name, **attributes)

    batch_first = (
        helper.make_node("Reshape", ["per_step", "answer_shape"], ["batch_first"])
        if single
        else helper.make_node("Transpose", ["per_step"], ["batch_first"], perm=[1, 0, 2])
    )
    nodes = [
        helper.make_node("Reshape", ["query", "query_shape"], ["steps_first"])
        if single
        else helper.make_node("Transpose", ["query"], ["steps_first"], perm=[1, 0, 2]),
        lstm(weights.encoder_attributes, "steps_first", ["", "encoded"], "encoder"),
        helper.make_node("Expand", ["encoded", "repeat"], ["repeated"]),  # [1,N,H] -> [steps,N,H]
        lstm(weights.decoder_attributes, "repeated", ["decoded"], "decoder"),
        helper.make_node("Squeeze", ["decoded", "direction_axis"], ["per_step"]),
        batch_first,
        helper.make_node("MatMul", ["batch_first", "dense_kernel"], ["logits_unbiased"]),
        helper.make_node("Add", ["logits_unbiased", "dense_bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["answer"], axis=-1),
    ]
    initializers = [numpy_helper.from_array(np.asarray(kernel), "dense_kernel")]
    initializers.append(numpy_helper.from_array(np.asarray(bias), "dense_bias"))
    for layer, name in zip((weights.encoder, weights.decoder), ("encoder", "decoder")):
        for suffix, array in zip("WRB", layer):
            initializers.append(numpy_helper.from_array(array, f"{name}_{suffix}"))
    initializers.append(numpy_helper.from_array(np.array([steps, 1, 1], np.int64), "repeat"))
    initializers.append(numpy_helper.from_array(np.array([1], np.int64), "direction_axis"))
    if single:
        query_shape = np.array([config.input_length, 1, features], np.int64)
        initializers.append(numpy_helper.from_array(query_shape, "query_shape"))
        initializers.append(numpy_helper.from_array(np.array([1, steps, hidden[1]], np.int64), "answer_shape"))
    batch = 1 if single else BATCH_DIM
    rebuilt = helper.make_graph(
        nodes,
        "adder",
        [helper.make_tensor_value_info("query", TensorProto.FLOAT, [batch, config.input_length, features])],
        [helper.make_tensor_value_info("answer", TensorProto.FLOAT, [batch, steps, vocab])],
        initializers,
    )
    out = helper.make_model(rebuilt, opset_imports=list(proto.opset_import), producer_name=proto.producer_name)
    out.ir_version = proto.ir_version
    out.metadata_props.extend(proto.metadata_props)
    onnx.checker.check_model(out)
    return out
