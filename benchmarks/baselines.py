"""The seed tutorial's first lesson: "mapping" models that regress the normalised sum.

Two baselines on the same domain as the default model (two terms, 0..999):
an MLP (Dense 4 -> Dense 2 -> Dense 1, as in the tutorial) and an LSTM(6) reading
the two normalised numbers as a sequence. Each is judged over all 1,000,000
pairs by RMSE (in units of the sum) and by exact-match after rounding, so the
README can set them beside the seq2seq model. Not a test; run by hand:

    python benchmarks/baselines.py --json benchmarks/baselines.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

LARGEST = 999
SCALE = 2 * LARGEST  # inputs and target divided by the largest possible sum


def build(kind: str) -> keras.Model:
    if kind == "mlp":
        layers = [keras.Input((2,)), keras.layers.Dense(4), keras.layers.Dense(2), keras.layers.Dense(1)]
    else:
        layers = [keras.Input((2, 1)), keras.layers.LSTM(6), keras.layers.Dense(1)]
    model = keras.Sequential(layers, name=kind)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mean_squared_error")
    return model


def pairs(count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, LARGEST + 1, size=(count, 2))


def inputs(kind: str, terms: np.ndarray) -> np.ndarray:
    x = (terms / SCALE).astype(np.float32)
    return x if kind == "mlp" else x[..., np.newaxis]


def evaluate(model: keras.Model, kind: str) -> dict:
    a, b = np.meshgrid(np.arange(LARGEST + 1), np.arange(LARGEST + 1), indexing="ij")
    terms = np.stack([a.ravel(), b.ravel()], axis=1)
    predicted = model.predict(inputs(kind, terms), batch_size=65536, verbose=0)[:, 0] * SCALE
    truth = terms.sum(axis=1)
    return {
        "queries": len(truth),
        "rmse": float(np.sqrt(np.mean((predicted - truth) ** 2))),
        "exact_match": float(np.mean(np.rint(predicted) == truth)),
    }


def run(kind: str, epochs: int, samples: int, batch_size: int, seed: int) -> dict:
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build(kind)
    started = time.perf_counter()
    for _ in range(epochs):
        terms = pairs(samples, rng)
        target = (terms.sum(axis=1) / SCALE).astype(np.float32)
        model.fit(inputs(kind, terms), target, batch_size=batch_size, epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    return {"model": kind, "epochs": epochs, "samples": samples, "train_seconds": round(seconds, 1)} | evaluate(
        model, kind
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    rows = [run(kind, args.epochs, args.samples, args.batch_size, args.seed) for kind in ("mlp", "lstm")]
    print(f"{'model':<6} {'epochs':>6} {'samples':>8} {'train s':>8} {'RMSE':>10} {'exact-match':>12}")
    for r in rows:
        print(
            f"{r['model']:<6} {r['epochs']:>6} {r['samples']:>8,} {r['train_seconds']:>8.1f} "
            f"{r['rmse']:>10.4f} {100 * r['exact_match']:>11.4f}%"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"domain": "2 terms in 0..999", "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
