"""A ten-digit adder on families of pairs that uniform draws almost never hold, through the runtime.

    python benchmarks/adversarial_families.py wide                # 200,000 pairs a family, seed 99
    python benchmarks/adversarial_families.py wide.onnx --pairs 1000000 --seed 5

The fixed suites (adder.eval.suites) hold carry chains: a digit pair that carries, and
pairs summing to 9 above it. Their other half is a run of digit pairs summing to 9 with
nothing carrying into it: every answer digit in and above the run hangs on the absence
of a carry far below. Of uniform pairs about one in 20,000 holds such a run of five
digits or more, so a model can be exact on millions of them and wrong on these by the
thousand. Each family is drawn with numpy under ``--seed``:

- all nines: ``a + (9999999999 - a)``, every digit pair sums to 9 and none carries;
- one chain: ``a + (10^10 - a)``, a single carry through every digit above a's lowest nonzero one;
- runs of 9-sums: a run of 2-10 digit pairs summing to 9 from a random digit, random digits elsewhere;
- digit counts: operands of uniformly drawn digit counts, 1 to 10 each;
- nine-dense: every digit of both operands 9 with probability 1/2, else uniform, so digit
  pairs summing to 18 and to 9 sit side by side (adder.train.data.nine_dense_pairs draws
  the same way);
- carry-dense: the share of digits that carry drawn uniformly per pair
  (adder.train.data.dense_carry_pairs), and uniform pairs, for scale. Drawn last, so the
  families above are the same pairs under a seed as before these two were added.

Prints one row per family (wrong / pairs, and the first few wrong) and exits 1 if any is wrong.
``--unsure`` adds a column of answers, right or wrong, whose weakest digit wins over its
runner-up by less than 0.95 in probability (adder.train.mining.margins, the margin mining
uses): where two near-exact models are both right on every pair drawn, these tell them
apart. Needs only the runtime.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from adder import Adder
from adder.codec import Codec
from adder.eval import suites
from adder.eval.draws import dense_carry_pairs
from adder.train.mining import margins

TOP = 9_999_999_999
UNSURE = 0.95


def families(config, count: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    drawn = {}
    a = rng.integers(0, TOP + 1, count)
    drawn["all nines: a + (9999999999 - a)"] = (a, TOP - a)
    a = rng.integers(1, TOP + 1, count)
    drawn["one chain: a + (10^10 - a)"] = (a, 10**10 - a)
    digits = rng.integers(0, 10, (count, 2, 10))
    length = rng.integers(2, 11, count)
    start = rng.integers(0, 10, count)
    position = np.arange(10)[None, :]
    run = (position >= start[:, None]) & (position < (start + length)[:, None])
    digits[:, 1] = np.where(run, 9 - digits[:, 0], digits[:, 1])
    scale = 10 ** np.arange(10, dtype=np.int64)
    drawn["runs of 9-sums, random digits elsewhere"] = (digits[:, 0] @ scale, digits[:, 1] @ scale)
    widths = rng.integers(1, 11, (2, count))
    low, high = 10 ** (widths - 1), 10**widths
    low[widths == 1] = 0
    operands = low + (rng.random((2, count)) * (high - low)).astype(np.int64)
    drawn["digit counts: 1-10 digits each"] = (operands[0], operands[1])
    digits = np.where(rng.random((count, 2, 10)) < 0.5, 9, rng.integers(0, 10, (count, 2, 10)))
    drawn["nine-dense: each digit 9 with probability 1/2"] = (digits[:, 0] @ scale, digits[:, 1] @ scale)
    pairs = dense_carry_pairs(config, count, rng)
    drawn["carry-dense: share of carrying digits uniform"] = (pairs[:, 0], pairs[:, 1])
    pairs = rng.integers(0, TOP + 1, (count, 2))
    drawn["uniform"] = (pairs[:, 0], pairs[:, 1])
    return drawn


def unsure(adder: Adder, a: np.ndarray, b: np.ndarray) -> int:
    probabilities = adder.predict_tensor(Codec(adder.config).encode_shape(suites.SUM, np.stack([a, b], axis=1)))
    return int((margins(probabilities) < UNSURE).sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a shipped model's name (wide) or an .onnx file of two ten-digit terms")
    parser.add_argument("--pairs", type=int, default=200_000, help="pairs drawn per family")
    parser.add_argument("--seed", type=int, default=99, help="numpy seed of the draws")
    parser.add_argument("--unsure", action="store_true", help=f"also count answers with a margin below {UNSURE}")
    args = parser.parse_args()
    adder = Adder(args.model)
    if adder.config.max_operand != TOP or adder.config.operators != "+":
        parser.error(f"{args.model} is not a ten-digit adder: {adder.config.describe()}")
    rng = np.random.default_rng(args.seed)
    print(f"{args.model}: {args.pairs:,} pairs a family, numpy seed {args.seed}\n")
    extra = (f" unsure (< {UNSURE}) |", " ---: |") if args.unsure else ("", "")
    print(f"| family | wrong |{extra[0]} pairs | seconds | first wrong (query = sum, model says) |")
    print(f"| --- | ---: |{extra[1]} ---: | ---: | --- |")
    failed = False
    for name, (a, b) in families(adder.config, args.pairs, rng).items():
        queries = [f"{x}+{y}" for x, y in zip(a.tolist(), b.tolist())]
        started = time.perf_counter()
        # results, not batch: a model that writes no valid number for a pair is wrong there, not a crash
        answers = ["no number" if isinstance(r, Exception) else r for r in adder.results(queries)]
        seconds = time.perf_counter() - started
        truth = (a + b).tolist()
        wrong = [(q, t, g) for q, t, g in zip(queries, truth, answers) if g != t]
        shown = ", ".join(f"`{q}` = {t}, says {g}" for q, t, g in wrong[:2])
        doubtful = f" {unsure(adder, a, b):,} |" if args.unsure else ""
        print(f"| {name} | {len(wrong):,} |{doubtful} {len(queries):,} | {seconds:.0f} | {shown} |", flush=True)
        failed |= bool(wrong)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
