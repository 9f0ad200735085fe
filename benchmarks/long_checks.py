"""`long` checked the ordinary way, through `adder --model long -`, beside its proof.

    python benchmarks/long_checks.py                   # every suite below, seed 7
    python benchmarks/long_checks.py --uniform 100000  # fewer of wide's uniform pairs

Suites, each fed as lines to one `adder --model long -` process and compared with Python's
own sums: AdderBoard's 10,010 ten-digit pairs; the suites `wide` is judged by
(adder.eval.suites: uniform pairs, carry chains, repdigits, operands with at most two nonzero
digits); and at 20, 100, 500 and 1,000 digits, random pairs of that many digits, random pairs
of random digit counts up to it, and adversarial pairs (all nines and one; nines and nines;
a + (10^N - a), a single carry the whole way; a + (10^N - 1 - a), nine-sums with no carry;
runs of nine-sums from a random start; nine-dense digits). Prints one row per suite and
exits 1 if any answer is wrong. Needs only the runtime.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

from adder.config import ModelConfig
from adder.eval.suites import UNIFORM_SEED, UNIFORM_SIZE, adderboard_pairs, suite_blocks

LENGTHS = (20, 100, 500, 1000)


def digits_number(digits: np.ndarray) -> int:
    return int("".join(map(str, digits.tolist())).lstrip("0") or "0")


def long_pairs(rng: np.random.Generator, width: int, count: int) -> dict[str, list[tuple[int, int]]]:
    nines = 10**width - 1
    full = [rng.integers(0, 10, width) for _ in range(count)]
    full = [np.concatenate(([rng.integers(1, 10)], d[1:])) for d in full]
    a = [digits_number(d) for d in full[: count // 2]]
    b = [digits_number(d) for d in full[count // 2 :]]
    counts = rng.integers(1, width + 1, (count, 2))
    families = {
        f"{width} digits: random": list(zip(a, b)),
        f"{width} digits: random digit counts": [
            (int(rng.integers(1, 10)) * 10 ** int(x - 1) + int(rng.integers(0, 10)), 10 ** int(y) - 1)
            if i % 2 else (digits_number(rng.integers(0, 10, int(x))), digits_number(rng.integers(0, 10, int(y))))
            for i, (x, y) in enumerate(counts)
        ],
    }  # fmt: skip
    chains = []
    for x in a:
        chains += [(x, 10**width - x), (x, nines - x)]
        start, run = sorted(rng.integers(0, width, 2).tolist())
        low = digits_number(rng.integers(0, 10, width))
        high = 10 ** (run + 1) - 10**start  # nines from digit start to run
        chains.append((low % 10**start + high, 10**start - low % 10**start if low % 10**start else 0))
        dense = np.where(rng.random(width) < 0.5, 9, rng.integers(0, 10, width))
        chains.append((digits_number(dense), digits_number(np.where(rng.random(width) < 0.5, 9, dense[::-1]))))
    chains += [(nines, 1), (nines, nines), (nines, 0), (1, nines), (10 ** (width - 1), 10 ** (width - 1))]
    families[f"{width} digits: adversarial"] = chains
    return families


def suites(uniform: int, seed: int, count: int) -> dict[str, list[tuple[int, int]]]:
    found = {"AdderBoard (10,010 ten-digit pairs)": [tuple(map(int, p)) for p in adderboard_pairs().tolist()]}
    wide = ModelConfig(max_operand=9_999_999_999)
    for name, (_size, blocks) in suite_blocks(wide, uniform, UNIFORM_SEED).items():
        if name.startswith("AdderBoard"):
            continue
        found[f"wide's suite: {name}"] = [tuple(pair) for _, block in blocks for pair in block.tolist()]
    rng = np.random.default_rng(seed)
    for width in LENGTHS:
        found.update(long_pairs(rng, width, count))
    return found


def through_adder(pairs: list[tuple[int, int]]) -> tuple[int, list[str], float]:
    """(wrong, first wrong, seconds) of the pairs fed as lines to `adder --model long -`."""
    text = "".join(f"{a}+{b}\n" for a, b in pairs)
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "adder", "--model", "long", "-"], input=text, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    answers = run.stdout.split("\n")[:-1]
    if run.returncode != 0 or len(answers) != len(pairs):
        return len(pairs), [run.stderr.strip()[:200]], seconds
    wrong = [f"{a}+{b}" for (a, b), got in zip(pairs, answers) if got != str(a + b)]
    return len(wrong), wrong[:3], seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uniform", type=int, default=UNIFORM_SIZE, help="wide's uniform pairs to include")
    parser.add_argument("--seed", type=int, default=7, help="numpy seed of the long pairs")
    parser.add_argument("--count", type=int, default=2000, help="random pairs per length (adversarial: 2x this)")
    options = parser.parse_args()
    failed = 0
    print(f"{'suite':<70} {'pairs':>12} {'wrong':>6} {'seconds':>8}")
    for name, pairs in suites(options.uniform, options.seed, options.count).items():
        wrong, first, seconds = through_adder(pairs)
        failed += wrong
        print(
            f"{name:<70} {len(pairs):>12,} {wrong:>6,} {seconds:>8.1f}" + (f"  e.g. {first[0][:60]}" if first else "")
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
