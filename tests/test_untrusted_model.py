"""A runtime that trusts no model file and no argument: every run's output is checked against
what was asked, files are refused by kind and size before they are read, and every number
the API or a command takes is checked the one way adder.bounds does it."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adder import Adder, ModelError
from adder.bounds import NotANumberError, NumberError, parse_whole_number, real_number, whole_number
from adder.session import MAX_MODEL_BYTES
from tests.conftest import run_adder

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ONNX = REPO / "runtime" / "models" / "default.onnx"


def one_line_error(stderr: bytes) -> str:
    text = stderr.decode()
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in text and len(lines) == 1, text[-2000:]
    return lines[0]


def crafted(tmp_path: Path, name: str, tail) -> Path:
    """default.onnx with ``tail(graph, raw, out)`` appending nodes from its real output (renamed
    ``raw``) to the output it declares, so the declared signature still passes every check."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(DEFAULT_ONNX)
    graph = proto.graph
    out = graph.output[0].name
    for node in graph.node:
        for index, name_out in enumerate(node.output):
            if name_out == out:
                node.output[index] = "raw"
    tail(graph, "raw", out)
    path = tmp_path / name
    onnx.save(proto, path)
    return path


def first_row_only(graph, raw: str, out: str) -> None:
    from onnx import helper, numpy_helper

    graph.initializer.extend(
        numpy_helper.from_array(np.array([value], np.int64), key) for key, value in (("s0", 0), ("e1", 1), ("ax", 0))
    )
    graph.node.append(helper.make_node("Slice", [raw, "s0", "e1", "ax"], [out]))


def times_nan(graph, raw: str, out: str) -> None:
    from onnx import helper, numpy_helper

    graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
    graph.node.append(helper.make_node("Mul", [raw, "nan"], [out]))


@pytest.fixture
def short_model(tmp_path) -> Path:
    return crafted(tmp_path, "short.onnx", first_row_only)


@pytest.fixture
def nan_model(tmp_path) -> Path:
    return crafted(tmp_path, "nan.onnx", times_nan)


QUERIES = [f"{n}+{n}" for n in range(20)]


def test_a_model_returning_fewer_rows_is_a_model_error_never_a_shorter_list(short_model):
    adder = Adder(short_model)
    with pytest.raises(ModelError, match=r"returned float32 \[1, .*for 20 queries"):
        adder.batch(QUERIES)
    with pytest.raises(ModelError, match="for 20 queries"):
        list(adder.results(QUERIES))


def test_adder_with_a_model_returning_fewer_rows_is_one_error_line_and_exit_2(short_model):
    done = run_adder("--model", str(short_model), "-", stdin="\n".join(QUERIES).encode() + b"\n")
    assert done.returncode == 2 and done.stdout == b""
    assert "short.onnx" in one_line_error(done.stderr)
    done = run_adder("--model", str(short_model), *QUERIES)
    assert done.returncode == 2 and done.stdout == b"" and "short.onnx" in one_line_error(done.stderr)


def no_rows(graph, raw: str, out: str) -> None:
    from onnx import helper, numpy_helper

    graph.initializer.extend(
        numpy_helper.from_array(np.array([0], np.int64), key) for key in ("z_start", "z_end", "z_axis")
    )
    graph.node.append(helper.make_node("Slice", [raw, "z_start", "z_end", "z_axis"], [out]))


def test_a_model_returning_no_rows_fails_every_path_and_the_server_will_not_start(tmp_path):
    model = crafted(tmp_path, "none.onnx", no_rows)
    adder = Adder(model)
    for ask in (lambda: adder("1+1"), lambda: adder.batch(["1+1"]), lambda: adder.batch(QUERIES)):
        with pytest.raises(ModelError, match="none.onnx"):
            ask()
    done = run_adder("serve", "--port", "0", "--model", str(model))
    assert done.returncode == 2 and "none.onnx" in one_line_error(done.stderr)


def test_a_model_writing_nan_is_a_model_error_not_a_zero(nan_model):
    adder = Adder(nan_model)
    for ask in (
        lambda: adder("3+10"),
        lambda: adder.batch(QUERIES),
        lambda: adder.predict_tensor(adder.codec.encode_queries(["1+1", "2+2"])),
    ):
        with pytest.raises(ModelError, match="not a finite number"):
            ask()
    done = run_adder("--model", str(nan_model), "3+10")
    assert done.returncode == 2 and done.stdout == b"" and "not a finite number" in one_line_error(done.stderr)


# Run in a fresh process of its own: RUSAGE_CHILDREN is the largest child a process has ever
# had, and the test process's earlier children (training runs) would be counted here.
MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True)
sys.stdout.buffer.write(done.stderr)
sys.stderr.write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}\\n")
sys.exit(done.returncode)
"""


def peak_child_rss_mb(command: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``command``; its result (its stderr as ``stderr``) and its peak memory (MB)."""
    run = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, timeout=120)
    done = subprocess.CompletedProcess(command, run.returncode, b"", run.stdout)
    return done, float(run.stderr.decode().strip().splitlines()[-1])


