"""A second engine: adder's ONNX graphs evaluated with numpy alone, for where onnxruntime has no wheel.

``NumpySession(data)`` reads a model file with ``adder.onnx_file`` (no ``onnx`` package)
and answers ``run(output_names, feeds)`` like an onnxruntime ``InferenceSession``,
node by node in the file's order, for the ops the exported graphs use: the fused
``LSTM`` and the shape bookkeeping, matrix products and activations around it. Every
product and activation is float32, as onnxruntime computes them, so decoded answers
agree (tests/test_numpy_engine.py checks every query of the enumerable shipped domains).
A graph with any other op, or an LSTM option the graphs do not use, is refused when
the session is made, never half-run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .onnx_file import DTYPES, Node, OnnxFormatError, read_model


class UnsupportedGraph(OnnxFormatError):
    """A valid ONNX graph that uses an op or option this engine does not evaluate."""


@dataclass(frozen=True)
class ModelMeta:
    """What ``InferenceSession.get_modelmeta()`` gives that adder reads."""

    custom_metadata_map: dict[str, str]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.float32(1) / (np.float32(1) + np.exp(-x))


def _sigmoid_inplace(x: np.ndarray) -> None:
    """x = sigmoid(x), as 1 / (1 + exp(-x)): the form onnxruntime's kernels approximate."""
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += np.float32(1)
    np.reciprocal(x, out=x)


def _axes(values) -> list[int]:
    return np.asarray(values).reshape(-1).tolist()


def _lstm(node: Node, x, w, r, b=None, lengths=None, h0=None, c0=None, peepholes=None):
    """ONNX LSTM, forward, default activations (sigmoid, tanh, tanh), gates in i, o, f, c order.

    The input projection of every step is one matrix product; each step then adds the
    recurrent one. Outputs Y [steps, 1, batch, hidden], Y_h and Y_c [1, batch, hidden].
    """
    hidden = int(node.attributes["hidden_size"])
    steps, batch, _ = x.shape
    bias = np.zeros(4 * hidden, np.float32) if b is None else b[0, : 4 * hidden] + b[0, 4 * hidden :]
    projected = (x.reshape(steps * batch, -1) @ w[0].T).reshape(steps, batch, 4 * hidden) + bias
    recurrent = np.ascontiguousarray(r[0].T)
    h = np.zeros((batch, hidden), np.float32) if h0 is None else h0[0]
    c = np.zeros((batch, hidden), np.float32) if c0 is None else c0[0]
    out = np.empty((steps, 1, batch, hidden), np.float32)
    gates = np.empty((batch, 4 * hidden), np.float32)
    sig, cell = gates[:, : 3 * hidden], gates[:, 3 * hidden :]  # i, o, f; then the candidate cell
    for step in range(steps):
        np.matmul(h, recurrent, out=gates)
        gates += projected[step]
        _sigmoid_inplace(sig)
        np.tanh(cell, out=cell)
        c = sig[:, 2 * hidden :] * c
        cell *= sig[:, :hidden]
        c += cell
        h = out[step, 0]
        np.tanh(c, out=h)
        h *= sig[:, hidden : 2 * hidden]
    return out, h[np.newaxis], c[np.newaxis]


def _check_lstm(node: Node, inputs: Sequence[str]) -> None:
    attributes = node.attributes
    activations = [a.decode() if isinstance(a, bytes) else a for a in attributes.get("activations", [])]
    problems = []
    if attributes.get("direction", b"forward") not in (b"forward", "forward"):
        problems.append(f"direction {attributes['direction']!r}")
    if activations and activations != ["Sigmoid", "Tanh", "Tanh"]:
        problems.append(f"activations {activations}")
    for name in ("clip", "input_forget", "activation_alpha", "activation_beta", "layout"):
        if attributes.get(name) not in (None, 0, []):
            problems.append(name)
    if len(inputs) > 4 and inputs[4]:
        problems.append("sequence_lens")
    if len(inputs) > 7 and inputs[7]:
        problems.append("peepholes")
    if "hidden_size" not in attributes:
        problems.append("no hidden_size")
    if problems:
        raise UnsupportedGraph(f"an LSTM with {', '.join(problems)} is not supported by the numpy engine")


def _slice(node, data, starts, ends, axes=None, steps=None):
    index = [slice(None)] * data.ndim
    axes = _axes(axes) if axes is not None else list(range(len(_axes(starts))))
    steps = _axes(steps) if steps is not None else [1] * len(axes)
    for axis, start, end, step in zip(axes, _axes(starts), _axes(ends), steps):
        index[axis] = slice(start, end, step)  # Python's slicing clamps as ONNX's does
    return (data[tuple(index)],)


def _reshape(node, data, shape):
    shape = _axes(shape)
    if not node.attributes.get("allowzero"):
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return (data.reshape(shape),)


def _squeeze(node, data, axes=None):
    if axes is None:
        axes = node.attributes.get("axes")
    return (np.squeeze(data, axis=tuple(_axes(axes))) if axes is not None else np.squeeze(data),)


def _unsqueeze(node, data, axes=None):
    axes = _axes(axes if axes is not None else node.attributes["axes"])
    rank = data.ndim + len(axes)
    return (np.expand_dims(data, tuple(sorted(a % rank for a in axes))),)


