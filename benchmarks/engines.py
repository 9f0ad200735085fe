"""onnxruntime and the numpy engine side by side: single query, batch rate and cold start, per model.

    python benchmarks/engines.py                      # every shipped model, both engines
    python benchmarks/engines.py default --rounds 5 --batch 100000

Each figure is the median of ``--rounds`` rounds, the engines interleaved within a
round so that a load on the machine weighs on both alike. Single query: the mean of
``adder(query)`` over one second of calls on one query of the domain. Batch rate:
``adder.batch`` over ``--batch`` queries drawn from the domain (numpy seed 46), every
core in use. Cold start: ``adder --engine E --model M 3+10``-like, from a fresh process
(wall time). Needs only the runtime and numpy (the queries come from adder.eval.domain).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time

import numpy as np

from adder import Adder
from adder.grammar import shape_text
from adder.session import ENGINES, shipped_models
from adder.eval.domain import sampled_blocks


def queries(name: str, count: int) -> list[str]:
    config = Adder(name).config
    lines = []
    for shape, terms in sampled_blocks(config, count, np.random.default_rng(46)):
        template = shape_text(shape)
        lines += [template.format(*row) for row in terms.tolist()]
    return lines


def single_us(adder: Adder, query: str, seconds: float) -> float:
    adder(query)
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(20):
            adder(query)
        calls += 20
    return (time.perf_counter() - started) / calls * 1e6


def batch_rate(adder: Adder, lines: list[str]) -> float:
    started = time.perf_counter()
    adder.batch(lines)
    return len(lines) / (time.perf_counter() - started)


def cold_start_s(name: str, engine: str, query: str) -> float:
    command = [shutil.which("adder") or "adder", "--engine", engine, "--model", name, query]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=shipped_models())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="of single queries per engine and round")
    parser.add_argument("--batch", type=int, default=100_000, help="queries per batch measurement")
    args = parser.parse_args()
    print("| model | engine | single query | batch rate | cold start |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name in args.models:
        lines = queries(name, args.batch)
        adders = {engine: Adder(name, engine=engine) for engine in ENGINES}
        for engine in ENGINES:  # both give the same answers to what is measured
            assert adders[engine].batch(lines[:2000]) == adders[ENGINES[0]].batch(lines[:2000])
        figures: dict[str, list[tuple[float, float, float]]] = {engine: [] for engine in ENGINES}
        for _ in range(args.rounds):
            for engine, adder in adders.items():
                figures[engine].append(
                    (
                        single_us(adder, lines[0], args.seconds),
                        batch_rate(adder, lines),
                        cold_start_s(name, engine, lines[0]),
                    )
                )
        for engine in ENGINES:
            single, rate, cold = (statistics.median(column) for column in zip(*figures[engine]))
            print(f"| `{name}` | {engine} | {single:,.0f} us | {rate:,.0f} q/s | {cold * 1000:,.0f} ms |")


if __name__ == "__main__":
    main()
