"""The proof over the carried units: for a pairs model whose next step reads only a few units of h.

Called by adder.eval.proof.prove, which picks it for such a model; docs/proof.md says what it
shows and how.
"""

from __future__ import annotations

import numpy as np

from adder.eval.intervals import (
    CELL_BOUND,
    MIN_MARGIN,
    PAIRS,
    PairWeights,
    column_sums,
    margin_box,
    run_model,
    step_box,
)
from adder.eval.proof import Proof

MAX_CARRIED = 3  # units of h the next step may read for prove_carried
PIECES = {1: 2048, 2: 96, 3: 20}  # pieces along each carried unit a region is cut into
CARRIED_ROUNDS = 100


def carried_units(weights: PairWeights) -> np.ndarray:
    """The units of h whose recurrent weights are not all exactly 0: all the next step reads of h.
    The others' values enter no gate (their products are exact zeros in any execution)."""
    return np.flatnonzero(np.abs(np.asarray(weights.recurrent)).sum(axis=1) > 0)


def _cut(lo: np.ndarray, hi: np.ndarray, per_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The box [lo, hi] cut into per_axis ** dims pieces (lo and hi of each, stacked)."""
    edges = [np.linspace(low, high, per_axis + 1) for low, high in zip(lo, hi)]
    grids_lo = np.meshgrid(*[e[:-1] for e in edges], indexing="ij")
    grids_hi = np.meshgrid(*[e[1:] for e in edges], indexing="ij")
    return np.stack([g.ravel() for g in grids_lo], axis=1), np.stack([g.ravel() for g in grids_hi], axis=1)


def prove_carried(weights: PairWeights, seed: int = 0, pad: float = 1e-3, grow: float = 0.5) -> Proof:
    """The proof for a model whose next step reads only a few units of h (``carried_units``).

    Then all a step passes on is those units' values and the cells through the forget gate. The
    two regions are: after a step whose carry out is k, the carried units lie in the box S_k, the
    other units of h anywhere, and every cell in [-CELL_BOUND, CELL_BOUND]. Each S_k is cut into
    pieces, and with interval arithmetic rounded outward (``step_box``, ``margin_box``) it is
    checked that from the zero state and from every piece of S_0 and S_1, each of the 100 pairs
    (a, b) leads to a state in the region of the true carry out (cells in bounds, carried units
    in S_k'), and that the logit of the right digit (a + b + k) % 10 exceeds every other by
    MIN_MARGIN. A state's other units need not be bounded: no gate reads them, and the margin is
    taken on the h the step writes. By induction every step of every input, of any length, writes
    the right digit. The boxes S_k start around the states reached on random pairs and grow
    until the images of every piece fall inside; that is the search, and the proof is the round
    in which nothing grew.
    """
    w = weights.as_float64()
    units, read = w.units, carried_units(weights)
    proof = Proof(
        passed=False,
        units=units,
        parameters=weights.parameters,
        regions=2,
        history=0,
        carried=tuple(int(u) for u in read),
    )
    if not 0 < len(read) <= MAX_CARRIED:
        proof.failure = f"the next step reads {len(read)} units of h; this proof takes 1 to {MAX_CARRIED}"
        return proof
    per_axis = PIECES[len(read)]
    proof.pieces = per_axis ** len(read)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 10, (2, 4000, 40))
    a[:1000] = 9 - b[:1000]  # carry chains
    _, states = run_model(weights, a, b)
    carry = column_sums(a, b) >= 10
    seen = states[..., read]
    boxes = []
    for k in (0, 1):
        values = seen[carry == k]
        boxes.append([values.min(axis=0) - pad, values.max(axis=0) + pad])
    for round_ in range(1, CARRIED_ROUNDS + 1):
        hull = [[box[0].copy(), box[1].copy()] for box in boxes]
        checked, smallest, worst, failure = 0, np.inf, "", ""
        for source in ("zero", 0, 1):
            if source == "zero":
                lo, hi, k_in = np.zeros((1, 2 * units)), np.zeros((1, 2 * units)), 0
            else:
                lo, hi, k_in = np.zeros((proof.pieces, 2 * units)), np.zeros((proof.pieces, 2 * units)), source
                lo[:, read], hi[:, read] = _cut(*boxes[source], per_axis)
                lo[:, units:], hi[:, units:] = -CELL_BOUND, CELL_BOUND
            for a_, b_ in PAIRS:
                total = a_ + b_ + k_in
                k_out, digit = int(total >= 10), total % 10
                nlo, nhi = step_box(w, lo, hi, a_, b_)
                checked += len(lo)
                where = "the zero state" if source == "zero" else f"a state of carry {source}"
                # Written so that a NaN anywhere fails every check: NaN compares false.
                if not ((nlo[:, units:] >= -CELL_BOUND).all() and (nhi[:, units:] <= CELL_BOUND).all()):
                    failure = (
                        failure
                        or f"from {where} the pair ({a_}, {b_}) takes a cell outside [-{CELL_BOUND:g}, {CELL_BOUND:g}]"
                    )
                margins = margin_box(w, nlo, nhi, digit)
                if margins.min() < smallest:
                    smallest = float(margins.min())
                if not (margins >= MIN_MARGIN).all() and not failure:
                    piece = int(np.argmin(np.where(np.isnan(margins), -np.inf, margins)))
                    span = " x ".join(f"[{low:.5f}, {high:.5f}]" for low, high in zip(lo[piece, read], hi[piece, read]))
                    failure = (
                        f"from {where} (carried h in {span}) the pair ({a_}, {b_}) does not write digit {digit}: "
                        f"margin {margins.min():.4g} < {MIN_MARGIN:g}"
                    )
                out_lo, out_hi = nlo[:, read].min(axis=0), nhi[:, read].max(axis=0)
                if not ((out_lo >= boxes[k_out][0]).all() and (out_hi <= boxes[k_out][1]).all()):
                    worst = worst or f"from {where} the pair ({a_}, {b_}) leaves the region of carry {k_out}"
                hull[k_out][0] = np.minimum(hull[k_out][0], out_lo)
                hull[k_out][1] = np.maximum(hull[k_out][1], out_hi)
        proof.rounds, proof.transitions, proof.margins, proof.smallest_margin = round_, checked, checked, smallest
        if failure:  # growing a region only loses margin: this cannot recover
            proof.failure = failure + (f" (after: {worst})" if worst else "")
            return proof
        if not worst:
            proof.passed = True
            proof.boxes = [[box[0].tolist(), box[1].tolist()] for box in boxes]
            proof.widest_region = float(max((box[1] - box[0]).max() for box in boxes))
            gap = np.maximum(boxes[1][0] - boxes[0][1], boxes[0][0] - boxes[1][1]).max()
            proof.separation = float(gap)
            return proof
        for k in (0, 1):  # grow each side past where the images reached, by half as much again
            below, above = boxes[k][0] - hull[k][0], hull[k][1] - boxes[k][1]
            boxes[k] = [
                boxes[k][0] - np.where(below > 0, (1 + grow) * below + 1e-9, 0.0),
                boxes[k][1] + np.where(above > 0, (1 + grow) * above + 1e-9, 0.0),
            ]
    proof.failure = f"the regions did not settle in {CARRIED_ROUNDS} rounds: {worst}"
    return proof
