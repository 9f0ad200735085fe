"""Where a model's wrong answers fall: by the answer's digit count, the operands' digit counts
and, for sums of two terms, the number of digits that carry.

    python benchmarks/error_profile.py mul3.onnx                 # every query (domains up to 50,000,000)
    python benchmarks/error_profile.py calc3.onnx --sample 1000000
    python benchmarks/error_profile.py wide --sample 3000000 --min-carries 8

Walks the domain (or a sample drawn uniformly over its queries, seeded) through the
runtime's batch path on encoded tensors, and prints tables of wrong / total per digit
count of the true answer (a minus sign not counted), per digit count of the widest
operand, and for a sum of two terms per count of digit positions that carry out.
``--min-carries K`` keeps only uniform pairs that carry at K or more positions: a
ten-digit model wrong on one uniform pair in millions needs its errors looked for
where they gather. The last line counts unsure answers, right or wrong, whose weakest
digit wins over its runner-up by less than 0.5, 0.8 and 0.95 in probability
(``adder.train.mining.margins``): far more common than wrong ones, so a sample of a
million tells two near-exact models apart where their error counts (0 or 1) cannot.
Needs only the runtime.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from adder import Adder, ModelError
from adder.codec import Codec
from adder.figures import percent
from adder.grammar import shape_values
from adder.eval import suites
from adder.eval.evaluate import domain_plan
from adder.train.mining import margins

MARGINS = (0.5, 0.8, 0.95)


def digits(values: np.ndarray) -> np.ndarray:
    return np.array([len(str(abs(int(v)))) for v in values.tolist()])


def carries(terms: np.ndarray) -> np.ndarray:
    """How many digit positions of a + b carry out (rows of two non-negative terms)."""
    a, b = terms[:, 0].copy(), terms[:, 1].copy()
    carry, count = np.zeros(len(terms), dtype=np.int64), np.zeros(len(terms), dtype=np.int64)
    while (a | b | carry).any():
        carry = (a % 10 + b % 10 + carry) // 10
        count += carry
        a, b = a // 10, b // 10
    return count


def carrying_blocks(config, size: int, least: int, seed: int, chunk: int = 100_000):
    """``size`` pairs drawn uniformly over the domain's, keeping those that carry at ``least``
    or more positions (rejection: about 7% of ten-digit pairs carry at 8 or more)."""
    rng = np.random.default_rng(seed)
    kept = 0
    while kept < size:
        drawn = rng.integers(config.min_operand, config.max_operand + 1, size=(1_000_000, 2))
        drawn = drawn[carries(drawn) >= least][: size - kept]
        kept += len(drawn)
        for start in range(0, len(drawn), chunk):
            yield suites.SUM, drawn[start : start + chunk]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="shipped model name or .onnx path")
    parser.add_argument("--sample", type=int, default=0, help="a uniform sample of this many queries (0: every one)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--min-carries", type=int, default=0, help="two-term sums: only pairs carrying at this many digits or more"
    )
    args = parser.parse_args()
    try:
        adder = Adder(args.model if not Path(args.model).suffix else Path(args.model))
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    config = adder.config
    codec = Codec(config)
    is_sum = suites.applies(config)
    if args.min_carries:
        if not is_sum or args.sample <= 0:
            raise SystemExit("error: --min-carries needs a sum of two terms and a --sample size")
        size = args.sample
        method = f"sample of {size:,} pairs that carry at {args.min_carries} or more digits (seed {args.seed})"
        blocks = carrying_blocks(config, size, args.min_carries, args.seed)
    else:
        method, size, blocks = domain_plan(config, seed=args.seed, sample=args.sample)
    by_answer, by_operand, by_carries = Counter(), Counter(), Counter()
    seen_answer, seen_operand, seen_carries = Counter(), Counter(), Counter()
    first_wrong = []
    unsure = Counter()
    for shape, terms in blocks:
        truth = shape_values(shape, terms)
        probabilities = adder.predict_tensor(codec.encode_shape(shape, terms))
        values, valid = codec.decode_answers(probabilities)
        margin = margins(probabilities)
        unsure.update({below: int((margin < below).sum()) for below in MARGINS})
        wrong = ~((values == truth) & valid)
        answer_digits = digits(truth)
        operand_digits = digits(terms.max(axis=1))
        seen_answer.update(answer_digits.tolist())
        seen_operand.update(operand_digits.tolist())
        by_answer.update(answer_digits[wrong].tolist())
        by_operand.update(operand_digits[wrong].tolist())
        if is_sum:
            carried = carries(terms)
            seen_carries.update(carried.tolist())
            by_carries.update(carried[wrong].tolist())
        first_wrong += ["+".join(map(str, row)) for row in terms[wrong][: 10 - len(first_wrong)].tolist()]
    print(f"{args.model}: {config.describe()}; {method}")
    tables = [("answer digits", seen_answer, by_answer), ("widest operand digits", seen_operand, by_operand)]
    if is_sum:
        tables.append(("digits that carry", seen_carries, by_carries))
    for title, seen, bad in tables:
        print(f"\n| {title} | queries | wrong | exact-match |")
        print("| ---: | ---: | ---: | ---: |")
        for key in sorted(seen):
            share = percent((seen[key] - bad[key]) / seen[key])
            print(f"| {key} | {seen[key]:,} | {bad[key]:,} | {share} |")
    wrong = sum(by_answer.values())
    print(f"\nin all: {wrong:,} wrong of {sum(seen_answer.values()):,}")
    if first_wrong:
        print("first wrong: " + ", ".join(first_wrong))
    counts = " / ".join(f"{unsure[below]:,}" for below in MARGINS)
    print(f"unsure (weakest digit's margin below {' / '.join(map(str, MARGINS))}): {counts}")


if __name__ == "__main__":
    main()
