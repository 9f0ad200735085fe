"""The batch graphs against the graphs shipped before them, and the shapes of graph they were
chosen from: one run, interleaved rounds, a table of ratios.

    python benchmarks/graph_speed.py                   # every shipped model
    python benchmarks/graph_speed.py --models default --rounds 7 --json graph_speed.json

"Before" is the graphs as shipped at BEFORE (read with `git show`, so a checkout is needed):
onnxruntime on them fed encoded tensors, the best of two ways of running a batch (a pool
of one-thread sessions over 1,024-row chunks, as Adder runs them, and one session with
every core on calls of 8,192 rows); `session.run` on the one-query graph for a single query.
"Now" is `Adder` fed strings: `Adder.batch` over 200,000 random queries of the model's
domain, and `adder(q)`. Every answer `Adder.batch` gives here is checked against the true
value. The shapes table times one one-thread session per graph on 1,024 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_ratios  # noqa: E402  (beside this script)

from adder import Adder  # noqa: E402
from adder.session import CHUNK_SIZE, MODELS_DIR, shipped_models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BEFORE = "2450980"  # the last commit shipping the batch graphs with a fused encoder and softmax
STRINGS = 200_000
WHOLE_ROWS = 8_192  # rows per call for the session with every core (more only costs memory)
QUERY = "50+11"


def session(data: bytes, threads: int = 1, pin_one: bool = False) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if pin_one:
        options.add_free_dimension_override_by_name("batch", 1)
        options.enable_cpu_mem_arena = False
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def earlier(name: str, suffix: str) -> bytes:
    path = f"runtime/models/{name}{suffix}"
    return subprocess.run(["git", "show", f"{BEFORE}:{path}"], cwd=REPO, capture_output=True, check=True).stdout


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def per_call(fn, seconds: float) -> float:
    fn()
    calls, started = 0, time.perf_counter()
    while calls < 5 or time.perf_counter() - started < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - started) / calls


class Bench:
    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.seconds = name, seconds
        self.adder = Adder(name)
        codec = self.adder.codec
        self.strings = engine_ratios.random_queries(self.adder, STRINGS, seed=48)
        self.truth = [self.adder.parse(q).value for q in self.strings]
        self.x = codec.encode_queries(self.strings)
        self.x1 = codec.encode_queries([QUERY])
        threads = os.cpu_count() or 1
        old_batch = earlier(name, ".batch.onnx")
        self.pool = ThreadPoolExecutor(threads)
        self.old_chunked = [session(old_batch) for _ in range(threads)]
        self.old_whole = session(old_batch, threads)
        self.old_single = session(earlier(name, ".single.onnx"), pin_one=True)
        self.chunks = [self.x[i : i + CHUNK_SIZE] for i in range(0, len(self.x), CHUNK_SIZE)]
        self.times: dict[str, list[float]] = {}
        answers = self.adder.batch(self.strings)
        if answers != self.truth:
            wrong = sum(a != b for a, b in zip(answers, self.truth))
            raise SystemExit(f"{name}: Adder.batch gave {wrong} wrong answers of {len(answers):,}")

    def old_batch_chunked(self) -> None:
        sessions = self.old_chunked
        list(
            self.pool.map(
                lambda i: sessions[i % len(sessions)].run(None, {"query": self.chunks[i]}), range(len(self.chunks))
            )
        )

    def old_batch_threads(self) -> None:
        for start in range(0, len(self.x), WHOLE_ROWS):
            self.old_whole.run(None, {"query": self.x[start : start + WHOLE_ROWS]})

    def round(self, flip: bool) -> None:
        pairs = [
            ("now batch", lambda: timed(lambda: self.adder.batch(self.strings))),
            ("before batch, chunked", lambda: timed(self.old_batch_chunked)),
            ("before batch, whole", lambda: timed(self.old_batch_threads)),
            ("now single", lambda: per_call(lambda: self.adder(QUERY), self.seconds)),
            ("before single", lambda: per_call(lambda: self.old_single.run(None, {"query": self.x1}), self.seconds)),
        ]
        for key, fn in reversed(pairs) if flip else pairs:
            self.times.setdefault(key, []).append(fn())

    def median(self, key: str) -> float:
        return statistics.median(self.times[key])

    def figures(self) -> dict:
        m = self.median
        before = min(m("before batch, chunked"), m("before batch, whole"))
        return {
            "model": self.name,
            "now_qps": STRINGS / m("now batch"),
            "before_qps": STRINGS / before,
            "batch_ratio": before / m("now batch"),
            "now_single_us": m("now single") * 1e6,
            "before_single_us": m("before single") * 1e6,
            "single_ratio": m("now single") / m("before single"),
            "samples": self.times,
        }


OPTIONS = {  # Adder opens its batch sessions with a free batch, the arena and every optimisation
    "batch fixed at 1,024": lambda o: o.add_free_dimension_override_by_name("batch", CHUNK_SIZE),
    "no memory arena": lambda o: setattr(o, "enable_cpu_mem_arena", False),
    "basic optimisations only": lambda o: setattr(
        o, "graph_optimization_level", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    ),
}


def shapes(name: str, seconds: float, rounds: int) -> list[dict]:
    """One-thread onnxruntime on 1,024 rows through each shape of graph for this model."""
    import onnx

    from adder.export import written
    from adder.export.simplify import model_weights

    adder = Adder(name)
    config, codec = adder.config, adder.codec
    strings = engine_ratios.random_queries(adder, CHUNK_SIZE, seed=7)
    indices = codec.encode_batch(strings)[0].astype(np.int64)
    x = codec.encode_queries(strings)
    proto = onnx.load(MODELS_DIR / f"{name}.onnx")
    weights = model_weights(proto, config)
    hidden = weights.encoder[1].shape[-1]
    graphs = {
        "fused LSTMs (the model's own graph)": ((MODELS_DIR / f"{name}.onnx").read_bytes(), x, False),
        "fused encoder, decoder written out (before)": (earlier(name, ".batch.onnx"), x, False),
    }
    chosen = written.tabulated_steps(config, hidden)
    saved = written.MAX_TABULATED, written.TABLE_BYTES
    try:
        for k in range(0, max(chosen, 3) + 1):
            written.MAX_TABULATED, written.TABLE_BYTES = k, 1 << 40
            graph = written.written_graph(weights, config, proto).SerializeToString()
            label = f"written out, {k} steps tabulated" + (" (shipped)" if k == chosen else "")
            graphs[label] = (graph, indices, True)
    finally:
        written.MAX_TABULATED, written.TABLE_BYTES = saved
    sessions = {label: (session(data), feed, symbols, len(data)) for label, (data, feed, symbols) in graphs.items()}
    shipped = (MODELS_DIR / f"{name}.batch.onnx").read_bytes()
    for label, tune in OPTIONS.items():  # the shipped graph under other session options
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        tune(options)
        sessions[f"shipped graph, {label}"] = (ort.InferenceSession(shipped, options), indices, True, len(shipped))
    want = adder.answer_symbols(indices)
    times: dict[str, list[float]] = {label: [] for label in sessions}
    for label, (s, feed, symbols, _) in sessions.items():
        out = s.run(None, {s.get_inputs()[0].name: feed})[0]
        if not np.array_equal(out if symbols else out.argmax(-1), want):
            raise SystemExit(f"{name}: {label} answers differently")
    for r in range(rounds):
        order = list(sessions.items())
        for label, (s, feed, _, _) in reversed(order) if r % 2 else order:
            run = lambda s=s, feed=feed: s.run(None, {s.get_inputs()[0].name: feed})  # noqa: E731
            times[label].append(per_call(run, seconds))
    return [
        {
            "model": name,
            "graph": label,
            "us_per_query": statistics.median(t) / CHUNK_SIZE * 1e6,
            "bytes": sessions[label][3],
        }
        for label, t in times.items()
    ]


def single_shapes(name: str, seconds: float, rounds: int) -> list[dict]:
    """One query through each shape of one-query graph (batch fixed at 1, one thread): the fused
    graph shipped, the same with its softmax left out, and the batch graph written out."""
    import onnx

    adder = Adder(name)
    x1 = adder.codec.encode_queries([QUERY])
    symbols = adder.codec.encode_batch([QUERY])[0].astype(np.int64)
    fused = onnx.load(MODELS_DIR / f"{name}.single.onnx")
    scores = onnx.ModelProto()
    scores.CopyFrom(fused)
    last = scores.graph.node[-1]
    assert last.op_type == "Softmax"
    producer = next(node for node in scores.graph.node if last.input[0] in node.output)
    producer.output[list(producer.output).index(last.input[0])] = last.output[0]
    scores.graph.node.remove(last)
    graphs = {
        "fused LSTMs, one query (shipped)": (fused.SerializeToString(), x1),
        "fused LSTMs, no softmax": (scores.SerializeToString(), x1),
        "written out (the batch graph at batch 1)": ((MODELS_DIR / f"{name}.batch.onnx").read_bytes(), symbols),
    }
    sessions = {label: (session(data, pin_one=True), feed) for label, (data, feed) in graphs.items()}
    times: dict[str, list[float]] = {label: [] for label in sessions}
    for r in range(rounds):
        order = list(sessions.items())
        for label, (s, feed) in reversed(order) if r % 2 else order:
            run = lambda s=s, feed=feed: s.run(None, {s.get_inputs()[0].name: feed})  # noqa: E731
            times[label].append(per_call(run, seconds))
    return [{"model": name, "graph": label, "us": statistics.median(t) * 1e6} for label, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=shipped_models())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="time per single-query and shape measurement")
    parser.add_argument("--no-shapes", action="store_true", help="leave out the shapes table")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    benches = [Bench(name, args.seconds) for name in args.models]
    for r in range(args.rounds):
        for bench in benches:
            bench.round(flip=bool(r % 2))
    rows = [bench.figures() for bench in benches]
    shape_rows, single_rows = [], []
    if not args.no_shapes:
        shape_rows = [row for name in args.models for row in shapes(name, args.seconds, args.rounds)]
        single_rows = [row for name in args.models for row in single_shapes(name, args.seconds, args.rounds)]
    load_after = os.getloadavg()
    print(
        f"graphs now against the graphs of {BEFORE}: {os.cpu_count()} cores, {args.rounds} interleaved rounds, "
        f"medians; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(
        f"{'model':<8} {'Adder.batch q/s':>16} {'before q/s':>12} {'ratio':>6}   "
        f"{'adder(q) us':>11} {'before us':>10} {'ratio':>6}"
    )
    for row in rows:
        print(
            f"{row['model']:<8} {row['now_qps']:>16,.0f} {row['before_qps']:>12,.0f} {row['batch_ratio']:>6.2f}   "
            f"{row['now_single_us']:>11.1f} {row['before_single_us']:>10.1f} {row['single_ratio']:>6.2f}"
        )
    by = {row["model"]: row for row in rows}
    targets = []
    if "default" in by:
        d = by["default"]
        targets += [
            (
                "default: Adder.batch / onnxruntime on the earlier batch graph",
                d["batch_ratio"],
                ">= 1.6",
                d["batch_ratio"] >= 1.6,
            ),
            (
                "default: adder(q) / session.run on the earlier one-query graph",
                d["single_ratio"],
                "<= 0.6",
                d["single_ratio"] <= 0.6,
            ),
        ]
        if "wide" in by:
            w = by["wide"]
            single = w["now_single_us"] / d["now_single_us"]
            batch = w["now_qps"] / d["now_qps"]
            targets += [
                ("wide: single query / the default's", single, "<= 3", single <= 3),
                ("wide: batch rate / the default's", batch, ">= 0.25", batch >= 0.25),
            ]
    print(f"\n{'target':<66} {'value':>7} {'target':>8}  met")
    for label, value, target, met in targets:
        print(f"{label:<66} {value:>7.2f} {target:>8}  {'yes' if met else 'NO'}")
    if shape_rows:
        print(f"\n{'model':<8} {'graph (one thread, 1,024 rows)':<46} {'us/query':>9} {'bytes':>11}")
        for row in shape_rows:
            print(f"{row['model']:<8} {row['graph']:<46} {row['us_per_query']:>9.2f} {row['bytes']:>11,}")
    if single_rows:
        print(f"\n{'model':<8} {'one-query graph (batch fixed at 1, one thread)':<46} {'us/query':>9}")
        for row in single_rows:
            print(f"{row['model']:<8} {row['graph']:<46} {row['us']:>9.1f}")
    if args.json:
        record = {
            "rows": rows,
            "targets": targets,
            "shapes": shape_rows,
            "single_shapes": single_rows,
            "load": [load_before, load_after],
            "before": BEFORE,
        }
        with tempfile.NamedTemporaryFile("w", dir=Path(args.json).resolve().parent, delete=False) as tmp:
            json.dump(record, tmp, indent=2)
        os.replace(tmp.name, args.json)


if __name__ == "__main__":
    main()
