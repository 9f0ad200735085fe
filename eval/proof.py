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


# -- the proof ------------------------------------------------------------------------------
@dataclass
class Proof:
    """What the proof checked and found; ``passed`` only when every case held."""

    passed: bool
    units: int
    parameters: int
    regions: int = REGIONS
    history: int = 1
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
            "history": self.history,
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
            f"proof passed: {self.regions:,} regions ({KEYS[self.history]}) in the {2 * self.units}-dimensional "
            f"state (h, c) of {self.units} LSTM units, {self.parameters:,} parameters",
            f"checked {self.transitions:,} transitions (100 pairs from the initial state and from every region) "
            f"and {self.margins} argmax margins, over whole boxes with outward rounding",
            f"smallest logit margin {self.smallest_margin:.4f} (needed: {MIN_MARGIN:g}); widest region "
            f"{self.widest_region:.3g}; regions of different digits at least {self.separation:.3f} apart",
            "every input of every length is answered right, by the real-number model and by float32 execution "
            f"(rounding within (n+1)*2^-24 per dot product, activations within {ACTIVATION_ERROR:g})",
        ]


KEYS = {1: "one per digit pair and carry in", 2: "one per digit pair and carry in, and the step before's"}
STATEMENT = (
    "for every sequence of aligned digit pairs of any length, started from the zero state, every step's argmax "
    "is the right digit of the sum, for the real-number model and for any float32 execution whose dot products "
    "round within (n+1)*2^-24 and whose sigmoid and tanh are within activation_error of the real functions"
)


START = 200  # the region "before the first step": the zero state, carry 0


def digit_of(region: int) -> int:
    """The answer digit a state in a step region (carry * 100 + a * 10 + b) must write."""
    carry, a, b = region // 100, region // 10 % 10, region % 10
    return (a + b + carry) % 10


def carry_out(region):
    carry, a, b = region // 100, region // 10 % 10, region % 10
    return (a + b + carry >= 10).astype(np.int64) if isinstance(region, np.ndarray) else int(a + b + carry >= 10)


