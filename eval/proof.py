"""A proof that a pairs-layout model (one LSTM, a Dense softmax per step) adds exactly at every length.

The model reads one aligned digit pair per step, lowest first, and writes one answer digit
per step; its last step reads the pair (0, 0) and writes the final carry. After a step
that read the pair (a, b) with carry k coming in, the state (h, c) of a working model lies
near one point for each of the 200 triples (a, b, k): the region of that step. The proof
finds a box around each region's reachable states (``find_regions``) and then checks, with
interval arithmetic rounded outward, that

* from the initial state (0, 0), each of the 100 pairs (a, b) lands in box (a, b, 0);
* from any state in box (a, b, k), each pair (a2, b2) lands in box (a2, b2, k2), where
  k2 = 1 when a + b + k >= 10 (the carry is the only thing a region passes on);
* in box (a, b, k), the logit of digit (a + b + k) % 10 exceeds every other by a margin.

By induction over the steps, every input of any length is then answered right: the state
after each step lies in the box of that step's pair and true carry, whose argmax is the
right digit. Nothing is sampled: the boxes are checked over every point in them.

The bounds hold for the real-number model and for any execution whose every dot product,
product and sum is within the float32 rounding bound ``(n + 1) * 2**-24`` of its exact
value (``n`` terms, relative to the sum of the terms' magnitudes) and whose every sigmoid and
tanh is within ``ACTIVATION_ERROR`` of the real function: float32 onnxruntime is such an
execution (tests/test_proof.py measures its activations' error). float64 arithmetic here is
widened by ``FLOAT64_SLACK`` relative at every operation, far above its rounding error, and
libm's exp and tanh are correct to within an ulp or two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAIRS = [(a, b) for a in range(10) for b in range(10)]
REGIONS = 200  # (a, b, carry in): region number carry * 100 + a * 10 + b
FLOAT32_UNIT = 2.0**-24
FLOAT64_SLACK = 2.0**-50  # relative widening of each float64 result, above its 2**-53 rounding
ACTIVATION_ERROR = 1e-5  # allowed distance of an executed sigmoid or tanh from the real one
MIN_MARGIN = 1e-3  # logit margin asked for, so float32 softmax cannot tie the two best digits
TINY = 1e-300  # absolute widening: an interval at zero stays an interval
MAX_ROUNDS = 200


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
    """Bounds on the state after reading (a, b) from any state in the box [lo, hi] (h then c)."""
    units = w.units
    x = w.kernel[a] + w.kernel[10 + b] + w.bias
    size = np.abs(w.kernel[a]) + np.abs(w.kernel[10 + b]) + np.abs(w.bias)
    zlo, zhi = _affine(lo[:units], hi[:units], w.recurrent, x, size)
    gates = [(zlo[k * units : (k + 1) * units], zhi[k * units : (k + 1) * units]) for k in range(4)]
    i, f, o = (_activation(_sigmoid, *gates[k], 0.0, 1.0) for k in (0, 1, 3))
    g = _activation(np.tanh, *gates[2], -1.0, 1.0)
    c = _plus(*_times(*f, lo[units:], hi[units:]), *_times(*i, *g))
    h = _times(*o, *_activation(np.tanh, *c, -1.0, 1.0))
    return np.concatenate([h[0], c[0]]), np.concatenate([h[1], c[1]])


def margin_box(w: PairWeights, lo: np.ndarray, hi: np.ndarray, digit: int) -> float:
    """A lower bound, over the box, on digit's logit minus the largest other logit."""
    units = w.units
    others = [k for k in range(w.dense.shape[1]) if k != digit]
    matrix = w.dense[:, [digit]] - w.dense[:, others]  # exact: float32 differences in float64
    offset = w.dense_bias[digit] - w.dense_bias[others]
    size = np.abs(w.dense_bias[digit]) + np.abs(w.dense_bias[others])
    # Each logit is rounded on its own in execution: the bound covers both dot products.
    dlo, _ = _affine(lo[:units], hi[:units], matrix, offset, size)
    both = np.maximum(np.abs(lo[:units]), np.abs(hi[:units])) @ (np.abs(w.dense[:, [digit]]) + np.abs(w.dense[:, others]))
    return float((dlo - (units + 2) * FLOAT32_UNIT * both).min())


def _inside(lo, hi, box_lo, box_hi) -> bool:
    return bool((lo >= box_lo).all() and (hi <= box_hi).all())


# -- the proof ------------------------------------------------------------------------------
@dataclass
class Proof:
    """What the proof checked and found; ``passed`` only when every case held."""

    passed: bool
    units: int
    parameters: int
    regions: int = REGIONS
    transitions: int = 0
    margins: int = 0
    rounds: int = 0
    smallest_margin: float = 0.0
    widest_region: float = 0.0
    separation: float = 0.0
    failure: str = ""
    boxes: list = field(default_factory=list, repr=False)

    @property
    def cases(self) -> int:
        return self.transitions + self.margins

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "statement": STATEMENT,
            "units": self.units,
            "parameters": self.parameters,
            "regions": self.regions,
            "transitions_checked": self.transitions,
            "margins_checked": self.margins,
            "rounds": self.rounds,
            "smallest_margin": round(self.smallest_margin, 6),
            "widest_region": float(f"{self.widest_region:.3g}"),
            "separation": round(self.separation, 6),
            "float32_unit": FLOAT32_UNIT,
            "activation_error": ACTIVATION_ERROR,
            "failure": self.failure,
        }

    def summary(self) -> list[str]:
        if not self.passed:
            return [f"proof FAILED: {self.failure}"]
        return [
            f"proof passed: {self.regions} regions (one per digit pair and carry in) in the {2 * self.units}-dimensional "
            f"state (h, c) of {self.units} LSTM units, {self.parameters:,} parameters",
            f"checked {self.transitions:,} transitions (100 pairs from the initial state and from every region) "
            f"and {self.margins} argmax margins, over whole boxes with outward rounding",
            f"smallest logit margin {self.smallest_margin:.4f} (needed: {MIN_MARGIN:g}); widest region "
            f"{self.widest_region:.3g}; regions of different digits at least {self.separation:.3f} apart",
            "every input of every length is answered right, by the real-number model and by float32 execution "
            f"(rounding within (n+1)*2^-24 per dot product, activations within {ACTIVATION_ERROR:g})",
        ]