def _split(node, data, split=None):
    axis = int(node.attributes.get("axis", 0))
    sizes = _axes(split if split is not None else node.attributes.get("split", []))
    if not sizes:
        sizes = [data.shape[axis] // len(node.outputs)] * len(node.outputs)
    return tuple(np.split(data, np.cumsum(sizes)[:-1], axis=axis))


def _softmax(node, x):
    axis = int(node.attributes.get("axis", -1))
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return (shifted / shifted.sum(axis=axis, keepdims=True),)


def _cast(node, x):
    to = int(node.attributes["to"])
    if to not in DTYPES:
        raise UnsupportedGraph(f"Cast to data type {to} is not supported by the numpy engine")
    return (x.astype(DTYPES[to]),)


def _argmax(node, x):
    if int(node.attributes.get("select_last_index", 0)):
        raise UnsupportedGraph("ArgMax with select_last_index is not supported by the numpy engine")
    axis = int(node.attributes.get("axis", 0))
    best = np.argmax(x, axis=axis).astype(np.int64)  # the first of equal maxima, as onnxruntime
    return (np.expand_dims(best, axis) if int(node.attributes.get("keepdims", 1)) else best,)


def _reduce_sum(node, x, axes=None):
    if axes is None or not len(axes):
        if int(node.attributes.get("noop_with_empty_axes", 0)):
            return (x,)
        axes = range(x.ndim)
    return (x.sum(axis=tuple(_axes(axes)), keepdims=bool(int(node.attributes.get("keepdims", 1)))),)


OPS: dict[str, Callable] = {
    "LSTM": _lstm,
    "MatMul": lambda node, a, b: (np.matmul(a, b),),
    "Add": lambda node, a, b: (a + b,),
    "Mul": lambda node, a, b: (a * b,),
    "Sigmoid": lambda node, x: (_sigmoid(x),),
    "Tanh": lambda node, x: (np.tanh(x),),
    "Softmax": _softmax,
    "Transpose": lambda node, x: (np.transpose(x, node.attributes.get("perm") or None),),
    "Shape": lambda node, x: (np.array(x.shape, dtype=np.int64),),
    "Cast": _cast,
    "Slice": _slice,
    "Concat": lambda node, *xs: (np.concatenate(xs, axis=int(node.attributes["axis"])),),
    "Expand": lambda node, x, shape: (x * np.ones(_axes(shape), dtype=x.dtype),),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Tile": lambda node, x, repeats: (np.tile(x, _axes(repeats)),),
    "Gather": lambda node, x, indices: (np.take(x, indices, axis=int(node.attributes.get("axis", 0))),),
    "Split": _split,
    "Sub": lambda node, a, b: (a - b,),
    "IsNaN": lambda node, x: (np.isnan(x),),
    "ArgMax": _argmax,
    "ReduceSum": _reduce_sum,
}
# Opset 13 gave Softmax its one-axis meaning and moved the axes of Squeeze, Unsqueeze and Split to inputs.
OLDEST_OPSET = 13


class NumpySession:
    """The subset of ``onnxruntime.InferenceSession`` that adder uses, evaluated with numpy.

    ``run`` is thread-safe: it keeps no state between calls.
    """

    def __init__(self, data: bytes) -> None:
        model = read_model(data)
        if model.opset < OLDEST_OPSET:
            raise UnsupportedGraph(f"opset {model.opset} is older than the numpy engine reads ({OLDEST_OPSET})")
        for node in model.nodes:
            if node.domain not in ("", "ai.onnx") or node.op_type not in OPS:
                raise UnsupportedGraph(f"op {node.op_type!r} is not supported by the numpy engine")
            if node.op_type == "LSTM":
                _check_lstm(node, node.inputs)
        self._model = model
        self._constants = model.initializers
        known = set(model.initializers) | {i.name for i in model.inputs} | {""}
        for node in model.nodes:  # ONNX requires nodes in topological order; refuse a file that is not
            missing = [name for name in node.inputs if name not in known]
            if missing:
                raise OnnxFormatError(f"node {node.op_type} reads {missing[0]!r} before anything writes it")
            known.update(node.outputs)
        missing = [o.name for o in model.outputs if o.name not in known]
        if missing:
            raise OnnxFormatError(f"output {missing[0]!r} is written by no node")
        self._last_use = {}
        for index, node in enumerate(model.nodes):
            for name in node.inputs:
                self._last_use[name] = index

    def get_inputs(self):
        return self._model.inputs

    def get_outputs(self):
        return self._model.outputs

    def get_modelmeta(self) -> ModelMeta:
        return ModelMeta(dict(self._model.metadata))

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs (all, if None) for the given inputs, as onnxruntime's ``run`` returns them."""
        values: dict[str, np.ndarray] = dict(self._constants)
        for info in self._model.inputs:
            if info.name not in feeds:
                raise ValueError(f"missing input {info.name!r}")
            values[info.name] = np.asarray(feeds[info.name])
        wanted = list(output_names) if output_names else [o.name for o in self._model.outputs]
        keep = set(wanted)
        # exp(-x) overflows to inf for very negative x, and 1 / (1 + inf) is 0: the right limit.
        with np.errstate(over="ignore", invalid="ignore"):  # inf - inf in a graph's finiteness check is NaN, as meant
            self._evaluate(values, keep)
        return [np.ascontiguousarray(values[name]) for name in wanted]

    def _evaluate(self, values: dict[str, np.ndarray], keep: set[str]) -> None:
        """Every node in order, each output into ``values``; what no later node reads is dropped."""
        for index, node in enumerate(self._model.nodes):
            args = [values[name] if name else None for name in node.inputs]
            while args and args[-1] is None:  # absent optional inputs at the end
                args.pop()
            results = OPS[node.op_type](node, *args)
            for name, result in zip(node.outputs, results):
                if name:
                    values[name] = result
            for name in node.inputs:  # drop what no later node reads: large batches stay lean
                if self._last_use.get(name) == index and name not in keep and name not in self._constants:
                    values.pop(name, None)