class Regions:
    """How regions are numbered. With ``history`` 1 a region is the step's (a, b, carry in): 200.
    With ``history`` 2 it is that and the step before's region (or START): 201 * 100 = 20,100,
    for a model whose state also remembers something of the pair before; each region's box is
    then tighter, and the proof the same induction over finer cases."""

    def __init__(self, history: int) -> None:
        if history not in (1, 2):
            raise ValueError(f"history must be 1 or 2 steps, got {history}")
        self.history = history
        self.count = REGIONS if history == 1 else (START + 1) * 100
        ids = np.arange(self.count)
        self.step = ids if history == 1 else self.step_of(ids // 100, ids % 100)
        self.digit = np.array([digit_of(int(r)) for r in self.step])

    @staticmethod
    def step_of(previous, pair):
        """The step region after ``previous`` (a step region or START) reading ``pair``."""
        carry = np.where(previous == START, 0, carry_out(np.minimum(previous, START - 1)))
        return carry * 100 + pair

    def after(self, ids: np.ndarray, pair: int) -> np.ndarray:
        """The region a step reading ``pair`` goes to from each region in ``ids``."""
        if self.history == 1:
            return self.step_of(self.step[ids], pair)
        return self.step[ids] * 100 + pair

    def first(self, pair: int) -> int:
        """The region of the first step, from the zero state."""
        return pair if self.history == 1 else START * 100 + pair

    def label(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The region of every step of digit rows a and b."""
        sums = column_sums(a, b)
        step = (sums - a - b) * 100 + a * 10 + b
        if self.history == 1:
            return step
        previous = np.concatenate([np.full((len(a), 1), START), step[:, :-1]], axis=1)
        return previous * 100 + a * 10 + b

    def describe(self, region: int | None) -> str:
        if region is None:
            return "the initial state"
        step = int(self.step[region])
        text = f"region ({step // 10 % 10}, {step % 10}, carry {step // 100})"
        if self.history == 2:
            previous = region // 100
            text += " after the first pair" if previous == START else f" after ({previous // 10 % 10}, {previous % 10}, carry {previous // 100})"
        return text


def reachable_states(weights: PairWeights, regions: Regions, sequences: int = 4000, steps: int = 40, seed: int = 0):
    """States the model reaches on random pairs (a quarter of them long carry chains) and their regions."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 10, (2, sequences, steps))
    chains = sequences // 4
    a[:chains] = 9 - b[:chains]
    _, states = run_model(weights, a, b)
    return states.reshape(-1, states.shape[-1]), regions.label(a, b).reshape(-1)


def find_regions(weights: PairWeights, regions: Regions, pad: float = 1e-4, seed: int = 0):
    """A box around each region's reachable states, padded by ``pad``; +-inf (empty) where none was seen."""
    states, labels = reachable_states(weights, regions, seed=seed)
    lo = np.full((regions.count, states.shape[1]), np.inf)
    hi = np.full((regions.count, states.shape[1]), -np.inf)
    np.minimum.at(lo, labels, states)
    np.maximum.at(hi, labels, states)
    seen = np.isfinite(lo).all(axis=1)
    lo[seen] -= pad
    hi[seen] += pad
    return lo, hi


def prove(
    weights: PairWeights, pad: float = 1e-4, seed: int = 0, history: int | None = None, grow: float = 0.05
) -> Proof:
    """Find the regions, grow each until every transition into it lands inside, then check margins.

    Growing is only the search: the proof is the last round, in which every transition from
    every region and from the initial state landed inside its target box unchanged, and every
    region's margin was at least MIN_MARGIN.
    """
    if history is None:  # the coarse regions first; finer ones where a state remembers a pair more
        proof = prove(weights, pad, seed, 1, grow)
        return proof if proof.passed else prove(weights, pad, seed, 2, grow)
    w = weights.as_float64()
    units, regions = w.units, Regions(history)
    proof = Proof(passed=False, units=units, parameters=weights.parameters, regions=regions.count, history=history)
    lo, hi = find_regions(weights, regions, pad, seed)
    zero = np.zeros((1, 2 * units))
    for round_ in range(1, MAX_ROUNDS + 1):
        live = np.flatnonzero(np.isfinite(lo).all(axis=1))
        new_lo, new_hi = lo.copy(), hi.copy()
        worst, checked = "", 0
        for a, b in PAIRS:
            pair = a * 10 + b
            for sources, targets, start in (
                (live, regions.after(live, pair), False),
                (np.zeros(1, dtype=np.int64), np.array([regions.first(pair)]), True),
            ):
                nlo, nhi = step_box(w, zero if start else lo[sources], zero if start else hi[sources], a, b)
                checked += len(sources)
                out = ~((nlo >= lo[targets]).all(axis=1) & (nhi <= hi[targets]).all(axis=1))
                if out.any():
                    k = int(np.flatnonzero(out)[0])
                    worst = worst or (
                        f"from {regions.describe(None if start else int(sources[k]))} the pair ({a}, {b}) "
                        f"leaves {regions.describe(int(targets[k]))}"
                    )
                    np.minimum.at(new_lo, targets[out], nlo[out])
                    np.maximum.at(new_hi, targets[out], nhi[out])
        proof.rounds, proof.transitions = round_, checked
        grown = np.flatnonzero(((new_lo < lo) | (new_hi > hi)).any(axis=1))
        spread = np.where(np.isfinite(new_hi - new_lo), (new_hi - new_lo) * grow, 0.0) + pad
        lo[grown], hi[grown] = new_lo[grown] - spread[grown], new_hi[grown] + spread[grown]
        live = np.flatnonzero(np.isfinite(lo).all(axis=1))
        margins = np.full(regions.count, np.inf)
        for digit in range(10):
            chosen = live[regions.digit[live] == digit]
            if len(chosen):
                margins[chosen] = margin_box(w, lo[chosen], hi[chosen], digit)
        smallest = int(np.argmin(margins))
        proof.smallest_margin = float(margins[smallest])
        if margins[smallest] < MIN_MARGIN:  # growing only lowers a margin: this cannot recover
            proof.failure = (
                f"{regions.describe(smallest)} does not write digit {regions.digit[smallest]} over its whole box: "
                f"margin {margins[smallest]:.4g} < {MIN_MARGIN:g}" + (f" (after: {worst})" if worst else "")
            )
            return proof
        if not len(grown):
            proof.passed = True
            proof.regions = len(live)
            proof.margins = len(live)
            proof.widest_region = float((hi[live] - lo[live]).max())
            proof.separation = _separation(lo[live], hi[live], regions.digit[live])
            proof.boxes = [(lo[r].tolist(), hi[r].tolist()) for r in live] if history == 1 else []
            return proof
    proof.failure = f"the regions did not settle in {MAX_ROUNDS} rounds: {worst}"
    return proof


def _separation(lo: np.ndarray, hi: np.ndarray, digits: np.ndarray) -> float:
    """The smallest distance (largest coordinate gap) between boxes that write different digits."""
    smallest = np.inf
    for start in range(0, len(lo), 500):  # in blocks: 20,000 boxes pairwise would not fit in memory
        gaps = np.maximum(lo[np.newaxis] - hi[start : start + 500, np.newaxis], lo[start : start + 500, np.newaxis] - hi[np.newaxis]).max(axis=2)
        differ = digits[start : start + 500, np.newaxis] != digits[np.newaxis]
        if differ.any():
            smallest = min(smallest, float(gaps[differ].min()))
    return smallest
