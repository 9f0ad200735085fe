"""The batch graph: the whole model written out as onnxruntime runs it fastest, from symbols
to symbols, using what an adder model is.

- **Symbols in.** The query arrives as its symbols' indices (int64, [N, L]), not one-hot
  floats: each step's input projection is a row lookup (Gather) of a table holding every
  symbol's projected row plus both biases, instead of a matrix product with a one-hot row.
- **The first steps tabulated.** The encoder starts from zeros, so its state after the
  first k steps is a function of the first k symbols alone: computed here for all
  vocab^k of them (in float64, rounded once), it is one Gather where the graph ran k
  steps. k is the largest whose table stays within TABLE_BYTES.
- **The decoder's input projected once.** It reads the same vector at every step.
- **One product per gate.** Each gate is its own MatMul + Add, which onnxruntime fuses
  with the gate's activation into one FusedGemm, and no Split copies the gates apart.
- **No softmax.** The answer is the argmax of each step's scores, taken in the graph;
  a step whose scores are not all finite has the alphabet's size added to its symbol
  (whatever argmax made of a NaN), which the runtime refuses as it refuses a NaN probability.

Measured on one core, 1,024-row batches (benchmarks/graph_shapes.py, docs/speed.md):
faster than the graph it replaces on every shipped model, and than the fused LSTMs, a
written-out graph with one product for all four gates, or fewer tabulated steps.
Single queries stay on the fused one-query graph (export/simplify.py), which this
shape loses to: its ~150 nodes cost more one by one than the fused op's steps.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from adder.config import BATCH_DIM, ModelConfig
from adder.export.simplify import SimplifyError, Weights

SYMBOLS_IN = "query_symbols"
SYMBOLS_OUT = "answer_symbols"
TABLE_BYTES = 1 << 20  # the tabulated states' table, at most (1 MiB: 3 steps of the default)
MAX_TABULATED = 3
DEFAULT_ACTIVATIONS = [b"Sigmoid", b"Tanh", b"Tanh"]


def tabulated_steps(config: ModelConfig, hidden: int) -> int:
    """How many of the encoder's first steps the table replaces: vocab^k rows of h and c."""
    vocab, k = len(config.alphabet), 0
    while k < min(MAX_TABULATED, config.input_length - 1) and vocab ** (k + 1) * 2 * hidden * 4 <= TABLE_BYTES:
        k += 1
    return k


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _split_gates(matrix: np.ndarray, hidden: int) -> list[np.ndarray]:
    """ONNX's gate blocks i, o, f, c of a [.., 4H] array, each contiguous."""
    return [np.ascontiguousarray(matrix[..., k * hidden : (k + 1) * hidden], dtype=np.float32) for k in range(4)]


def _check_plain(attributes: dict, name: str) -> None:
    if (
        attributes.get("direction", b"forward") != b"forward"
        or attributes.get("activations", DEFAULT_ACTIVATIONS) != DEFAULT_ACTIVATIONS
        or "clip" in attributes
        or attributes.get("input_forget", 0)
        or attributes.get("layout", 0)
    ):
        raise SimplifyError(f"the {name} LSTM is not a plain forward LSTM with default activations")


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def _name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attributes) -> str:
        output = output or self._name(op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attributes))
        return output

    def column(self, t: int) -> str:
        """The t-th symbol of every query: [N] int64."""
        return self.op("Gather", [SYMBOLS_IN, self.const(np.array(t, np.int64), "step")], axis=1)

    def cell(self, inputs: list[str], h: str | None, c: str | None, recurrent: list[str]) -> tuple[str, str]:
        """One LSTM step from each gate's projected input: z = x + h R; c' = f c + i g; h' = o tanh(c')."""
        z = [x if h is None else self.op("Add", [x, self.op("MatMul", [h, r])]) for x, r in zip(inputs, recurrent)]
        i, o, f = (self.op("Sigmoid", [gate]) for gate in z[:3])
        new = self.op("Mul", [i, self.op("Tanh", [z[3]])])
        c = new if c is None else self.op("Add", [self.op("Mul", [f, c]), new])
        return self.op("Mul", [o, self.op("Tanh", [c])]), c


