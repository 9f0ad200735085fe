"""What the runtime costs on top of its own engine, for every shipped model, in one run.

    python benchmarks/engine_ratios.py            # or as part of benchmarks/peers.py

"Engine alone" is onnxruntime on the graph `Adder` runs, opened with the options `Adder`
opens it with, in this process, fed tensors already encoded: the one-query graph for a
single query; for batches a one-thread session run by a pool of one worker per core on
the chunks `Adder` cuts (1,024 rows, and a 1,024-query call split in one chunk per core).
`Adder` is fed query strings and returns ints. Rounds are interleaved, each pair of
measurements back to back in alternating order (single queries in 20 alternating slices
a round), so a busy machine slows both sides alike; every figure is the median over
rounds, by wall clock and by CPU time. Printed as one table, leading with the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from adder import Adder, QueryError
from adder.session import CHUNK_SIZE, SPLIT_ROWS, _open_session, shipped_models

STRINGS = 200_000  # queries for the batch rows
CALL = 1_024  # queries per call for the per-call rows
STREAM_LINES = 1_000_000  # most lines piped through `adder -`; fewer for slow models (STREAM_SECONDS)
STREAM_SECONDS = 3.0  # CPU seconds of batch work per stream run: the default model reaches STREAM_LINES
SINGLE_QUERY = "50+11"


def random_queries(adder: Adder, count: int, seed: int) -> list[str]:
    """Valid bracket-free queries over the model's whole domain, as a program would write them."""
    config, rng = adder.config, random.Random(seed)
    queries = []
    for _ in range(count):
        terms = [
            rng.randint(config.min_operand, config.max_operand)
            for _ in range(rng.randint(config.min_terms, config.max_terms))
        ]
        text = str(terms[0]) + "".join(rng.choice(config.operators) + str(t) for t in terms[1:])
        queries.append(text)
    return queries


class EngineAlone:
    """onnxruntime on the graphs an Adder runs, with its options, fed encoded tensors."""

    def __init__(self, adder: Adder) -> None:
        adder.batch(["1+1"] * CHUNK_SIZE)  # opens the batch session, so batch_path names its graph
        self.threads = adder._threads
        self.single = _open_session(adder.single_path.read_bytes(), adder.single_path, 1, single=True)
        self.many = _open_session(adder.batch_path.read_bytes(), adder.batch_path, 1)
        self.name = self.single.get_inputs()[0].name
        self.batch_name = self.many.get_inputs()[0].name
        self.symbols = self.many.get_inputs()[0].type == "tensor(int64)"  # the batch graph from symbols
        self.codec = adder.codec
        self.pool = ThreadPoolExecutor(self.threads)

    def batch_input(self, strings: list[str]) -> np.ndarray:
        """What the batch graph takes for these queries: symbol indices, or the model's encoding."""
        if self.symbols:
            return self.codec.encode_batch(strings)[0].astype(np.int64)
        return self.codec.encode_queries(strings)

    def one(self, x1: np.ndarray):
        return lambda: self.single.run(None, {self.name: x1})

    def one_bound(self, x1: np.ndarray):
        """The same run through io_binding with both ends bound: the lowest-cost Python call."""
        binding = self.single.io_binding()
        self._value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x1))
        binding.bind_ortvalue_input(self.name, self._value)
        binding.bind_output(self.single.get_outputs()[0].name, "cpu")
        return lambda: self.single.run_with_iobinding(binding)

    def chunks(self, x: np.ndarray) -> list[np.ndarray]:
        """The chunks Adder cuts a known-length input into (session._chunk_results)."""
        size = CHUNK_SIZE
        share = -(-len(x) // self.threads)
        if self.threads > 1 and share >= SPLIT_ROWS:
            size = min(size, share)
        return [x[start : start + size] for start in range(0, len(x), size)]

    def run_chunks(self, chunks: list[np.ndarray]) -> None:
        run = lambda part: self.many.run(None, {self.batch_name: part})  # noqa: E731
        for _ in self.pool.map(run, chunks):
            pass


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, every thread) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def per_call(fn, seconds: float) -> tuple[float, float]:
    """(wall, CPU) seconds per call: as many calls as fit in about ``seconds`` (at least 3)."""
    fn()
    calls, wall, cpu = 0, time.perf_counter(), time.process_time()
    while calls < 3 or time.perf_counter() - wall < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def paired_per_call(ours, theirs, seconds: float, slices: int = 20) -> tuple[tuple, tuple]:
    """``per_call`` of two functions in alternating slices (``slices`` of each, ``seconds`` in
    all), medians over the slices: a burst of load on the machine hits both sides alike."""
    samples: tuple[list, list] = ([], [])
    for k in range(slices):
        pair = [(0, ours), (1, theirs)]
        for side, fn in reversed(pair) if k % 2 else pair:
            samples[side].append(per_call(fn, seconds / (2 * slices)))
    return tuple(  # type: ignore[return-value]
        (statistics.median(w for w, _ in side), statistics.median(c for _, c in side)) for side in samples
    )


def adder_command() -> list[str]:
    found = shutil.which("adder")
    return [found] if found else [sys.executable, "-m", "adder"]