@pytest.mark.parametrize(
    "size, message",
    [
        (MAX_MODEL_BYTES + 1, "over the 2,147,483,647 bytes an ONNX model file may be"),
        (1_500_000_000, "not a readable ONNX model"),  # under the limit, but no protobuf: not read whole
    ],
)
def test_a_huge_file_is_refused_without_being_read(tmp_path, size, message):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as file:
        file.truncate(size)  # sparse: no disk, but reading it would take its size in memory
    done, peak = peak_child_rss_mb([sys.executable, "-m", "adder", "--model", str(path), "1+1"])
    assert done.returncode == 2 and message in one_line_error(done.stderr)
    assert peak < 600, f"a child peaked at {peak:.0f} MB"


def test_every_path_problem_is_a_model_error_naming_the_file(tmp_path):
    fifo = tmp_path / "fifo.onnx"
    os.mkfifo(fifo)
    plain = tmp_path / "plain.onnx"
    shutil.copy(DEFAULT_ONNX, plain)
    cases = {
        str(tmp_path / ("x" * 300 + ".onnx")): "cannot be opened (File name too long)",
        str(fifo): "is not a regular file",
        "/dev/null": "is not a regular file",
        str(tmp_path): "is a directory",
        str(plain / "inside.onnx"): "cannot be opened (Not a directory)",
        str(tmp_path / "nul\0.onnx"): "not a usable file name",
    }
    for path, message in cases.items():
        with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Adder(path)
        if "\0" not in path:  # no command line can carry a NUL byte
            done = run_adder("--model", path, "1+1")
            assert done.returncode == 2 and message in one_line_error(done.stderr)


def test_a_graph_beside_a_model_past_a_sane_size_is_not_read(tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_ONNX, model)
    with open(tmp_path / "m.single.onnx", "wb") as file:
        file.truncate(200 * 2**20)  # far past a few times the model's size
    os.mkfifo(tmp_path / "m.batch.onnx")  # and a FIFO that would block a plain read
    adder = Adder(model)
    assert adder.single_path == model and adder("3+10") == 13 and adder.batch(["3+10"] * 9) == [13] * 9
    assert adder.batch_path == model


@pytest.mark.parametrize("threads", [0, -1, 2.5, "4", True, [4], 10**6])
def test_adder_threads_must_be_a_positive_whole_number_up_to_a_bound(threads):
    with pytest.raises(ValueError, match="threads must be"):
        Adder(threads=threads)


def test_adder_threads_within_bounds_answers():
    assert Adder(threads=2).batch(QUERIES) == [2 * n for n in range(20)]


def test_a_model_that_is_no_name_or_path_is_a_type_error():
    with pytest.raises(TypeError, match="model must be a shipped model's name or a path"):
        Adder(42)  # type: ignore[arg-type]


def test_one_number_check_names_the_value_its_range_and_what_was_given():
    assert whole_number(5, "n", 1, 10) == 5 and whole_number(np.int64(3), "n", 1) == 3
    for value, kind, message in [
        (0, NumberError, "n must be at least 1, got 0"),
        (11, NumberError, "n must be at most 10, got 11"),
        (True, NotANumberError, "n must be a whole number from 1 to 10, got True"),
        (2.0, NotANumberError, "got 2.0"),
        ("5", NotANumberError, "got '5'"),
    ]:
        with pytest.raises(kind, match=message):
            whole_number(value, "n", 1, 10)
    assert issubclass(NotANumberError, TypeError) and issubclass(NumberError, ValueError)
    assert parse_whole_number(" 8000 ", "--port", 0, 65535) == 8000
    for text in ["", "8e3", "٨٠٠٠", "0x50", "1" * 40, "-1"]:
        with pytest.raises(NumberError, match="--port must be"):
            parse_whole_number(text, "--port", 0, 65535)
    assert real_number(0.5, "s", 0, 1) == 0.5
    for value in [float("nan"), float("inf"), 2, 10**400, "0.5"]:
        with pytest.raises(NumberError):
            real_number(value, "s", 0, 1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus"], "No such option: --bogus"),
        (["--model"], "requires an argument"),
        (["serve", "--port", "abc"], "--port must be a whole number from 0 to 65,535, got 'abc'"),
        (["serve", "--port", "70000"], "--port must be at most 65,535"),
        (["serve", "--port", "-1"], "--port must be at least 0"),
        (["serve", "--host", "a b"], "--host must be an address or host name"),
        (["serve", "--allow-host", "x\ny"], "--allow-host must be a host name"),
        (["serve", "--allow-origin", "evil"], "--allow-origin must be an origin"),
        (["serve", "--bogus"], "No such option: --bogus"),
    ],
)
def test_every_usage_mistake_is_one_error_line_and_exit_2(args, message):
    done = run_adder(*args)
    assert done.returncode == 2 and message in one_line_error(done.stderr)