def encoder_table(weights: Weights, vocab: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """h and c after the first ``steps`` symbols, for every sequence of them (row = base-vocab number)."""
    w, r, b = (array[0].astype(np.float64) for array in weights.encoder)
    hidden = r.shape[1]
    projected = w.T[:vocab] if w.shape[1] == vocab else None  # one-hot: row s is W's column s
    if projected is None:
        raise SimplifyError("only one-hot inputs are tabulated")
    projected = projected + b[: 4 * hidden] + b[4 * hidden :]
    symbols = np.indices((vocab,) * steps).reshape(steps, -1).T  # [vocab^steps, steps], first symbol most significant
    h = np.zeros((len(symbols), hidden))
    c = np.zeros((len(symbols), hidden))
    for t in range(steps):
        z = projected[symbols[:, t]] + h @ r.T
        i, o, f, g = (z[:, k * hidden : (k + 1) * hidden] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
    return h.astype(np.float32), c.astype(np.float32)


def written_graph(weights: Weights, config: ModelConfig, proto: onnx.ModelProto) -> onnx.ModelProto:
    """The batch graph for ``weights`` (taken from ``proto``, whose opset and metadata it keeps)."""
    if config.encoding != "onehot":
        raise SimplifyError("only one-hot models are written out from symbols")
    _check_plain(weights.encoder_attributes, "encoder")
    _check_plain(weights.decoder_attributes, "decoder")
    vocab, length, steps = len(config.alphabet), config.input_length, config.output_length
    w, r, b = (array[0] for array in weights.encoder)
    hidden = r.shape[1]
    graph = _Graph()
    table = w.T + b[: 4 * hidden] + b[4 * hidden :]  # [vocab, 4H]: each symbol's projected input, biases in
    gate_tables = [graph.const(part, "encoder_input") for part in _split_gates(table, hidden)]
    recurrent = [graph.const(part, "encoder_R") for part in _split_gates(r.T, hidden)]
    h = c = None
    first = tabulated_steps(config, hidden)
    if first:
        table_h, table_c = encoder_table(weights, vocab, first)
        key = graph.column(0)
        for t in range(1, first):
            key = graph.op(
                "Add", [graph.op("Mul", [key, graph.const(np.array(vocab, np.int64), "vocab")]), graph.column(t)]
            )
        h = graph.op("Gather", [graph.const(table_h, "encoder_h_table"), key], axis=0)
        c = graph.op("Gather", [graph.const(table_c, "encoder_c_table"), key], axis=0)
    for t in range(first, length):
        symbol = graph.column(t)
        h, c = graph.cell([graph.op("Gather", [part, symbol], axis=0) for part in gate_tables], h, c, recurrent)
    w, r, b = (array[0] for array in weights.decoder)
    hidden = r.shape[1]
    bias = b[: 4 * hidden] + b[4 * hidden :]
    decoder_inputs = [
        graph.op(
            "Add", [graph.op("MatMul", [h, graph.const(part, "decoder_W")]), graph.const(gate_bias, "decoder_bias")]
        )
        for part, gate_bias in zip(_split_gates(w.T, hidden), _split_gates(bias, hidden))
    ]
    recurrent = [graph.const(part, "decoder_R") for part in _split_gates(r.T, hidden)]
    h = c = None
    states = []
    for _ in range(steps):
        h, c = graph.cell(decoder_inputs, h, c, recurrent)
        states.append(h)
    stacked = graph.op("Concat", states, axis=-1) if steps > 1 else states[0]
    stacked = graph.op("Reshape", [stacked, graph.const(np.array([-1, steps, hidden], np.int64), "shape")])
    scores = graph.op(
        "Add",
        [
            graph.op("MatMul", [stacked, graph.const(weights.kernel, "dense_kernel")]),
            graph.const(weights.bias, "dense_bias"),
        ],
    )
    # A step with any score that is not finite: its sum minus itself is NaN (inf - inf included).
    total = graph.op("ReduceSum", [scores, graph.const(np.array([-1], np.int64), "axis")], keepdims=0)
    broken = graph.op("Cast", [graph.op("IsNaN", [graph.op("Sub", [total, total])])], to=TensorProto.INT64)
    best = graph.op("ArgMax", [scores], axis=-1, keepdims=0)
    graph.op("Add", [best, graph.op("Mul", [broken, graph.const(np.array(vocab, np.int64), "vocab")])], SYMBOLS_OUT)
    rebuilt = helper.make_graph(
        graph.nodes,
        "adder",
        [helper.make_tensor_value_info(SYMBOLS_IN, TensorProto.INT64, [BATCH_DIM, length])],
        [helper.make_tensor_value_info(SYMBOLS_OUT, TensorProto.INT64, [BATCH_DIM, steps])],
        graph.initializers,
    )
    out = helper.make_model(rebuilt, opset_imports=list(proto.opset_import), producer_name=proto.producer_name)
    out.ir_version = proto.ir_version
    out.metadata_props.extend(proto.metadata_props)
    onnx.checker.check_model(out)
    return out