def stream_run(model: str, source: Path) -> tuple[float, float, int, str]:
    """One `adder -` fed through a pipe by `cat`, its output read through a pipe: (wall seconds,
    its CPU seconds, its peak RSS in bytes polled from /proc, sha256 of what it printed).
    Peak RSS is polled, not ru_maxrss: that carries this process's high-water mark into the child."""
    wall = time.perf_counter()
    feeder = subprocess.Popen(["cat", str(source)], stdout=subprocess.PIPE)
    env = dict(os.environ, ADDER_MODEL=model)
    child = subprocess.Popen([*adder_command(), "-"], stdin=feeder.stdout, stdout=subprocess.PIPE, env=env)
    feeder.stdout.close()
    peak, running = [0], [True]

    def poll() -> None:
        status = Path(f"/proc/{child.pid}/status")
        while running[0]:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except OSError:
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    digest = hashlib.sha256()
    for block in iter(lambda: child.stdout.read(1 << 20), b""):
        digest.update(block)
    running[0] = False
    watcher.join()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    feeder.wait()
    seconds = time.perf_counter() - wall
    if child.returncode != 0:
        raise RuntimeError(f"adder - exited {child.returncode} on the {model} model")
    return seconds, usage.ru_utime + usage.ru_stime, peak[0], digest.hexdigest()


def answers_digest(answers: list[int]) -> str:
    return hashlib.sha256(("\n".join(map(str, answers)) + "\n").encode()).hexdigest()


