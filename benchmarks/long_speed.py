"""`long` and `wide` on the same queries, timed in interleaved rounds (by hand, not a test).

    python benchmarks/long_speed.py               # 3 rounds, 20,000 queries a batch
    python benchmarks/long_speed.py --rounds 5 --batch 100000

Single queries through ``Adder(name)(query)`` and one ``Adder.batch`` call over query strings:
ten-digit pairs (seed 3) for both models, and 100- and 1,000-digit pairs for `long` alone.
Prints medians; a busy machine slows every row alike, so compare rows of one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from adder import Adder


def operands(rng: np.random.Generator, digits: int, count: int) -> list[int]:
    return [int("".join(map(str, rng.integers(0, 10, digits))).lstrip("0") or "0") for _ in range(count)]


def single_us(adder: Adder, queries: list[str]) -> float:
    started = time.perf_counter()
    for query in queries:
        adder(query)
    return 1e6 * (time.perf_counter() - started) / len(queries)


def batch_rate(adder: Adder, queries: list[str]) -> float:
    started = time.perf_counter()
    adder.batch(queries)
    return len(queries) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--singles", type=int, default=500)
    options = parser.parse_args()
    rng = np.random.default_rng(3)
    rows = {}
    for digits in (10, 100, 1000):
        count = options.batch if digits < 1000 else options.batch // 10
        a, b = operands(rng, digits, count), operands(rng, digits, count)
        rows[digits] = [f"{x}+{y}" for x, y in zip(a, b)]
    cases = [("wide", 10), ("long", 10), ("long", 100), ("long", 1000)]
    adders = {name: Adder(name) for name in ("wide", "long")}
    for name, digits in cases:  # warm: the batch graph opens on first use
        adders[name].batch(rows[digits][:64])
    single = {case: [] for case in cases}
    batch = {case: [] for case in cases}
    for _ in range(options.rounds):
        for case in cases:
            name, digits = case
            single[case].append(single_us(adders[name], rows[digits][: options.singles]))
            batch[case].append(batch_rate(adders[name], rows[digits]))
    print(f"{'model':<6} {'digits':>6} {'single query':>14} {'batch rate':>14}")
    for case in cases:
        print(
            f"{case[0]:<6} {case[1]:>6} {statistics.median(single[case]):>11.0f} us "
            f"{statistics.median(batch[case]):>10,.0f} q/s"
        )


if __name__ == "__main__":
    main()
