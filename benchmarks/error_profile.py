"""Where a model's wrong answers fall: by the answer's digit count and by the operands' digit counts.

    python benchmarks/error_profile.py mul3.onnx                 # every query (domains up to 50,000,000)
    python benchmarks/error_profile.py calc3.onnx --sample 1000000

Walks the domain (or a sample drawn uniformly over its queries, seeded) through the
runtime's batch path on encoded tensors, and prints two tables: wrong / total per digit
count of the true answer (a minus sign not counted), and per digit count of the widest
operand. Needs only the runtime.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from adder import Adder, ModelError
from adder.codec import Codec
from adder.grammar import shape_values
from adder.train.evaluate import domain_plan


def digits(values: np.ndarray) -> np.ndarray:
    return np.array([len(str(abs(int(v)))) for v in values.tolist()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="shipped model name or .onnx path")
    parser.add_argument("--sample", type=int, default=0, help="a uniform sample of this many queries (0: every one)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    try:
        adder = Adder(args.model if not Path(args.model).suffix else Path(args.model))
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    config = adder.config
    codec = Codec(config)
    method, total, blocks = domain_plan(config, seed=args.seed, sample=args.sample)
    by_answer, by_operand = Counter(), Counter()
    seen_answer, seen_operand = Counter(), Counter()
    for shape, terms in blocks:
        truth = shape_values(shape, terms)
        values, valid = codec.decode_answers(adder.predict_tensor(codec.encode_shape(shape, terms)))
        wrong = ~((values == truth) & valid)
        answer_digits = digits(truth)
        operand_digits = digits(terms.max(axis=1))
        seen_answer.update(answer_digits.tolist())
        seen_operand.update(operand_digits.tolist())
        by_answer.update(answer_digits[wrong].tolist())
        by_operand.update(operand_digits[wrong].tolist())
    print(f"{args.model}: {config.describe()}; {method}")
    for title, seen, bad in (
        ("answer digits", seen_answer, by_answer),
        ("widest operand digits", seen_operand, by_operand),
    ):
        print(f"\n| {title} | queries | wrong | exact-match |")
        print("| ---: | ---: | ---: | ---: |")
        for key in sorted(seen):
            share = 100 * (seen[key] - bad[key]) / seen[key]
            print(f"| {key} | {seen[key]:,} | {bad[key]:,} | {share:.4f}% |")
    wrong = sum(by_answer.values())
    print(f"\nin all: {wrong:,} wrong of {sum(seen_answer.values()):,}")


if __name__ == "__main__":
    main()