class ModelBench:
    """Every pair of measurements for one shipped model, one round at a time."""

    def __init__(self, model: str, strings: int, stream_seconds: float, folder: Path, seconds: float) -> None:
        self.model, self.seconds = model, seconds
        self.adder = Adder(model)
        self.engine = EngineAlone(self.adder)
        self.strings = random_queries(self.adder, strings, seed=1)
        self.x = self.engine.batch_input(self.strings)
        self.calls = [self.strings[i : i + CALL] for i in range(0, strings, CALL)]
        self.call_chunks = [self.engine.chunks(self.x[i : i + CALL]) for i in range(0, strings, CALL)]
        self.all_chunks = self.engine.chunks(self.x)
        query = SINGLE_QUERY
        try:
            self.adder(query)
        except QueryError:
            query = self.strings[0]
        self.query, self.x1 = query, self.adder.codec.encode_queries([query])
        self.times: dict[str, list[tuple[float, float]]] = {}
        # Enough lines for about stream_seconds of batch work, at most STREAM_LINES.
        rate = CHUNK_SIZE * 4 / timed(lambda: self.adder.batch(self.strings[: CHUNK_SIZE * 4]))[1]
        self.lines = int(min(STREAM_LINES, max(50_000, rate * stream_seconds)))
        self.stream_queries = random_queries(self.adder, self.lines, seed=2)
        self.source = folder / f"{model}.txt"
        self.source.write_text("\n".join(self.stream_queries) + "\n")
        self.small = folder / f"{model}.small.txt"
        self.small.write_text("\n".join(self.stream_queries[: self.lines // 10]) + "\n")
        self.expected = answers_digest(self.adder.batch(self.stream_queries))

    def note(self, key: str, value: tuple[float, float]) -> None:
        self.times.setdefault(key, []).append(value)

    def round(self, flip: bool) -> None:
        adder, engine = self.adder, self.engine
        single = paired_per_call(lambda: adder(self.query), engine.one(self.x1), self.seconds)
        self.note("single adder", single[0])
        self.note("single engine", single[1])
        pairs = {
            "batch": (
                lambda: timed(lambda: adder.batch(self.strings)),
                lambda: timed(lambda: engine.run_chunks(self.all_chunks)),
            ),
            "calls": (
                lambda: timed(lambda: [adder.batch(call) for call in self.calls]),
                lambda: timed(lambda: [engine.run_chunks(chunks) for chunks in self.call_chunks]),
            ),
        }
        for key, (ours, theirs) in pairs.items():
            order = [("adder", ours), ("engine", theirs)]
            for side, fn in reversed(order) if flip else order:
                self.note(f"{key} {side}", fn())
        self.note("single engine, io_binding", per_call(engine.one_bound(self.x1), self.seconds))
        order = ["stream", "stream batch"]
        for side in reversed(order) if flip else order:
            if side == "stream":
                wall, cpu, peak, digest = stream_run(self.model, self.source)
                if digest != self.expected:
                    raise RuntimeError(f"adder - answered the {self.model} lines differently from Adder.batch")
                self.note("stream adder", (wall, cpu))
                self.note("stream peak", (peak, peak))
            else:
                self.note("stream engine", timed(lambda: adder.batch(self.stream_queries)))
        peak = stream_run(self.model, self.small)[2]
        self.note("stream small peak", (peak, peak))

    def median(self, key: str, cpu: bool = False) -> float:
        return statistics.median(value[cpu] for value in self.times[key])

    def row(self, key: str, measure: str, count: int, target: str) -> dict:
        """A throughput row: adder's and the other side's q/s, by wall clock and by CPU time."""
        m = self.median
        ratio = m(f"{key} engine") / m(f"{key} adder")
        cpu_ratio = m(f"{key} engine", True) / m(f"{key} adder", True)
        bound = float(target.split()[-1])
        return {
            "model": self.model,
            "measure": measure,
            "ours": count / m(f"{key} adder"),
            "theirs": count / m(f"{key} engine"),
            "ratio": ratio,
            "cpu_ratio": cpu_ratio,
            "target": target,
            "met": ratio >= bound,
        }

    def rows(self) -> list[dict]:
        m, n, lines = self.median, len(self.strings), self.lines
        extra, extra_cpu = (
            (m("single adder") - m("single engine")) * 1e6,
            (m("single adder", True) - m("single engine", True)) * 1e6,
        )
        flat = m("stream peak") / m("stream small peak")
        return [
            self.row("batch", f"Adder.batch, {n:,} strings in one call / engine (q/s)", n, ">= 0.85"),
            self.row("calls", f"Adder.batch, {n:,} strings in calls of {CALL:,} / engine (q/s)", n, ">= 0.75"),
            {
                "model": self.model,
                "measure": f"adder({self.query!r}) minus engine on the one-query graph (us)",
                "ours": m("single adder") * 1e6,
                "theirs": m("single engine") * 1e6,
                "ratio": extra,
                "cpu_ratio": extra_cpu,
                "target": "<= +3 us",
                "met": extra <= 3,
                "engine_io_binding_us": m("single engine, io_binding") * 1e6,
                "samples": self.times,
            },
            self.row("stream", f"adder - piped, {lines:,} lines / Adder.batch on them (q/s)", lines, ">= 0.80"),
            {
                "model": self.model,
                "measure": f"adder - peak RSS, {lines:,} lines / {lines // 10:,} lines (MiB)",
                "ours": m("stream peak") / 2**20,
                "theirs": m("stream small peak") / 2**20,
                "ratio": flat,
                "cpu_ratio": None,
                "target": "<= 1.20",
                "met": flat <= 1.2,
            },
        ]


def measure(rounds: int, strings: int, stream_seconds: float, seconds: float, models: list[str] | None = None) -> dict:
    """Every shipped model's rows, interleaved over rounds; with the load average around them."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        benches = [ModelBench(m, strings, stream_seconds, Path(folder), seconds) for m in models or shipped_models()]
        for r in range(rounds):
            for bench in benches:
                bench.round(flip=bool(r % 2))
    rows = [row for bench in benches for row in bench.rows()]
    return {"rows": rows, "rounds": rounds, "load_before": load_before, "load_after": os.getloadavg()}


def meets(value: float | None, target: str) -> str:
    """'yes' or 'NO' for a value against a target written '>= 0.85', '<= +3 us' or '<= 1.20'."""
    if value is None:
        return ""
    sign, bound = target.split()[:2]
    ok = value >= float(bound) if sign == ">=" else value <= float(bound)
    return "yes" if ok else "NO"


def print_table(record: dict) -> None:
    """The table, met or not by wall clock and by CPU time: on a busy machine they can differ."""
    print(
        f"adder against its engine alone: {os.cpu_count()} cores, {record['rounds']} interleaved rounds, medians; "
        f"load average {record['load_before'][0]:.1f} before, {record['load_after'][0]:.1f} after"
    )
    header = f"{'model':<8} {'measure':<66} {'adder':>10} {'other':>10} {'ratio':>7} {'by CPU':>7} {'target':>9}"
    print(header + "  met (wall, CPU)")
    for row in record["rows"]:
        us = row["target"].endswith("us")
        ratio = f"{row['ratio']:+.1f}" if us else f"{row['ratio']:.2f}"
        cpu = "" if row["cpu_ratio"] is None else (f"{row['cpu_ratio']:+.1f}" if us else f"{row['cpu_ratio']:.2f}")
        met = ", ".join(filter(None, (meets(row["ratio"], row["target"]), meets(row["cpu_ratio"], row["target"]))))
        print(
            f"{row['model']:<8} {row['measure']:<66} {row['ours']:>10,.1f} {row['theirs']:>10,.1f} "
            f"{ratio:>7} {cpu:>7} {row['target']:>9}  {met}"
        )
    for row in record["rows"]:
        if "engine_io_binding_us" in row:
            print(
                f"{row['model']}: the engine's lowest-cost call (io_binding, both ends bound) "
                f"{row['engine_io_binding_us']:.1f} us a query"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strings", type=int, default=STRINGS)
    parser.add_argument("--stream-seconds", type=float, default=STREAM_SECONDS, help="batch work per stream run")
    parser.add_argument("--seconds", type=float, default=0.4, help="time per single-query measurement")
    parser.add_argument("--models", nargs="*", help="shipped models to measure (default: all)")
    parser.add_argument("--show", help="print the table of a JSON file peers.py wrote, measuring nothing")
    args = parser.parse_args()
    if args.show:
        print_table(json.loads(Path(args.show).read_text())["ratios"])
        return
    print_table(measure(args.rounds, args.strings, args.stream_seconds, args.seconds, args.models))


if __name__ == "__main__":
    main()
