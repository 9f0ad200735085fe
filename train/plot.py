"""Training curves as a picture: what `adder-train` writes beside model.json, and `adder-plot` redraws.

One figure, two panels over epochs: loss (log scale) above; below, the probe's
exact-match and, on a second axis, the replay pool's size and each sampled check's
wrong count, with every full-domain check marked by how many queries it found wrong. Drawn only from the record, so any
model.json (or a .keras / .onnx file's embedded record) can be redrawn later.
"""

from __future__ import annotations

import math
from pathlib import Path

from adder.eval.files import write_atomic

# Fields of a history entry drawn as numbers, and the range each may take: a hand-edited
# record may hold anything, and matplotlib fails on values such as an epoch of 1e308.
COUNT = (0, 10**18, True)  # (lowest, highest, whole)
NUMBER_FIELDS = {
    "epoch": (0, 10**9, True),
    "loss": (0, 1e30, False),  # NaN too: a run whose loss diverged is still drawn
    "probe_exact_match": (0, 1, False),
    "full_check_wrong": COUNT,
    "replay_pool": COUNT,
    "sample_check_wrong": COUNT,
    "sample_check_total": COUNT,
}
NEEDS = {"loss": "probe_exact_match", "sample_check_wrong": "sample_check_total"}  # drawn together


def _value_problem(key: str, value, allowed: tuple) -> str | None:
    low, high, whole = allowed
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{key} must be a number, got {_shorten(value)}"
    if key == "loss" and math.isnan(value):
        return None
    if not low <= value <= high or (whole and not float(value).is_integer()):
        kind = "a whole number" if whole else "a number"
        return f"{key} must be {kind} from {low:,} to {high:,}, got {_shorten(value)}"
    return None


def _shorten(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def record_problem(record) -> str | None:
    """What keeps a training record (perhaps edited by hand) from being drawn; None if nothing.

    Every field draw_curves reads is checked here, before matplotlib is imported.
    """
    if not isinstance(record, dict):
        return f"the training record must be a JSON object, got {type(record).__name__}"
    history = record.get("history")
    if history is None or history == []:
        return "the record holds no training history to draw"
    if not isinstance(history, list):
        return f"the record's history must be a list of epochs, got {type(history).__name__} {_shorten(history)}"
    for number, entry in enumerate(history, start=1):
        if not isinstance(entry, dict):
            return f"history entry {number} must be an object, got {type(entry).__name__} {_shorten(entry)}"
        if "epoch" not in entry:
            return f"history entry {number} has no epoch"
        for key, allowed in NUMBER_FIELDS.items():
            problem = _value_problem(key, entry[key], allowed) if key in entry else None
            if problem:
                return f"history entry {number}: {problem}"
        for key, partner in NEEDS.items():
            if key in entry and partner not in entry:
                return f"history entry {number} has {key} but no {partner}"
    evaluation = record.get("evaluation")
    if isinstance(evaluation, dict):
        for key in ("wrong", "total"):
            problem = _value_problem(key, evaluation[key], COUNT) if key in evaluation else None
            if problem:
                return f"the record's evaluation: {problem}"
    return None


def draw_curves(record: dict, target: Path, title: str = "") -> None:
    """Write the curves of a training record (ModelConfig.training) to a PNG, atomically."""
    problem = record_problem(record)
    if problem:
        raise ValueError(problem)
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and no GUI toolkit imported
    import matplotlib.pyplot as plt

    history = record["history"]
    trained = [h for h in history if "loss" in h]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, constrained_layout=True)
    epochs = [h["epoch"] for h in trained]
    top.plot(epochs, [h["loss"] for h in trained], color="tab:blue")
    top.set_yscale("log")
    top.set_ylabel("loss (cross-entropy)")
    # A `$` in a file name would start matplotlib's mathtext and fail the drawing: shown as itself.
    top.set_title((title or str(record.get("command", "training"))).replace("$", r"\$"), fontsize=9)
    bottom.plot(epochs, [100 * h["probe_exact_match"] for h in trained], color="tab:green", label="probe exact-match")
    bottom.set_ylabel("probe exact-match %")
    bottom.set_xlabel("epoch")
    checks = [h for h in history if "full_check_wrong" in h]
    for h in checks:
        bottom.axvline(h["epoch"], color="tab:red", alpha=0.3)
        bottom.annotate(
            f"{h['full_check_wrong']:,} wrong", (h["epoch"], 2), rotation=90, fontsize=7, color="tab:red", va="bottom"
        )
    final = record.get("evaluation")
    if isinstance(final, dict) and "wrong" in final:
        bottom.annotate(
            f"final: {final['wrong']:,} wrong of {final.get('total', 0):,}",
            (0.99, 0.05),
            xycoords="axes fraction",
            ha="right",
            fontsize=8,
            color="tab:red",
        )
    pool = [(h["epoch"], h["replay_pool"]) for h in history if "replay_pool" in h]
    if pool:
        right = bottom.twinx()
        right.step([e for e, _ in pool], [n for _, n in pool], where="post", color="tab:orange", label="replay pool")
        sampled = [h for h in history if "sample_check_wrong" in h]
        if sampled:  # each sampled check's wrong count, on the same query-count axis as the pool
            right.plot(
                [h["epoch"] for h in sampled],
                [h["sample_check_wrong"] for h in sampled],
                "o",
                markersize=3,
                color="tab:purple",
                label=f"wrong in a {sampled[-1]['sample_check_total']:,}-query sample",
            )
        right.set_ylabel("queries (pool, sample's wrong)" if sampled else "replay pool (queries)")
        right.set_yscale("symlog")
    bottom.set_ylim(0, 101)
    handles = bottom.get_legend_handles_labels()
    if pool:
        more = right.get_legend_handles_labels()
        handles = (handles[0] + more[0], handles[1] + more[1])
    bottom.legend(*handles, loc="center right", fontsize=8)
    write_atomic(Path(target), lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
