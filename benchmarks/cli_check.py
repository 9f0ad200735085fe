"""Every query of a model's domain, typed into the `adder` command as a user would, answers checked.

    python benchmarks/cli_check.py arith          # adder --model arith -, all 24,040,000 queries

The queries are written to `adder --model MODEL -` through a pipe, one per line, in
the order adder-eval walks the domain (term count, operators, bracket layout, then
terms); every output line is compared with the true value. This is the end-to-end
check behind "exact on its whole domain": the command's own reading, parsing, batching
and printing included, not only the model. Needs only the runtime (and the `adder`
command on PATH), so it runs from a plain `pip install .`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

from adder import Adder
from adder.grammar import shape_text, shape_values
from adder.eval import suites  # numpy only, like the rest: installed with the runtime, no extra needed
from adder.eval.domain import domain_blocks
from adder.eval.evaluate import EXHAUSTIVE_LIMIT


def blocks(config, seed=suites.UNIFORM_SEED):
    """(query lines, true values) blocks covering every query of the domain once, in adder-eval's order;
    for a two-term sum too large to enumerate, every case of the fixed verification suites."""
    walk = domain_blocks(config)
    if config.domain_size > EXHAUSTIVE_LIMIT and suites.applies(config):
        walk = (block for _, (_, each) in suites.suite_blocks(config, seed=seed).items() for block in each)
    for shape, terms in walk:
        template = shape_text(shape)
        yield "".join(template.format(*row) + "\n" for row in terms.tolist()), shape_values(shape, terms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="default", help="shipped model name or .onnx path")
    parser.add_argument("--limit", type=int, default=0, help="stop after about this many (whole blocks; 0: all)")
    parser.add_argument(
        "--uniform-seed",
        type=int,
        default=suites.UNIFORM_SEED,
        help="with the verification suites: numpy seed of the uniform suite (training checks and replays 2026's)",
    )
    args = parser.parse_args()

    config = Adder(args.model).config
    expected = config.domain_size
    if config.domain_size > EXHAUSTIVE_LIMIT and suites.applies(config):
        expected = sum(size for size, _ in suites.suite_blocks(config).values())
    command = [shutil.which("adder") or "adder", "--model", args.model, "-"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1 << 20)
    truths: list[np.ndarray] = []
    ready = threading.Condition()

    def feed() -> None:
        sent = 0
        for lines, values in blocks(config, args.uniform_seed):
            with ready:
                truths.append((lines, values))
                ready.notify()
            process.stdin.write(lines)
            sent += len(values)
            if args.limit and sent >= args.limit:
                break
        process.stdin.close()

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    total = wrong = 0
    shown: list[str] = []
    started = time.perf_counter()
    block = 0
    while True:
        with ready:
            while block >= len(truths) and writer.is_alive():
                ready.wait(0.1)
            if block >= len(truths):
                break
            (lines, values), truths[block] = truths[block], None  # checked blocks are not kept
        answers = [process.stdout.readline() for _ in range(len(values))]
        unanswered = np.iinfo(np.int64).min  # below every answer of every domain, so never counted right
        got = np.array([int(a) if a.strip().lstrip("-").isdigit() else unanswered for a in answers], dtype=np.int64)
        bad = np.flatnonzero(got != values)
        wrong += len(bad)
        total += len(values)
        if len(shown) < 10 and len(bad):
            queries = lines.splitlines()
            shown += [f"{queries[i]} = {values[i]}, adder says {answers[i].strip()!r}" for i in bad[:10]]
        del shown[10:]
        block += 1
        rate = total / (time.perf_counter() - started)
        status = f"{total:,} of {expected:,} checked, {wrong:,} wrong, {rate:,.0f} q/s"
        print(f"\r{status}", end="", file=sys.stderr)
    leftover = process.stdout.read()
    code = process.wait()
    print(file=sys.stderr)
    seconds = time.perf_counter() - started
    print(f"adder --model {args.model} -: {wrong:,} wrong of {total:,} queries ({seconds:.0f} s), exit {code}")
    for line in shown:
        print(f"  {line}")
    if leftover.strip():
        print(f"  unexpected extra output: {leftover[:200]!r}")
    sys.exit(1 if wrong or code or leftover.strip() else 0)


if __name__ == "__main__":
    main()
