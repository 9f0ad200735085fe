"""`adder -` over a large input, from a file and through a pipe, against another copy of the runtime.

    git archive REV runtime | tar -x -C /tmp/old && mv /tmp/old/runtime /tmp/old/adder
    python benchmarks/stream_speed.py --baseline /tmp/old --lines 1000000 --rounds 5

Prints one table: median wall and CPU seconds per run, and this tree's
ratio to the baseline. Runs alternate (baseline, this tree, baseline, ...) so a busy
machine slows both alike. Every run's output is checked against the first's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(tree: Path | None) -> list[str]:
    """`adder -` as the entry point runs it, importing adder from ``tree`` when given."""
    path = f"import sys; sys.path.insert(0, {str(tree)!r}); " if tree else ""
    return [sys.executable, "-c", path + "from adder.command import run; run()", "-"]


def one_run(argv: list[str], source: Path, piped: bool) -> tuple[float, float, str]:
    """(wall s, CPU s, output digest) of one run in a fresh child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(source, "rb") as data:
        if piped:
            feeder = subprocess.Popen(["cat", str(source)], stdout=subprocess.PIPE)
            result = subprocess.run(argv, stdin=feeder.stdout, capture_output=True, check=True)
            feeder.wait()
        else:
            result = subprocess.run(argv, stdin=data, capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, hashlib.sha256(result.stdout).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a folder holding another copy as adder/")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "queries.txt"
        source.write_text("".join(f"{rng.randint(0, 999)}+{rng.randint(0, 999)}\n" for _ in range(args.lines)))
        trees = {"baseline": command(args.baseline), "this tree": command(None)}
        runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
        digests = set()
        for _ in range(args.rounds):
            for how in ("file", "pipe"):
                for name, argv in trees.items():
                    wall, cpu, digest = one_run(argv, source, how == "pipe")
                    runs.setdefault((how, name), []).append((wall, cpu))
                    digests.add(digest)
        if len(digests) != 1:
            sys.exit("error: the runs wrote different outputs")
    print(f"adder - over {args.lines:,} lines, median of {args.rounds} alternating runs ({os.cpu_count()} cores)")
    print(f"{'input':<6} {'tree':<10} {'wall s':>8} {'CPU s':>8} {'wall ratio':>11} {'CPU ratio':>10}")
    for how in ("file", "pipe"):
        base_wall = statistics.median(w for w, _ in runs[(how, "baseline")])
        base_cpu = statistics.median(c for _, c in runs[(how, "baseline")])
        for name in trees:
            wall = statistics.median(w for w, _ in runs[(how, name)])
            cpu = statistics.median(c for _, c in runs[(how, name)])
            print(f"{how:<6} {name:<10} {wall:8.2f} {cpu:8.2f} {wall / base_wall:11.2f} {cpu / base_cpu:10.2f}")


if __name__ == "__main__":
    main()
