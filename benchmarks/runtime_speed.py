"""Runtime speed and memory beside Keras, all measured in one run on one machine.

Prints a table of medians and ratios against the targets, and writes JSON.
Needs the train extra (for the Keras side). Not a test; run by hand:

    python benchmarks/runtime_speed.py --json benchmarks/runtime_speed.json

Cold start and memory time whole processes (`adder "3+10"` against
`python -c "import onnxruntime, numpy"`, the floor for any Python onnxruntime
program); throughput compares strings-in-ints-out through `Adder.batch` with Keras
`model.predict` on tensors that are already encoded. The int8 rows quantize the
shipped float32 model as `adder-export --quantize int8` does and judge it over the
whole domain: float32 stays the default unless int8 is exact and faster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from adder import Adder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KERAS_MODEL = REPO / "train" / "models" / "default.keras"
QUERY = "3+10"


def adder_command() -> list[str]:
    found = shutil.which("adder")
    return [found] if found else [sys.executable, "-m", "adder"]


def run_process(command: list[str], stdin_path: Path | None = None) -> float:
    """Wall seconds of one fresh process (posix_spawn: no copy of this process's memory)."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, str(stdin_path or os.devnull), os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    started = time.perf_counter()
    pid = os.posix_spawn(command[0], command, dict(os.environ), file_actions=actions)
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command} failed")
    return seconds


PEAK_RSS_SHELL = """
"$@" <"$IN" >/dev/null 2>&1 & pid=$!; peak=0
while kill -0 $pid 2>/dev/null; do
  while read -r key value _; do [ "$key" = VmHWM: ] && peak=$value; done < /proc/$pid/status 2>/dev/null
  sleep 0.002
done
wait $pid; rc=$?; echo $peak; exit $rc
"""


