"""Every shipped model's row of README's model table, measured in one run (by hand, not a test).

    python benchmarks/models.py --json benchmarks/models.json

For each model in runtime/models: its domain and size, parameters (the float32
weights of its ONNX file), file bytes, the exact-match its record carries and how that
was measured; then a single query through ``Adder(name)(query)`` and ``Adder.batch``
over query strings in one call. The queries are drawn uniformly over each model's
domain (seeded), so a model with brackets is timed on bracketed queries in proportion.
The models are timed in interleaved rounds (medians, ranges), so a busy machine slows
every row alike; the absolute figures still belong to a quiet machine. Counting
parameters needs onnx (the train extra).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from adder import Adder
from adder.figures import percent
from adder.grammar import shape_text, shape_values
from adder.session import MODELS_DIR, shipped_models
from adder.eval.domain import domain_shapes, sampled_blocks, shape_size  # numpy only


def parameters(path: Path) -> int:
    """float32 weights in the graph's initializers: what the model learned, not its shape constants."""
    graph = onnx.load(str(path)).graph
    arrays = (numpy_helper.to_array(init) for init in graph.initializer)
    return sum(a.size for a in arrays if a.dtype == np.float32)


def queries(adder: Adder, count: int, seed: int) -> tuple[list[str], list[int]]:
    """``count`` query strings drawn uniformly over the model's domain, and their true values."""
    rng = np.random.default_rng(seed)
    strings, values = [], []
    for shape, terms in sampled_blocks(adder.config, count, rng):
        strings.extend(shape_text(shape).format(*row) for row in terms.tolist())
        values.extend(shape_values(shape, terms).tolist())
    order = rng.permutation(len(strings))
    return [strings[i] for i in order], [values[i] for i in order]


def seconds_per_single_query(adder: Adder, strings: list[str], seconds: float) -> float:
    """Seconds per ``adder(query)``, cycling through distinct queries for about ``seconds``."""
    adder(strings[0])
    calls, started = 0, time.perf_counter()
    while calls < 100 or time.perf_counter() - started < seconds:
        adder(strings[calls % len(strings)])
        calls += 1
    return (time.perf_counter() - started) / calls


def batch_queries_per_second(adder: Adder, strings: list[str]) -> float:
    started = time.perf_counter()
    adder.batch(strings)
    return len(strings) / (time.perf_counter() - started)


def median_range(values: list[float]) -> list[float]:
    return [statistics.median(values), min(values), max(values)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over every model")
    parser.add_argument("--seconds", type=float, default=2.0, help="single-query timing per model and round")
    parser.add_argument("--batch", type=int, default=200_000, help="query strings per Adder.batch call")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    names = shipped_models()
    adders = {name: Adder(name) for name in names}
    strings, wrong = {}, {}
    for name in names:  # every timed query is answered once, and checked, before any timing
        strings[name], truth = queries(adders[name], args.batch, seed=0)
        wrong[name] = sum(a != t for a, t in zip(adders[name].batch(strings[name]), truth))
    single: dict[str, list[float]] = {name: [] for name in names}
    batch: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):  # interleaved: drift in the machine hits every model alike
        for name in names:
            single[name].append(seconds_per_single_query(adders[name], strings[name], args.seconds))
            batch[name].append(batch_queries_per_second(adders[name], strings[name]))

    rows = []
    for name in names:
        config, path = adders[name].config, MODELS_DIR / f"{name}.onnx"
        evaluation = config.training.get("evaluation", {})
        rows.append(
            {
                "model": name,
                "domain": config.describe(),
                "queries": sum(shape_size(config, s) for s in domain_shapes(config)),
                "parameters": parameters(path),
                "file_bytes": path.stat().st_size,
                "exact_match": evaluation.get("exact_match"),
                "wrong": evaluation.get("wrong"),
                "checked": evaluation.get("total"),
                "method": evaluation.get("method", "not measured"),
                "timing_queries_wrong": wrong[name],
                "single_us": [s * 1e6 for s in median_range(single[name])],
                "batch_qps": median_range(batch[name]),
            }
        )

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.rounds} interleaved rounds; Adder.batch over {args.batch:,} strings in one call")
    header = f"{'model':<10} {'queries':>12} {'parameters':>11} {'file bytes':>11}  {'exact-match':<34}"
    print(header + f" {'single us':>16} {'batch q/s':>30}")
    for row in rows:
        measured = (
            f"{percent(row['exact_match'])} ({row['wrong']:,} wrong, {row['method']})"
            if row["exact_match"] is not None
            else "not measured"
        )
        us, qps = row["single_us"], row["batch_qps"]
        print(
            f"{row['model']:<10} {row['queries']:>12,} {row['parameters']:>11,} {row['file_bytes']:>11,}  "
            f"{measured:<34} {us[0]:>5.1f} ({us[1]:.1f}-{us[2]:.1f}) "
            f"{qps[0]:>10,.0f} ({qps[1]:,.0f}-{qps[2]:,.0f})"
        )
    for row in rows:
        print(f"{row['model']}: {row['domain']}; {row['timing_queries_wrong']} of the timed queries answered wrong")
    if args.json:
        record = {"rows": rows, "rounds": args.rounds, "batch": args.batch, "seconds": args.seconds}
        with tempfile.NamedTemporaryFile("w", dir=Path(args.json).resolve().parent, delete=False) as tmp:
            json.dump(record, tmp, indent=2)
        os.replace(tmp.name, args.json)


if __name__ == "__main__":
    main()
