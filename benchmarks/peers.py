"""adder against its own engine, and the default model in every engine we could run: one run, by hand.

    pip install '.[train,bench]'
    python benchmarks/peers.py --json peers.json
    python benchmarks/peers.py --ratios-only      # the first table alone (needs no extra)

The first table leads: for every shipped model, what `adder` costs next to onnxruntime
alone on the same graphs (benchmarks/engine_ratios.py says exactly how each side runs).

Engines: `adder` (the public API, from query strings), raw onnxruntime on the shipped
graph and on its batch graph, OpenVINO, tract (the batch graph at a fixed batch: its
declutter fails on the fused decoder LSTM and on a symbolic batch), LiteRT converted
from the Keras model as is (a WHILE loop) and with its LSTMs unrolled (a
fixed-batch concrete function, weights frozen, one conversion per batch size), and
Keras itself. Every engine but `adder` is fed tensors already encoded, so its rows
are the engine alone; `adder` pays for parsing and decoding strings.

Single-query latency and throughput at batch 1 / 64 / 1,024 / 8,192, over interleaved
rounds (medians, ranges). The floor: numpy float32 sgemm on 2048x2048 on every core
(measured with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset), divided by twice the
fewest multiply-accumulates per query among the shipped default's graphs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import engine_ratios  # noqa: E402  (beside this script)
import numpy as np  # noqa: E402
import onnx  # noqa: E402

from adder import Adder  # noqa: E402
from adder.session import MODELS_DIR  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KERAS_MODEL = REPO / "train" / "models" / "default.keras"
BATCHES = (1, 64, 1024, 8192)
TARGET_STRINGS = 200_000  # Adder.batch over this many strings, whole and in calls of 1,024, against the floor
QUERY = "3+10"


def sgemm_gflops() -> float:
    """float32 2048^2 matmul on every core, in a child without the OpenBLAS overrides."""
    code = (
        "import numpy as np, time\n"
        "a = np.random.rand(2048, 2048).astype(np.float32); b = a.copy(); a @ b\n"
        "best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(20))\n"
        "print(2 * 2048**3 / best / 1e9)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout)


def macs_per_query(path: Path) -> int:
    """Multiply-accumulates of one query through a graph: LSTM, MatMul and Gemm nodes."""
    proto = onnx.load(path)
    shapes = {init.name: list(init.dims) for init in proto.graph.initializer}
    config = Adder(path).config
    total = 0
    for node in proto.graph.node:
        if node.op_type == "LSTM":
            _, gates, inputs = shapes[node.input[1]]  # W: [dirs, 4H, I]
            hidden = gates // 4
            steps = config.input_length if node is _first_lstm(proto) else config.output_length
            total += steps * gates * (inputs + hidden)
        elif node.op_type in ("MatMul", "Gemm") and node.input[1] in shapes:
            rows, cols = shapes[node.input[1]][-2:]
            total += rows * cols * _rows_per_query(node, proto, config)
    return total


def _first_lstm(proto):
    return next(node for node in proto.graph.node if node.op_type == "LSTM")


def _rows_per_query(node, proto, config) -> int:
    """A MatMul on the decoder's per-step outputs runs once per output step; the batch graph's
    one-off input projection and per-step recurrences are single rows."""
    return config.output_length if "decoder" not in node.name else 1


def median_range(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


class Engine:
    """One engine: single(x1) runs one query, batch(b) returns a callable running b queries."""

    def __init__(self, name: str, single, batch, note: str = "") -> None:
        self.name, self.single, self.batch, self.note = name, single, batch, note


def onnxruntime_engine(name: str, path: Path, x: np.ndarray) -> Engine:
    import onnxruntime as ort

    def session(threads: int, pin_one: bool = False):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if pin_one:
            options.add_free_dimension_override_by_name("batch", 1)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    one, many = session(1, pin_one=True), session(os.cpu_count() or 1)
    input_name = one.get_inputs()[0].name
    x1 = x[:1]
    return Engine(
        name,
        lambda: one.run(None, {input_name: x1}),
        lambda b: lambda: many.run(None, {input_name: x[:b]}),
    )


def openvino_engine(path: Path, x: np.ndarray) -> Engine:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    single = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
    many = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    request, x1 = single.create_infer_request(), x[:1]
    batch_request = many.create_infer_request()
    return Engine(
        "openvino",
        lambda: request.infer({0: x1}),
        lambda b: lambda: batch_request.infer({0: x[:b]}),
    )


def model_as_loaded(tract, path: Path, b: int, x: np.ndarray):
    model = tract.onnx().load(str(path))
    model.set_input_fact(0, f"{b},{x.shape[1]},{x.shape[2]},f32")
    return model.into_model()


def tract_engine(batch_path: Path, x: np.ndarray) -> Engine:
    import tract

    compiled = {}

    def runnable(b: int):
        if b not in compiled:
            model = tract.onnx().load(str(batch_path))
            model.set_input_fact(0, f"{b},{x.shape[1]},{x.shape[2]},f32")
            typed = model.into_model()
            try:
                typed.transform("declutter")
            except Exception:  # tract 0.23's declutter fails on this graph; run it as loaded
                typed = model_as_loaded(tract, batch_path, b, x)
            compiled[b] = typed.into_runnable()
        return compiled[b]

    one = runnable(1)
    x1 = x[:1]
    return Engine(
        "tract (batch graph, fixed batch)",
        lambda: one.run([x1]),
        lambda b: lambda r=runnable(b), xb=x[:b]: r.run([xb]),
    )


def litert_engine(model, x: np.ndarray, unroll: bool) -> Engine:
    """LiteRT from the Keras model: a fixed-batch concrete function per batch size, no trackable_obj."""
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    source = model
    if unroll:  # the same weights in LSTMs written out step by step: no WHILE loop in the graph
        config = model.get_config()
        for layer in config["layers"]:
            if layer["class_name"] == "LSTM":
                layer["config"]["unroll"] = True
        source = keras.Model.from_config(config)
        source.set_weights(model.get_weights())
    interpreters = {}

    def interpreter(b: int, threads: int):
        key = (b, threads)
        if key not in interpreters:
            fn = tf.function(lambda t: source(t, training=False))
            concrete = fn.get_concrete_function(tf.TensorSpec([b, *x.shape[1:]], tf.float32))
            converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
            flat = converter.convert()
            runner = Interpreter(model_content=flat, num_threads=threads)
            runner.allocate_tensors()
            interpreters[key] = runner
        return interpreters[key]

    def runner(b: int, threads: int):
        it = interpreter(b, threads)
        index_in, index_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
        xb = x[:b]

        def run():
            it.set_tensor(index_in, xb)
            it.invoke()
            return it.get_tensor(index_out)

        return run

    name = "litert, LSTMs unrolled" if unroll else "litert, Keras model as is"
    return Engine(name, runner(1, 1), lambda b: runner(b, os.cpu_count() or 1))


def keras_engine(model, x: np.ndarray) -> Engine:
    x1 = x[:1]
    return Engine(
        "keras",
        lambda: model(x1, training=False),
        lambda b: lambda: model.predict(x[:b], batch_size=min(b, 8192), verbose=0),
        "model(x) / predict",
    )


def adder_engine(queries: list[str]) -> Engine:
    adder = Adder()
    return Engine("adder", lambda: adder(QUERY), lambda b: lambda: adder.batch(queries[:b]), "from strings")


def bounds(adder: Adder, x: np.ndarray) -> dict:
    """What a single query through ``adder`` cannot go below, whatever its model graph:
    onnxruntime's fixed cost per ``run`` (a one-node Identity graph over the same input)
    and the runtime's own Python per query (parse, encode, decode, no model).
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    shape = [1, *x.shape[1:]]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    identity = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x1 = np.ascontiguousarray(x[:1])
    output = adder._session.run(None, {adder._input_name: x1})[0][0]
    codec = adder.codec

    def python_only():
        codec.encode_one(codec.parse(QUERY))
        codec.decode_one(output)

    return {
        "onnxruntime per call (Identity graph)": lambda: identity.run(None, {"x": x1}),
        "adder's Python per query (no model)": python_only,
    }


