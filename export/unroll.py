"""The batch graph: the decoder's fused LSTM written out step by step.

An adder model's decoder reads the same vector at every step (Keras's RepeatVector,
train/model.py), but ONNX's LSTM op multiplies its input by the input weights once
per step. Written out, the input is projected once and each step is one GEMM plus a
few activations over the whole batch: on 1,024-row batches on two threads this
measured 25,800 -> 30,700 queries per second (benchmarks/ort_tuning.py). On a single
query the extra nodes cost about 30 us (217 -> 249 us), so single queries never
run on it: the runtime uses this graph, saved beside the model, for batches only.

Only a forward, unclipped LSTM with the default activations, no sequence lengths and
no peepholes is rewritten; the export validates the result against Keras like the
fused graph, so a decoder that did not repeat its input could not slip through.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

DEFAULT_ACTIVATIONS = [b"Sigmoid", b"Tanh", b"Tanh"]


class UnrollError(ValueError):
    """The graph has no decoder LSTM this rewrite can write out."""


def unroll_decoder(proto: onnx.ModelProto, steps: int) -> onnx.ModelProto:
    """A copy of ``proto`` whose last LSTM node (the decoder, ``steps`` long) is written out."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    initializers = {init.name: init for init in graph.initializer}
    lstms = [i for i, node in enumerate(graph.node) if node.op_type == "LSTM"]
    if not lstms or not _rewritable(graph.node[lstms[-1]], initializers):
        raise UnrollError("no decoder LSTM that can be written out")
    index = lstms[-1]
    producers = {output: node for node in graph.node for output in node.output}
    builder = _Builder("decoder")
    node = graph.node[index]
    zero_state = [_is_zeros(name, producers, initializers) for name in (list(node.input) + [""] * 8)[5:7]]
    builder.lstm(node, initializers, steps, zero_state)
    nodes = list(graph.node[:index]) + builder.nodes + list(graph.node[index + 1 :])
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(builder.initializers)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return out


def _rewritable(node: onnx.NodeProto, initializers: dict) -> bool:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    inputs = list(node.input) + [""] * (8 - len(node.input))
    return (
        attrs.get("direction", b"forward") == b"forward"
        and attrs.get("activations", DEFAULT_ACTIVATIONS) == DEFAULT_ACTIVATIONS
        and "clip" not in attrs
        and not attrs.get("input_forget", 0)
        and not attrs.get("layout", 0)
        and inputs[1] in initializers
        and inputs[2] in initializers
        and (not inputs[3] or inputs[3] in initializers)
        and not inputs[4]  # sequence_lens
        and not inputs[7]  # peepholes
    )


def _is_zeros(name: str, producers: dict, initializers: dict) -> bool:
    """Whether a tensor is all zeros by construction (tf2onnx builds Keras's zero initial
    state as Expand(0, shape) -> Unsqueeze), so the first step can skip its recurrent GEMM."""
    while name in producers and producers[name].op_type in ("Unsqueeze", "Expand", "Reshape", "Squeeze", "Identity"):
        name = producers[name].input[0]
    if name in initializers:
        return not numpy_helper.to_array(initializers[name]).any()
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        value = next((a for a in node.attribute if a.name == "value"), None)
        return value is not None and not numpy_helper.to_array(value.t).any()
    return False


class _Builder:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}/{hint}_{self.count}"

    def const(self, array: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, **attrs):
        names = [self.name(op_type) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, **attrs))
        return names[0] if outputs == 1 else names

    def lstm(self, node: onnx.NodeProto, initializers: dict, steps: int, zero_state: list[bool]) -> None:
        """ONNX LSTM semantics, gates in ONNX's order i, o, f, c:
        z = x W^T + h R^T + Wb + Rb; c' = f*c + i*tanh(z_c); h' = o*tanh(c')."""
        inputs = list(node.input) + [""] * (8 - len(node.input))
        w = numpy_helper.to_array(initializers[inputs[1]])[0]  # (4H, in)
        r = numpy_helper.to_array(initializers[inputs[2]])[0]  # (4H, H)
        hidden = r.shape[1]
        bias = numpy_helper.to_array(initializers[inputs[3]])[0] if inputs[3] else np.zeros(8 * hidden, w.dtype)
        axis0 = self.const(np.array([0], dtype=np.int64), "axis0")
        # The input repeats, so step 0's (N, in) stands for every step: projected once.
        first = self.op("Gather", [inputs[0], self.const(np.array(0, dtype=np.int64), "step0")], axis=0)
        projected = self.op(
            "Add",
            [
                self.op("MatMul", [first, self.const(np.ascontiguousarray(w.T), "W_T")]),
                self.const(bias[: 4 * hidden] + bias[4 * hidden :], "bias"),
            ],
        )
        recurrent = self.const(np.ascontiguousarray(r.T), "R_T")
        gate_split = self.const(np.array([3 * hidden, hidden], dtype=np.int64), "gate_split")
        sigmoid_split = self.const(np.array([hidden] * 3, dtype=np.int64), "sigmoid_split")
        h = self.op("Squeeze", [inputs[5], axis0]) if inputs[5] and not zero_state[0] else None
        c = self.op("Squeeze", [inputs[6], axis0]) if inputs[6] and not zero_state[1] else None
        outputs_h = []
        for _ in range(steps):
            z = projected if h is None else self.op("Add", [projected, self.op("MatMul", [h, recurrent])])
            sigmoid_part, candidate_part = self.op("Split", [z, gate_split], outputs=2, axis=-1)
            i, o, f = self.op("Split", [self.op("Sigmoid", [sigmoid_part]), sigmoid_split], outputs=3, axis=-1)
            new = self.op("Mul", [i, self.op("Tanh", [candidate_part])])
            c = new if c is None else self.op("Add", [self.op("Mul", [f, c]), new])
            h = self.op("Mul", [o, self.op("Tanh", [c])])
            outputs_h.append(h)
        y, y_h, y_c = (list(node.output) + ["", "", ""])[:3]
        axes01 = self.const(np.array([0, 1], dtype=np.int64), "axes01")
        if y:
            stacked = [self.op("Unsqueeze", [step, axes01]) for step in outputs_h]
            self.nodes.append(helper.make_node("Concat", stacked, [y], axis=0))
        if y_h:
            self.nodes.append(helper.make_node("Unsqueeze", [h, axis0], [y_h]))
        if y_c:
            self.nodes.append(helper.make_node("Unsqueeze", [c, axis0], [y_c]))
