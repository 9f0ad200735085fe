"""adder against its own engine, and every shipped model in every engine we could run: one run, by hand.

    pip install '.[train,bench]'
    python benchmarks/peers.py --json peers.json
    python benchmarks/peers.py --no-ratios --models default wide   # the peer tables alone
    python benchmarks/peers.py --ratios-only      # the first table alone (needs no extra)

The first table leads: for every shipped model, what `adder` costs next to onnxruntime
alone on the same graphs (benchmarks/engine_ratios.py says exactly how each side runs).

Engines, each on the same weights (the model's .keras file and the .onnx files exported
from it): `adder` (the public API, from query strings), raw onnxruntime on the model's
graph (fed one-hot tensors) and on its batch graph (fed symbol indices), OpenVINO and
tract on the model's graph and on the batch graph (tract at a fixed batch), LiteRT
converted from the Keras model as is (a WHILE loop) and with its LSTMs unrolled (a
fixed-batch concrete function, weights frozen, one conversion per batch size), and
Keras itself. Every engine but `adder` is fed tensors already encoded, so its rows
are the engine alone; `adder` pays for parsing and decoding strings. A peer that cannot
load a graph is reported as not measured, with its error.

Single-query latency and throughput at batch 1 / 64 / 1,024 / 8,192, over interleaved
rounds (medians, ranges). The floor: numpy float32 sgemm on 2048x2048 on every core
(measured with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset), divided by twice the
model's multiply-accumulates per query (both LSTMs and the Dense layer, as Keras runs them).
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
from adder.session import MODELS_DIR, shipped_models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KERAS_MODELS = REPO / "train" / "models"
BATCHES = (1, 64, 1024, 8192)
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


def macs_per_query(name: str) -> int:
    """Multiply-accumulates of one query as Keras runs the model: every LSTM step's four gates
    over its input and state, and the Dense layer at every answer step."""
    from adder.export.simplify import model_weights

    config = Adder(name).config
    weights = model_weights(onnx.load(MODELS_DIR / f"{name}.onnx"), config)
    (w_e, r_e, _), (w_d, r_d, _) = weights.encoder, weights.decoder
    encoder = config.input_length * w_e.shape[1] * (w_e.shape[2] + r_e.shape[2])
    decoder = config.output_length * w_d.shape[1] * (w_d.shape[2] + r_d.shape[2])
    return int(encoder + decoder + config.output_length * weights.kernel.size)


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


def openvino_engine(name: str, path: Path, x: np.ndarray) -> Engine:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    single = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
    many = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    request, x1 = single.create_infer_request(), x[:1]
    batch_request = many.create_infer_request()
    return Engine(
        name,
        lambda: request.infer({0: x1}),
        lambda b: lambda: batch_request.infer({0: x[:b]}),
    )


def _fact(b: int, x: np.ndarray) -> str:
    kind = {np.dtype(np.float32): "f32", np.dtype(np.int64): "i64"}[x.dtype]
    return ",".join(str(d) for d in (b, *x.shape[1:])) + f",{kind}"


def model_as_loaded(tract, path: Path, b: int, x: np.ndarray):
    model = tract.onnx().load(str(path))
    model.set_input_fact(0, _fact(b, x))
    return model.into_model()


def tract_engine(name: str, path: Path, x: np.ndarray) -> Engine:
    import tract

    compiled = {}

    def runnable(b: int):
        if b not in compiled:
            model = tract.onnx().load(str(path))
            model.set_input_fact(0, _fact(b, x))
            typed = model.into_model()
            try:
                typed.transform("declutter")
            except Exception:  # tract 0.23's declutter fails on a fused LSTM; run it as loaded
                typed = model_as_loaded(tract, path, b, x)
            compiled[b] = typed.into_runnable()
        return compiled[b]

    one = runnable(1)
    x1 = x[:1]
    return Engine(name, lambda: one.run([x1]), lambda b: lambda r=runnable(b), xb=x[:b]: r.run([xb]))


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


def adder_engine(name: str, queries: list[str]) -> Engine:
    adder = Adder(name)
    return Engine("adder", lambda: adder(QUERY), lambda b: lambda: adder.batch(queries[:b]), "from strings")


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
    parser.add_argument("--no-ratios", action="store_true", help="leave out the first table")
    parser.add_argument("--models", nargs="*", default=shipped_models(), help="shipped models (default: all)")
    args = parser.parse_args()

    ratios = None
    if not args.no_ratios:
        strings, stream = engine_ratios.STRINGS, engine_ratios.STREAM_SECONDS
        ratios = engine_ratios.measure(args.ratio_rounds, strings, stream, args.seconds)
        engine_ratios.print_table(ratios)
    if args.ratios_only:
        write_json(args.json, {"ratios": ratios})
        return

    gflops = sgemm_gflops()
    records = {name: measure_peers(name, args, gflops) for name in args.models}
    if args.json:
        write_json(args.json, {"ratios": ratios, "models": records, "sgemm_gflops": gflops, "rounds": args.rounds})


def measure_peers(name: str, args, gflops: float) -> dict:
    """Every engine on one model's weights, interleaved over rounds; prints the model's table."""
    import keras

    model = keras.saving.load_model(KERAS_MODELS / f"{name}.keras", compile=False, safe_mode=True)
    adder = Adder(name)
    queries = engine_ratios.random_queries(adder, max(BATCHES), seed=0)
    x = adder.codec.encode_queries(queries)
    symbols = adder.codec.encode_batch(queries)[0].astype(np.int64)
    graph, batch_graph = MODELS_DIR / f"{name}.onnx", MODELS_DIR / f"{name}.batch.onnx"
    builders = {
        "adder": lambda: adder_engine(name, queries),
        "onnxruntime": lambda: onnxruntime_engine(f"onnxruntime, {graph.name}", graph, x),
        "onnxruntime-batch": lambda: onnxruntime_engine(f"onnxruntime, {batch_graph.name}", batch_graph, symbols),
        "openvino": lambda: openvino_engine(f"openvino, {graph.name}", graph, x),
        "openvino-batch": lambda: openvino_engine(f"openvino, {batch_graph.name}", batch_graph, symbols),
        "tract": lambda: tract_engine(f"tract, {graph.name} (fixed batch)", graph, x),
        "tract-batch": lambda: tract_engine(f"tract, {batch_graph.name} (fixed batch)", batch_graph, symbols),
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
    for _ in range(args.rounds):  # interleaved: drift in the machine hits every engine alike
        for engine in engines:
            single[engine.name].append(time_call(engine.single, args.seconds / 2))
            for b in BATCHES:
                qps[(engine.name, b)].append(b / time_call(engine.batch(b), args.seconds))

    macs = macs_per_query(name)
    floor_qps = gflops * 1e9 / (2 * macs)
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

    print(f"\n{name}: machine {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"floor: sgemm {gflops:.0f} GFLOP/s / (2 x {macs:,} MACs per query) = {floor_qps:,.0f} q/s")
    print(f"{'engine':<44} {'single us':>18} " + " ".join(f"{'q/s b' + str(b):>10}" for b in BATCHES) + "  best/floor")
    for row in sorted(rows, key=lambda r: r["single_us"]):
        lo, hi = row["single_us_range"]
        single_text = f"{row['single_us']:.0f} ({lo:.0f}-{hi:.0f})"
        print(
            f"{row['engine']:<44} {single_text:>18} "
            + " ".join(f"{row[f'qps_b{b}']:>10,.0f}" for b in BATCHES)
            + f"  {row['floor_ratio']:>9.2f}"
        )
    ours = next((r for r in rows if r["engine"] == "adder"), None)
    peers = [r for r in rows if r["engine"] != "adder"]
    if ours and peers:
        fastest_single = min(peers, key=lambda r: r["single_us"])
        fastest_batch = max(peers, key=lambda r: r["batch_qps"])
        print(
            f"adder against the fastest peer: single {ours['single_us']:.0f} us / "
            f"{fastest_single['single_us']:.0f} us ({fastest_single['engine']}); best batch "
            f"{ours['batch_qps']:,.0f} / {fastest_batch['batch_qps']:,.0f} q/s ({fastest_batch['engine']})"
        )
    for key, reason in failed.items():
        print(f"{key}: not measured ({reason})")
    return {"rows": rows, "macs_per_query": macs, "floor_qps": floor_qps, "failed": failed}


def write_json(path: str | None, record: dict) -> None:
    """Atomically: a run stopped half-way leaves the previous file whole."""
    if not path:
        return
    with tempfile.NamedTemporaryFile("w", dir=Path(path).resolve().parent, delete=False) as tmp:
        json.dump(record, tmp, indent=2)
    os.replace(tmp.name, path)


if __name__ == "__main__":
    main()
