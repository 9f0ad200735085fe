"""Keras -> ONNX through tf2onnx, with the model's config embedded in metadata_props.

``tf2onnx.convert.from_keras`` fails on Keras 3 models, so we trace a tf.function
that calls the model; tf2onnx then recognises Keras's LSTM loop and emits ONNX's
fused ``LSTM`` op.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from adder.config import BATCH_DIM, METADATA_KEY, ModelConfig
from adder.layout import STEPS_DIM

INPUT_NAME = "query"
OPSET = 17


def input_spec(config: ModelConfig):
    import tensorflow as tf

    if config.layout == "pairs":  # any number of steps (adder.layout)
        return tf.TensorSpec((None, None, config.input_features), tf.float32, name=INPUT_NAME)
    if config.encoding == "index":
        return tf.TensorSpec((None, config.input_length), tf.int32, name=INPUT_NAME)
    return tf.TensorSpec((None, config.input_length, config.input_features), tf.float32, name=INPUT_NAME)


def keras_to_onnx(model, config: ModelConfig, opset: int = OPSET) -> onnx.ModelProto:
    import tensorflow as tf
    import tf2onnx

    spec = input_spec(config)

    @tf.function(input_signature=[spec])
    def answer(query):
        return model(query, training=False)

    proto, _ = tf2onnx.convert.from_function(answer, input_signature=[spec], opset=opset)
    proto.graph.output[0].name = _rename_output(proto, "answer")
    _name_batch_dimension(proto)
    if config.layout == "pairs":
        _name_dimension(proto, 1, STEPS_DIM)
    onnx.helper.set_model_props(proto, {METADATA_KEY: config.to_json()})
    proto.producer_name = "adder-export"
    return proto


def _rename_output(proto: onnx.ModelProto, name: str) -> str:
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
    return name


def _name_batch_dimension(proto: onnx.ModelProto) -> None:
    """Give the batch dimension one stable name everywhere (tf2onnx writes ``unk__N``).

    onnxruntime can then fix it by name (``add_free_dimension_override_by_name``),
    which lets it fold the graph's shape arithmetic away for single queries.
    """
    graph = proto.graph
    old = {value.type.tensor_type.shape.dim[0].dim_param for value in (*graph.input, *graph.output)}
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in old:
                dim.dim_param = BATCH_DIM


def _name_dimension(proto: onnx.ModelProto, axis: int, name: str) -> None:
    """Name a free dimension of the graph's input and output (and wherever tf2onnx's name for it appears)."""
    graph = proto.graph
    old = {value.type.tensor_type.shape.dim[axis].dim_param for value in (*graph.input, *graph.output)} - {""}
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in old:
                dim.dim_param = name


def fused_lstm_count(proto: onnx.ModelProto) -> int:
    return sum(node.op_type == "LSTM" for node in proto.graph.node)


def quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic quantization: int8 weights, activations quantized at run time.

    Per channel (a scale per output row of each weight matrix): on the 64/64 default it
    left 2 of 1,000,000 queries wrong, against 322 with one scale per tensor.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
    proto = onnx.load(target)
    if not any(p.key == METADATA_KEY for p in proto.metadata_props):
        onnx.helper.set_model_props(proto, {p.key: p.value for p in onnx.load(source).metadata_props})
        onnx.save(proto, target)