STATEMENT = (
    "for every sequence of aligned digit pairs of any length, started from the zero state, every step's argmax "
    "is the right digit of the sum, for the real-number model and for any float32 execution whose dot products "
    "round within (n+1)*2^-24 and whose sigmoid and tanh are within activation_error of the real functions"
)


def region_of(a: int, b: int, carry: int) -> int:
    return carry * 100 + a * 10 + b


def digit_of(region: int) -> int:
    """The answer digit a state in this region must write."""
    carry, a, b = region // 100, region // 10 % 10, region % 10
    return (a + b + carry) % 10


def carry_out(region: int) -> int:
    carry, a, b = region // 100, region // 10 % 10, region % 10
    return int(a + b + carry >= 10)


def describe_region(region: int | None) -> str:
    if region is None:
        return "the initial state"
    return f"region ({region // 10 % 10}, {region % 10}, carry {region // 100})"


def reachable_states(weights: PairWeights, sequences: int = 2000, steps: int = 30, seed: int = 0):
    """States the model reaches on random pairs (a quarter of them long carry chains), by region."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 10, (2, sequences, steps))
    chains = sequences // 4
    a[:chains] = 9 - b[:chains]
    _, states = run_model(weights, a, b)
    sums = column_sums(a, b)
    regions = (sums - a - b) * 100 + a * 10 + b
    return {r: states[regions == r] for r in range(REGIONS)}


def find_regions(weights: PairWeights, pad: float = 1e-4, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """A box around each region's reachable states, padded by ``pad`` on every side."""
    boxes = []
    for states in reachable_states(weights, seed=seed).values():
        if len(states) == 0:  # never seen: an empty box no state fits in, grown only if a step lands there
            boxes.append((np.full(2 * weights.units, np.inf), np.full(2 * weights.units, -np.inf)))
            continue
        boxes.append((states.min(axis=0) - pad, states.max(axis=0) + pad))
    return boxes


def prove(weights: PairWeights, pad: float = 1e-4, seed: int = 0) -> Proof:
    """Find the regions, grow each until every transition into it lands inside, then check margins.

    Growing is only the search: the proof is the last round, in which every one of the
    20,000 transitions between regions and the 100 from the initial state landed inside
    its target box unchanged, and every region's margin was at least MIN_MARGIN.
    """
    w = weights.as_float64()
    units = w.units
    proof = Proof(passed=False, units=units, parameters=weights.parameters)
    boxes = find_regions(weights, pad, seed)
    zero = np.zeros(2 * units)
    for round_ in range(1, MAX_ROUNDS + 1):
        grown, checked, worst = False, 0, ""
        for region, lo, hi in [(None, zero, zero)] + [(r, *boxes[r]) for r in range(REGIONS)]:
            if not np.isfinite(lo).all():
                continue
            carry = 0 if region is None else carry_out(region)
            for a, b in PAIRS:
                target = region_of(a, b, carry)
                nlo, nhi = step_box(w, lo, hi, a, b)
                checked += 1
                box_lo, box_hi = boxes[target]
                if not _inside(nlo, nhi, box_lo, box_hi):
                    grown = True
                    worst = worst or f"from {describe_region(region)} the pair ({a}, {b}) leaves {describe_region(target)}"
                    new_lo, new_hi = np.minimum(box_lo, nlo), np.maximum(box_hi, nhi)
                    spread = (new_hi - new_lo) * 0.05 + pad
                    boxes[target] = (new_lo - spread, new_hi + spread)
        proof.rounds, proof.transitions = round_, checked
        live = [r for r in range(REGIONS) if np.isfinite(boxes[r][0]).all()]
        margins = {r: margin_box(w, *boxes[r], digit_of(r)) for r in live}
        smallest = min(margins, key=margins.get)
        proof.smallest_margin = float(margins[smallest])
        if margins[smallest] < MIN_MARGIN:  # growing only lowers a margin: this cannot recover
            proof.failure = (
                f"{describe_region(smallest)} does not write digit {digit_of(smallest)} over its whole box: "
                f"margin {margins[smallest]:.4g} < {MIN_MARGIN:g}" + (f" (after: {worst})" if grown else "")
            )
            return proof
        if not grown:
            proof.passed = True
            proof.regions = len(live)
            proof.margins = len(margins)
            proof.widest_region = float(max((boxes[r][1] - boxes[r][0]).max() for r in live))
            proof.separation = _separation([boxes[r] for r in live], [digit_of(r) for r in live])
            proof.boxes = [(boxes[r][0].tolist(), boxes[r][1].tolist()) for r in live]
            return proof
    proof.failure = f"the regions did not settle in {MAX_ROUNDS} rounds: {worst}"
    return proof


def _separation(boxes, digits) -> float:
    """The smallest distance (largest coordinate gap) between boxes that write different digits."""
    lo = np.array([box[0] for box in boxes])
    hi = np.array([box[1] for box in boxes])
    gaps = np.maximum(lo[np.newaxis] - hi[:, np.newaxis], lo[:, np.newaxis] - hi[np.newaxis]).max(axis=2)
    differ = np.array(digits)[:, np.newaxis] != np.array(digits)[np.newaxis]
    return float(gaps[differ].min())
