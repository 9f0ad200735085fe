"""onnxruntime settings for the default model, each measured in one run (by hand, not a test).

    python benchmarks/ort_tuning.py

Rows: session creation per graph-optimisation level and for a model saved already
optimised; single-query latency per optimisation level with the batch dimension
free or pinned to 1; single-query latency and 8192-query throughput per thread
count and spinning setting; the fused graph against the batch graph saved beside it.
The runtime's choices (runtime/session.py) come from
this table.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from runtime_speed import per_call  # the same timing loop as the main benchmark

from adder import Adder
from adder.config import BATCH_DIM
from adder.session import MODELS_DIR, batch_graph_path

MODEL = MODELS_DIR / "default.onnx"
LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def options(threads: int = 1, level: str = "all", spin: bool = True, pinned: bool = False) -> ort.SessionOptions:
    so = ort.SessionOptions()
    if pinned:
        so.add_free_dimension_override_by_name(BATCH_DIM, 1)
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = LEVELS[level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return so


def main() -> None:
    codec = Adder().codec
    one = codec.encode_queries(["3+10"])
    rng = np.random.default_rng(0)
    many = codec.encode_queries([f"{a}+{b}" for a, b in rng.integers(0, 1000, size=(8192, 2)).tolist()])
    print(f"{'setting':<44} {'value':>14}")
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "optimised.onnx"
        so = options(level="basic")
        so.optimized_model_filepath = str(saved)
        ort.InferenceSession(str(MODEL), so)
        for name, path, level in [(lvl, MODEL, lvl) for lvl in LEVELS] + [
            ("saved optimised, basic", saved, "disabled")
        ]:
            seconds = per_call(lambda p=path, lv=level: ort.InferenceSession(str(p), options(level=lv)), 10)
            print(f"{'session creation: ' + name:<44} {seconds * 1e3:>11.2f} ms")
    for level in ("basic", "all"):
        for pinned in (False, True):
            session = ort.InferenceSession(str(MODEL), options(level=level, spin=False, pinned=pinned))
            single = per_call(lambda s=session: s.run(None, {"query": one}), 1000)
            label = f"{level}, batch {'pinned to 1' if pinned else 'free'}"
            print(f"{'single query, ' + label:<44} {single * 1e6:>11.1f} us")
    for threads in (1, 2):
        for spin in (False, True):
            session = ort.InferenceSession(str(MODEL), options(threads, spin=spin))
            single = per_call(lambda s=session: s.run(None, {"query": one}), 1000)
            batch = per_call(lambda s=session: s.run(None, {"query": many}), 3, 3)
            label = f"{threads} thread{'s' if threads > 1 else ''}, spinning {'on' if spin else 'off'}"
            print(f"{'single query, ' + label:<44} {single * 1e6:>11.1f} us")
            print(f"{'8192-query batch, ' + label:<44} {8192 / batch:>10,.0f} q/s")
    for rows in (16, 64, 256):
        x = many[:rows]
        for threads in (1, 2):
            session = ort.InferenceSession(str(MODEL), options(threads, spin=False))
            seconds = per_call(lambda s=session, x=x: s.run(None, {"query": x}), 50)
            print(f"{f'{rows}-query batch, {threads} thread(s)':<44} {rows / seconds:>10,.0f} q/s")
    # The fused graph against the batch graph adder-export writes beside it (export/unroll.py),
    # interleaved, on the runtime's settings: batches on 2 threads, single queries pinned on 1.
    graphs = {"fused": MODEL, "batch graph": batch_graph_path(MODEL)}
    timings: dict[str, list[float]] = {}
    for _ in range(3):
        for name, path in graphs.items():
            batch = ort.InferenceSession(str(path), options(2, spin=False))
            single = ort.InferenceSession(str(path), options(1, spin=False, pinned=True))
            x = many[:1024]
            timings.setdefault(f"1024-query batch, 2 threads, {name}", []).append(
                1024 / per_call(lambda s=batch, x=x: s.run(None, {"query": x}), 20)
            )
            timings.setdefault(f"single query, pinned, {name}", []).append(
                1e6 * per_call(lambda s=single: s.run(None, {"query": one}), 1000)
            )
    for label, values in timings.items():
        unit = "us" if label.startswith("single") else "q/s"
        print(f"{label:<44} {np.median(values):>10,.1f} {unit}")


if __name__ == "__main__":
    main()