def time_call(fn, seconds: float) -> float:
    """Seconds per call: as many calls as fit in about ``seconds`` (at least 3)."""
    fn()
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over every engine")
    parser.add_argument("--seconds", type=float, default=0.4, help="time spent per measurement")
    parser.add_argument("--skip", nargs="*", default=[], help="engines to leave out (e.g. keras tract)")
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--ratio-rounds", type=int, default=5, help="interleaved rounds of the first table")
    parser.add_argument("--ratios-only", action="store_true", help="print the first table alone")
    args = parser.parse_args()

    ratios = engine_ratios.measure(args.ratio_rounds, engine_ratios.STRINGS, engine_ratios.STREAM_SECONDS, args.seconds)
    engine_ratios.print_table(ratios)
    if args.ratios_only:
        write_json(args.json, {"ratios": ratios})
        return
    print()

    import keras

    model = keras.saving.load_model(KERAS_MODEL, compile=False, safe_mode=True)
    adder = Adder()
    rng = np.random.default_rng(0)
    terms = rng.integers(0, 1000, size=(max(BATCHES), 2))
    queries = [f"{a}+{b}" for a, b in terms.tolist()]
    x = adder.codec.encode_queries(queries)
    graph, batch_graph = MODELS_DIR / "default.onnx", MODELS_DIR / "default.batch.onnx"

    builders = {
        "adder": lambda: adder_engine(queries),
        "onnxruntime": lambda: onnxruntime_engine("onnxruntime, default.onnx", graph, x),
        "onnxruntime-batch": lambda: onnxruntime_engine("onnxruntime, default.batch.onnx", batch_graph, x),
        "openvino": lambda: openvino_engine(graph, x),
        "tract": lambda: tract_engine(batch_graph, x),
        "litert": lambda: litert_engine(model, x, unroll=False),
        "litert-unrolled": lambda: litert_engine(model, x, unroll=True),
        "keras": lambda: keras_engine(model, x),
    }
    engines, failed = [], {}
    for key, build in builders.items():
        if key in args.skip:
            continue
        try:
            engine = build()
            engine.single()
            for b in BATCHES:
                engine.batch(b)()
            engines.append(engine)
        except Exception as exc:  # a peer that cannot load the graph is reported, not fatal
            failed[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"

    single = {e.name: [] for e in engines}
    qps = {(e.name, b): [] for e in engines for b in BATCHES}
    floors = bounds(adder, x)
    floor_times = {name: [] for name in floors}
    strings = [f"{a}+{b}" for a, b in rng.integers(0, 1000, size=(TARGET_STRINGS, 2)).tolist()]
    calls = [strings[i : i + 1024] for i in range(0, TARGET_STRINGS, 1024)]
    targets = {
        f"Adder.batch, {TARGET_STRINGS:,} strings in one call": lambda: adder.batch(strings),
        f"Adder.batch, {TARGET_STRINGS:,} strings in calls of 1,024": lambda: [adder.batch(c) for c in calls],
    }
    target_qps = {name: [] for name in targets}
    for _ in range(args.rounds):  # interleaved: drift in the machine hits every engine alike
        for name, fn in floors.items():
            floor_times[name].append(time_call(fn, args.seconds / 2))
        for name, fn in targets.items():
            target_qps[name].append(TARGET_STRINGS / time_call(fn, args.seconds))
        for engine in engines:
            single[engine.name].append(time_call(engine.single, args.seconds / 2))
            for b in BATCHES:
                qps[(engine.name, b)].append(b / time_call(engine.batch(b), args.seconds))

    gflops = sgemm_gflops()
    macs = {path.name: macs_per_query(path) for path in (graph, batch_graph)}
    floor_qps = gflops * 1e9 / (2 * min(macs.values()))
    rows = []
    for engine in engines:
        s = median_range(single[engine.name])
        row = {"engine": engine.name, "single_us": s[0] * 1e6, "single_us_range": [s[1] * 1e6, s[2] * 1e6]}
        for b in BATCHES:
            m = median_range(qps[(engine.name, b)])
            row[f"qps_b{b}"], row[f"qps_b{b}_range"] = m[0], [m[1], m[2]]
        row["batch_qps"] = max(row[f"qps_b{b}"] for b in BATCHES)
        row["floor_ratio"] = row["batch_qps"] / floor_qps
        rows.append(row)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"floor: sgemm {gflops:.0f} GFLOP/s / (2 x {min(macs.values()):,} MACs per query) = {floor_qps:,.0f} q/s")
    print(f"{'engine':<36} {'single us':>16} " + " ".join(f"{'q/s b' + str(b):>10}" for b in BATCHES) + "  best/floor")
    for row in sorted(rows, key=lambda r: r["single_us"]):
        lo, hi = row["single_us_range"]
        print(
            f"{row['engine']:<36} {row['single_us']:>6.0f} ({lo:.0f}-{hi:.0f}) "
            + " ".join(f"{row[f'qps_b{b}']:>10,.0f}" for b in BATCHES)
            + f"  {row['floor_ratio']:>9.2f}"
        )
    print("Adder.batch from strings against the floor:")
    target_rows = {}
    for name, values in target_qps.items():
        m = median_range(values)
        target_rows[name] = {"qps": m[0], "qps_range": [m[1], m[2]], "floor_ratio": m[0] / floor_qps}
        print(f"  {name:<52} {m[0]:>10,.0f} q/s ({m[1]:,.0f}-{m[2]:,.0f})  {m[0] / floor_qps:.2f} of the floor")
    print("what every single query through adder pays, whatever the model:")
    bound_rows = {}
    for name, times in floor_times.items():
        m = median_range(times)
        bound_rows[name] = {"us": m[0] * 1e6, "us_range": [m[1] * 1e6, m[2] * 1e6]}
        print(f"  {name:<42} {m[0] * 1e6:>6.1f} ({m[1] * 1e6:.1f}-{m[2] * 1e6:.1f}) us")
    for key, reason in failed.items():
        print(f"{key}: not measured ({reason})")
    if args.json:
        floor = {"sgemm_gflops": gflops, "macs_per_query": macs, "qps": floor_qps}
        record = {"ratios": ratios, "rows": rows, "floor": floor, "bounds": bound_rows, "targets": target_rows}
        write_json(args.json, record | {"failed": failed, "rounds": args.rounds})


def write_json(path: str | None, record: dict) -> None:
    """Atomically: a run stopped half-way leaves the previous file whole."""
    if not path:
        return
    with tempfile.NamedTemporaryFile("w", dir=Path(path).resolve().parent, delete=False) as tmp:
        json.dump(record, tmp, indent=2)
    os.replace(tmp.name, path)


if __name__ == "__main__":
    main()