def peak_rss(command: list[str], stdin_path: Path | None = None) -> int:
    """Peak RSS (bytes) of one process: its own VmHWM, polled until it exits.

    Not ru_maxrss: the kernel carries the parent's high-water mark (this benchmark's,
    TensorFlow and all) into a child across its exec.
    """
    env = dict(os.environ, IN=str(stdin_path or os.devnull))
    result = subprocess.run(["bash", "-c", PEAK_RSS_SHELL, "bash", *command], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed")
    return int(result.stdout.split()[-1]) * 1024


def median_process(command: list[str], repeats: int, stdin_path: Path | None = None) -> tuple[float, int]:
    """Median wall seconds over fresh processes, and the peak RSS of one more."""
    seconds = statistics.median(run_process(command, stdin_path) for _ in range(repeats))
    return seconds, peak_rss(command, stdin_path)


def per_call(fn, calls: int, repeats: int = 5) -> float:
    """Median seconds per call over several timed loops."""
    fn()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        timings.append((time.perf_counter() - started) / calls)
    return statistics.median(timings)


def keras_query_script() -> str:
    return (
        "import os; os.environ.setdefault('KERAS_BACKEND', 'tensorflow');"
        "from adder.train.archive import load_keras; from adder.codec import Codec;"
        f"m, c = load_keras({str(KERAS_MODEL)!r}); x = Codec(c).encode_queries([{QUERY!r}]);"
        "print(Codec(c).decode_one(m(x, training=False).numpy()[0]))"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Runtime speed and memory beside Keras.")
    parser.add_argument("--queries", type=int, default=1_000_000, help="queries for the throughput rows")
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per cold-start row")
    parser.add_argument("--throughput-repeats", type=int, default=3, help="timed passes per throughput row")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument(
        "--seed-arch-onnx",
        help="an export of the seed architecture (adder-train --arch seed); adds the latency-within-2x row",
    )
    parser.add_argument(
        "--compare",
        help="another model of the same domain (e.g. the 128/128 model: git show "
        "b90e55a:runtime/models/default.onnx > old128.onnx; keep old128.batch.onnx beside it); "
        "adds its single-query and batch rows, timed interleaved with the shipped default",
    )
    args = parser.parse_args()

    import keras  # noqa: F401  (the Keras side of every comparison)

    from adder.train.archive import load_keras

    rows: dict[str, float] = {}
    floor_s, floor_rss = median_process([sys.executable, "-c", "import onnxruntime, numpy"], args.repeats)
    cold_s, cold_rss = median_process([*adder_command(), QUERY], args.repeats)
    keras_s, keras_rss = median_process([sys.executable, "-c", keras_query_script()], 3)
    rows |= {"floor_s": floor_s, "cold_start_s": cold_s, "keras_process_s": keras_s}
    rows |= {"adder_rss": cold_rss, "keras_rss": keras_rss, "floor_rss": floor_rss}

    adder = Adder()
    model, config = load_keras(KERAS_MODEL)
    x_one = adder.codec.encode_queries([QUERY])
    rows["adder_call_s"] = per_call(lambda: adder(QUERY), 2000)
    rows["keras_call_s"] = per_call(lambda: model(x_one, training=False), 50)
    rows["keras_predict_call_s"] = per_call(lambda: model.predict(x_one, verbose=0), 20)
    if args.seed_arch_onnx:
        seed_arch = Adder(args.seed_arch_onnx)
        rows["seed_arch_call_s"] = per_call(lambda: seed_arch(QUERY), 2000)

    rng = np.random.default_rng(0)
    terms = rng.integers(0, config.max_operand + 1, size=(args.queries, 2))
    queries = [f"{a}+{b}" for a, b in terms.tolist()]
    x_all = adder.codec.encode_queries(queries)
    # Warm both sides first: Keras traces its predict function once per batch shape (the
    # full 8,192 rows and the last, partial batch), and that tracing is not throughput.
    model.predict(x_all[: 2 * 8192 + len(x_all) % 8192], batch_size=8192, verbose=0)
    adder.batch(queries[:10_000])

    def adder_batch():
        answers = adder.batch(queries)
        rows["adder_batch_wrong"] = int((np.array(answers) != terms.sum(axis=1)).sum())

    def onnx_tensors():  # where the time goes: the same chunks through onnxruntime, already encoded
        adder.predict_tensor(x_all)

    timed = {
        "keras_predict_s": lambda: model.predict(x_all, batch_size=8192, verbose=0),
        "adder_batch_s": adder_batch,
        "onnx_tensor_s": onnx_tensors,
    }
    if args.compare:
        other = Adder(args.compare)
        other.batch(queries[:10_000])
        timed["compare_batch_s"] = lambda: other.batch(queries)
        rows["compare_call_s"] = per_call(lambda: other(QUERY), 2000)
        rows["compare_bytes"] = Path(args.compare).stat().st_size
    runs: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(args.throughput_repeats):  # interleaved, so drift in the machine hits all three alike
        for name, fn in timed.items():
            started = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - started)
    rows |= {name: statistics.median(seconds) for name, seconds in runs.items()}
    spread = {name: (len(queries) / max(seconds), len(queries) / min(seconds)) for name, seconds in runs.items()}

    with tempfile.TemporaryDirectory() as folder:
        small, large = Path(folder) / "small.txt", Path(folder) / "large.txt"
        small.write_text("\n".join(queries[:10_000]) + "\n")
        large.write_text("\n".join(queries) + "\n")
        rows["stream_small_s"], rows["stream_small_rss"] = median_process([*adder_command(), "-"], 1, small)
        rows["stream_large_s"], rows["stream_large_rss"] = median_process([*adder_command(), "-"], 1, large)

    # int8: onnxruntime's dynamic quantization of the shipped float32 graph (what
    # `adder-export --quantize int8` writes), judged over the default's whole domain.
    from adder.export.convert import quantize_int8
    from adder.session import MODELS_DIR

    every = [f"{a}+{b}" for a in range(config.max_operand + 1) for b in range(config.max_operand + 1)]
    truth = np.array([a + b for a in range(config.max_operand + 1) for b in range(config.max_operand + 1)])
    with tempfile.TemporaryDirectory() as folder:
        int8_path = Path(folder) / "default.int8.onnx"
        quantize_int8(MODELS_DIR / "default.onnx", int8_path)
        int8 = Adder(int8_path)
        rows["int8_bytes"], rows["fp32_bytes"] = int8_path.stat().st_size, (MODELS_DIR / "default.onnx").stat().st_size
        rows["int8_call_s"] = per_call(lambda: int8(QUERY), 2000)
        rows["fp32_call_s"] = per_call(lambda: adder(QUERY), 2000)
        started = time.perf_counter()
        rows["int8_wrong"] = int((np.array(int8.batch(every)) != truth).sum())
        rows["int8_domain_s"] = time.perf_counter() - started
        started = time.perf_counter()
        rows["fp32_wrong"] = int((np.array(adder.batch(every)) != truth).sum())
        rows["fp32_domain_s"] = time.perf_counter() - started
    int8_better = rows["int8_wrong"] == 0 and rows["int8_call_s"] < rows["fp32_call_s"]
    default_is_int8 = False  # runtime/models/default.onnx is float32

    n = args.queries
    table = [
        (
            'cold start: adder "3+10" / import onnxruntime, numpy',
            f"{cold_s * 1e3:.0f} ms / {floor_s * 1e3:.0f} ms",
            cold_s / floor_s,
            "<= 1.5",
            cold_s / floor_s <= 1.5,
        ),
        (
            'warm query: Keras model(x) / Adder()("3+10")',
            f"{rows['keras_call_s'] * 1e3:.2f} ms / {rows['adder_call_s'] * 1e6:.0f} us",
            rows["keras_call_s"] / rows["adder_call_s"],
            ">= 300",
            rows["keras_call_s"] / rows["adder_call_s"] >= 300,
        ),
        (
            f"throughput, {n:,} queries: Adder.batch / Keras predict (q/s)",
            f"{n / rows['adder_batch_s']:,.0f} / {n / rows['keras_predict_s']:,.0f}",
            rows["keras_predict_s"] / rows["adder_batch_s"],
            ">= 1.5",
            rows["keras_predict_s"] / rows["adder_batch_s"] >= 1.5,
        ),
        (
            f"adder - streaming: peak RSS {n:,} lines / 10,000 lines",
            f"{rows['stream_large_rss'] / 2**20:.0f} MiB / {rows['stream_small_rss'] / 2**20:.0f} MiB",
            rows["stream_large_rss"] / rows["stream_small_rss"],
            "<= 1.2 (flat)",
            rows["stream_large_rss"] / rows["stream_small_rss"] <= 1.2,
        ),
        (
            'peak RSS: adder "3+10" / Keras process',
            f"{cold_rss / 2**20:.0f} MiB / {keras_rss / 2**20:.0f} MiB",
            cold_rss / keras_rss,
            "<= 0.2",
            cold_rss / keras_rss <= 0.2,
        ),
    ]
    if args.seed_arch_onnx:
        ratio = rows["adder_call_s"] / rows["seed_arch_call_s"]
        table.append(
            (
                "warm query: default model / seed architecture (100/50)",
                f"{rows['adder_call_s'] * 1e6:.0f} us / {rows['seed_arch_call_s'] * 1e6:.0f} us",
                ratio,
                "<= 2",
                ratio <= 2,
            )
        )
    table += [
        (
            "int8 model size: float32 / int8 (bytes)",
            f"{rows['fp32_bytes']:,} / {rows['int8_bytes']:,}",
            rows["fp32_bytes"] / rows["int8_bytes"],
            "> 1 (smaller)",
            rows["int8_bytes"] < rows["fp32_bytes"],
        ),
        (
            "int8 warm query: float32 / int8",
            f"{rows['fp32_call_s'] * 1e6:.0f} us / {rows['int8_call_s'] * 1e6:.0f} us",
            rows["fp32_call_s"] / rows["int8_call_s"],
            "reported",
            True,
        ),
        (
            f"int8 batch, all {len(every):,} queries: float32 / int8 (s)",
            f"{rows['fp32_domain_s']:.1f} s / {rows['int8_domain_s']:.1f} s",
            rows["fp32_domain_s"] / rows["int8_domain_s"],
            "reported",
            True,
        ),
        (
            f"int8 exact-match, all {len(every):,} queries: float32 / int8",
            f"{100 * (1 - rows['fp32_wrong'] / len(every)):.4f}% / {100 * (1 - rows['int8_wrong'] / len(every)):.4f}%",
            100 * (1 - rows["int8_wrong"] / len(every)),
            "fp32 unless 100",
            default_is_int8 == int8_better,  # int8 becomes the default only if exact and faster
        ),
    ]
    if args.compare:
        table += [
            (
                f"shipped default / {Path(args.compare).name}: Adder.batch q/s, {n:,} queries",
                f"{n / rows['adder_batch_s']:,.0f} / {n / rows['compare_batch_s']:,.0f}",
                rows["compare_batch_s"] / rows["adder_batch_s"],
                "reported",
                True,
            ),
            (
                f"shipped default / {Path(args.compare).name}: warm query",
                f"{rows['adder_call_s'] * 1e6:.0f} us / {rows['compare_call_s'] * 1e6:.0f} us",
                rows["compare_call_s"] / rows["adder_call_s"],
                "reported",
                True,
            ),
            (
                f"shipped default / {Path(args.compare).name}: file bytes",
                f"{rows['fp32_bytes']:,} / {rows['compare_bytes']:,}",
                rows["compare_bytes"] / rows["fp32_bytes"],
                "reported",
                True,
            ),
        ]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'measure':<62} {'values':>26} {'ratio':>8} {'target':>14}  met")
    for name, values, ratio, target, met in table:
        print(f"{name:<62} {values:>26} {ratio:>8.2f} {target:>14}  {'yes' if met else 'NO'}")
    print(
        f"streamed {n:,} lines in {rows['stream_large_s']:.1f} s; "
        f"Adder.batch wrong answers: {rows['adder_batch_wrong']}; "
        f"onnxruntime alone on encoded tensors: {n / rows['onnx_tensor_s']:,.0f} q/s "
        f"({rows['keras_predict_s'] / rows['onnx_tensor_s']:.2f}x Keras predict)"
    )
    print(
        f"throughput medians of {args.throughput_repeats} interleaved passes; range (q/s): "
        + ", ".join(f"{name.removesuffix('_s')} {low:,.0f}-{high:,.0f}" for name, (low, high) in spread.items())
    )
    if args.json:
        record = {"rows": rows, "throughput_runs_s": runs, "targets_met": all(t[-1] for t in table)}
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
