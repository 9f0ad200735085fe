"""A proof that a pairs-layout model (one LSTM, a Dense softmax per step) adds exactly at every length.

``prove`` picks the proof that fits the model: over its carried units (adder.eval.carried) when
the next step reads at most a few units of the state, else the one here, over boxes of the
whole state, described below. The interval bounds both use are in adder.eval.intervals.

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

from adder.eval.intervals import (  # noqa: F401 (read from here by the export, training and tests)
    ACTIVATION_ERROR,
    CELL_BOUND,
    FLOAT32_UNIT,
    MIN_MARGIN,
    PAIRS,
    PairWeights,
    column_sums,
    margin_box,
    run_model,
    step_box,
)

REGIONS = 200  # (a, b, carry in): region number carry * 100 + a * 10 + b
MAX_ROUNDS = 200


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
    carried: tuple = ()  # the units of h the next step reads (the carried proof)
    pieces: int = 0  # pieces each region was cut into (the carried proof)

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
        } | (
            {
                "method": "carried",
                "carried_units": list(self.carried),
                "pieces": self.pieces,
                "cell_bound": CELL_BOUND,
                "carried_boxes": self.boxes,
            }
            if self.history == 0
            else {"method": "boxes"}
        )

    def summary(self) -> list[str]:
        if not self.passed:
            return [f"proof FAILED: {self.failure}"]
        if self.history == 0:
            return self.carried_summary()
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

    def carried_summary(self) -> list[str]:
        read = ", ".join(str(u) for u in self.carried)
        spans = "; ".join(
            f"carry {k}: " + " x ".join(f"[{lo:.4f}, {hi:.4f}]" for lo, hi in zip(*box))
            for k, box in enumerate(self.boxes)
        )
        return [
            f"proof passed: 2 regions (carry 0 and carry 1) of the state (h, c) of {self.units} LSTM units, "
            f"{self.parameters:,} parameters; the next step reads only unit{'s' if len(self.carried) > 1 else ''} "
            f"{read} of h, and every cell is in [-{CELL_BOUND:g}, {CELL_BOUND:g}]",
            f"carried h: {spans}; regions {self.separation:.4f} apart",
            f"checked {self.transitions:,} transitions (100 pairs from the zero state and from each of "
            f"{self.pieces:,} pieces of each region) and their {self.margins:,} argmax margins, with outward rounding",
            f"smallest logit margin {self.smallest_margin:.4f} (needed: {MIN_MARGIN:g})",
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
            text += (
                " after the first pair"
                if previous == START
                else f" after ({previous // 10 % 10}, {previous % 10}, carry {previous // 100})"
            )
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
    """The proof that fits the model: over the carried units (``prove_carried``) when the next
    step reads at most MAX_CARRIED units of the state, else over boxes of the whole state.

    In the box proof the regions are grown until every transition into one lands inside; growing
    is only the search: the proof is the last round, in which every transition from every region
    and from the initial state landed inside its target box unchanged, and every region's margin
    was at least MIN_MARGIN.
    """
    if not all(np.isfinite(x).all() for x in weights.arrays()):
        return Proof(False, weights.units, weights.parameters, failure="the weights are not all finite numbers")
    if history is None:
        from adder.eval.carried import MAX_CARRIED, carried_units, prove_carried

        if 0 < len(carried_units(weights)) <= MAX_CARRIED:
            return prove_carried(weights, seed=seed)
        # the coarse regions first; finer ones where a state remembers a pair more
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
        gaps = np.maximum(
            lo[np.newaxis] - hi[start : start + 500, np.newaxis], lo[start : start + 500, np.newaxis] - hi[np.newaxis]
        ).max(axis=2)
        differ = digits[start : start + 500, np.newaxis] != digits[np.newaxis]
        if differ.any():
            smallest = min(smallest, float(gaps[differ].min()))
    return smallest
