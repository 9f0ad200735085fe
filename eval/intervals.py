"""The pairs model's equations and sound interval bounds on them, for the proofs (adder.eval.proof).

``run_model`` is the real-number model in float64. ``step_box`` and ``margin_box`` bound, over a
whole box of states, the state after one step and the right digit's logit margin. The bounds
hold for the real-number model and for any execution whose every dot product, product and sum
is within the float32 rounding bound ``(n + 1) * 2**-24`` of its exact value (``n`` terms,
relative to the sum of the terms' magnitudes) and whose every sigmoid and tanh is within
``ACTIVATION_ERROR`` of the real function: float32 onnxruntime is such an execution
(tests/test_proof.py measures its activations' error). float64 arithmetic here is widened by
``FLOAT64_SLACK`` relative at every operation, far above its rounding error, and libm's exp and
tanh are correct to within an ulp or two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAIRS = [(a, b) for a in range(10) for b in range(10)]
FLOAT32_UNIT = 2.0**-24
FLOAT64_SLACK = 2.0**-50  # relative widening of each float64 result, above its 2**-53 rounding
ACTIVATION_ERROR = 1e-5  # allowed distance of an executed sigmoid or tanh from the real one
MIN_MARGIN = 1e-3  # logit margin asked for, so float32 softmax cannot tie the two best digits
TINY = 1e-300  # absolute widening: an interval at zero stays an interval
CELL_BOUND = 1.0 + 1e-4  # the carried proof's bound on every cell: 1, plus the forget gate's ACTIVATION_ERROR
# times a cell, plus rounding


@dataclass(frozen=True)
class PairWeights:
    """One LSTM layer and a Dense layer over its states, in Keras's layout (gates i, f, g, o)."""

    kernel: np.ndarray  # (20, 4U): a's one-hot digit, then b's
    recurrent: np.ndarray  # (U, 4U)
    bias: np.ndarray  # (4U,)
    dense: np.ndarray  # (U, V)
    dense_bias: np.ndarray  # (V,)

    @property
    def units(self) -> int:
        return self.recurrent.shape[0]

    @classmethod
    def from_onnx(cls, w: np.ndarray, r: np.ndarray, b: np.ndarray, dense, dense_bias) -> PairWeights:
        """From an ONNX LSTM's W (1, 4U, 20), R (1, 4U, U) and B (1, 8U), gates i, o, f, c."""
        units = r.shape[-1]
        order = np.concatenate([np.arange(units) + k * units for k in (0, 2, 3, 1)])  # i, f, g(c), o
        bias = (b[0, : 4 * units].astype(np.float64) + b[0, 4 * units :])[order]
        return cls(w[0][order].T, r[0][order].T, bias, np.asarray(dense), np.asarray(dense_bias))

    def as_float64(self) -> PairWeights:
        return PairWeights(*(np.asarray(x, dtype=np.float64) for x in self.arrays()))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.kernel, self.recurrent, self.bias, self.dense, self.dense_bias

    @property
    def parameters(self) -> int:
        return sum(x.size for x in self.arrays())


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def run_model(weights: PairWeights, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The real-number model (float64) on digit arrays (n, steps): logits (n, steps, V) and the
    states (n, steps, 2U) after each step, h then c."""
    w = weights.as_float64()
    units, (n, steps) = w.units, a.shape
    h, c = np.zeros((n, units)), np.zeros((n, units))
    logits, states = [], []
    for t in range(steps):
        z = w.kernel[a[:, t]] + w.kernel[10 + b[:, t]] + h @ w.recurrent + w.bias
        i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        logits.append(h @ w.dense + w.dense_bias)
        states.append(np.concatenate([h, c], axis=1))
    return np.stack(logits, axis=1), np.stack(states, axis=1)


def column_sums(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b + carry at every step (rows of digits, lowest first)."""
    sums, carry = np.zeros(a.shape, dtype=np.int64), np.zeros(len(a), dtype=np.int64)
    for t in range(a.shape[1]):
        sums[:, t] = a[:, t] + b[:, t] + carry
        carry = sums[:, t] // 10
    return sums


# -- intervals, every result widened outward ------------------------------------------------
def _out(lo, hi, err=0.0):
    slack = FLOAT64_SLACK * np.maximum(np.abs(lo), np.abs(hi)) + TINY
    return lo - err - slack, hi + err + slack


def _affine(lo, hi, matrix, offset, offset_size):
    """x @ matrix + offset over the box lo <= x <= hi, with the float32 rounding bound of the
    executed dot product (``offset_size``: the magnitude of the terms already in ``offset``)."""
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    rad = np.maximum(hi - mid, mid - lo) * (1 + FLOAT64_SLACK)
    centre, spread = mid @ matrix + offset, rad @ np.abs(matrix)
    magnitude = np.maximum(np.abs(lo), np.abs(hi)) @ np.abs(matrix) + offset_size
    terms = matrix.shape[0] + 3
    err = (terms + 1) * FLOAT32_UNIT * magnitude + 2 * terms * FLOAT64_SLACK * magnitude
    return _out(centre - spread, centre + spread, err)


def _times(alo, ahi, blo, bhi):
    products = np.stack([alo * blo, alo * bhi, ahi * blo, ahi * bhi])
    lo, hi = products.min(axis=0), products.max(axis=0)
    return _out(lo, hi, FLOAT32_UNIT * np.maximum(np.abs(lo), np.abs(hi)))


def _plus(alo, ahi, blo, bhi):
    lo, hi = alo + blo, ahi + bhi
    return _out(lo, hi, FLOAT32_UNIT * np.maximum(np.abs(lo), np.abs(hi)))


def _activation(function, lo, hi, low, high):
    """A monotone activation over an interval, widened by the execution's allowed error, kept in its range."""
    flo, fhi = _out(function(lo), function(hi), ACTIVATION_ERROR)
    return np.maximum(flo, low), np.minimum(fhi, high)


def step_box(w: PairWeights, lo: np.ndarray, hi: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on the state after reading (a, b) from any state in the box [lo, hi] (h then c);
    boxes may be stacked along leading axes."""
    units = w.units
    x = w.kernel[a] + w.kernel[10 + b] + w.bias
    size = np.abs(w.kernel[a]) + np.abs(w.kernel[10 + b]) + np.abs(w.bias)
    zlo, zhi = _affine(lo[..., :units], hi[..., :units], w.recurrent, x, size)
    gates = [(zlo[..., k * units : (k + 1) * units], zhi[..., k * units : (k + 1) * units]) for k in range(4)]
    i, f, o = (_activation(_sigmoid, *gates[k], 0.0, 1.0) for k in (0, 1, 3))
    g = _activation(np.tanh, *gates[2], -1.0, 1.0)
    c = _plus(*_times(*f, lo[..., units:], hi[..., units:]), *_times(*i, *g))
    h = _times(*o, *_activation(np.tanh, *c, -1.0, 1.0))
    return np.concatenate([h[0], c[0]], axis=-1), np.concatenate([h[1], c[1]], axis=-1)


def margin_box(w: PairWeights, lo: np.ndarray, hi: np.ndarray, digit: int) -> np.ndarray:
    """A lower bound, over each box (stacked along the leading axis), on digit's logit minus
    the largest other logit."""
    units = w.units
    others = [k for k in range(w.dense.shape[1]) if k != digit]
    matrix = w.dense[:, [digit]] - w.dense[:, others]  # exact: float32 differences in float64
    offset = w.dense_bias[digit] - w.dense_bias[others]
    size = np.abs(w.dense_bias[digit]) + np.abs(w.dense_bias[others])
    # Each logit is rounded on its own in execution: the bound covers both dot products.
    dlo, _ = _affine(lo[..., :units], hi[..., :units], matrix, offset, size)
    both = np.maximum(np.abs(lo[..., :units]), np.abs(hi[..., :units])) @ (
        np.abs(w.dense[:, [digit]]) + np.abs(w.dense[:, others])
    )
    return (dlo - (units + 2) * FLOAT32_UNIT * both).min(axis=-1)


def _inside(lo, hi, box_lo, box_hi) -> bool:
    return bool((lo >= box_lo).all() and (hi <= box_hi).all())
