"""One-hot, index and ordinal inputs side by side: one table, measured in one run (by hand, not a test).

    python benchmarks/encodings.py onehot.onnx index.onnx ordinal.onnx --json encodings.json

Each model is a run of the same recipe that differs only in ``--encoding`` (for the
table in docs/training.md: ``adder-train --encoding E --max-epochs 200 --out E.keras``,
then ``adder-export``). From each model's record: its parameters, epochs and seconds
until exact (or its exact-match when the budget ran out). Measured here, in
interleaved rounds so a busy machine slows every row alike: one query through
``Adder(path)(query)`` and ``Adder.batch`` over query strings in one call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import batch_queries_per_second, parameters, queries, seconds_per_single_query  # noqa: E402

from adder import Adder  # noqa: E402


def record_row(adder: Adder) -> dict:
    training = adder.config.training
    history = training.get("history", [])
    evaluation = training.get("evaluation", {})
    return {
        "encoding": adder.config.encoding,
        "command": training.get("command", ""),
        "parameters": training.get("parameters"),
        "epochs": max((h["epoch"] for h in history), default=None),
        "train_seconds": training.get("train_seconds"),
        "exact": training.get("exact"),
        "wrong": evaluation.get("wrong"),
        "total": evaluation.get("total"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="exported .onnx models of one domain")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="single-query timing per model and round")
    parser.add_argument("--batch", type=int, default=200_000, help="query strings per Adder.batch call")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    adders = [Adder(path) for path in args.models]
    strings, _ = queries(adders[0], args.batch, seed=2026)
    rows = []
    for path, adder in zip(args.models, adders):
        row = record_row(adder) | {"model": str(path), "onnx_parameters": parameters(path)}
        row["single_us"], row["batch_qps"] = [], []
        rows.append(row)
    for _ in range(args.rounds):
        for row, adder in zip(rows, adders):
            row["single_us"].append(1e6 * seconds_per_single_query(adder, strings, args.seconds))
            row["batch_qps"].append(batch_queries_per_second(adder, strings))
    header = "| encoding | parameters | epochs | train seconds | result | one query (us) | batch (q/s) |"
    print(header)
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        single, batch = statistics.median(row["single_us"]), statistics.median(row["batch_qps"])
        result = (
            "exact"
            if row["exact"]
            else f"{row['wrong']:,} wrong of {row['total']:,}"
            if row["total"]
            else "not measured"
        )
        print(
            f"| {row['encoding']} | {row['parameters']:,} | {row['epochs']} | {row['train_seconds']:,.0f} | "
            f"{result} | {single:.1f} | {batch:,.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
