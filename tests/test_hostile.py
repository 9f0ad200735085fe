"""Hostile and careless use: no hang, no traceback, nothing dropped, bounded memory.

Each test reproduces a defect found by trying the tools as such a user would, and
keeps it fixed. The bad-query corpus for the parser lives in test_grammar.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest

from adder import Adder, ModelError
from adder.config import ConfigError, ModelConfig
from adder.eval.files import Busy, WriteError, atomic_path, check_writable, exclusive, remove_leftovers
from tests.conftest import needs_training, run_adder

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ONNX = REPO / "runtime" / "models" / "default.onnx"
TRAIN = [sys.executable, "-c", "from adder.commands.train import main; main()"]


def one_line_error(stderr: str | bytes) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in text and len(lines) == 1, text[-2000:]
    return lines[0]


# 1. fork


def test_a_forked_child_answers_batches_after_the_parent_used_its_pool():
    code = textwrap.dedent(
        """
        import os
        from adder import Adder
        a = Adder()
        assert a.batch(['1+1'] * 5000) == [2] * 5000
        pid = os.fork()
        if pid == 0:
            os._exit(0 if a.batch(['1+1'] * 5000) == [2] * 5000 and a('3+10') == 13 else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "0", result.stderr


# 2. crafted model configs


CRAFTED = [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"max_operand": ' + "9" * 5000 + "}", "not valid JSON"),
    ('{"min_terms": 2.0, "max_terms": 2}', "min_terms must be a whole number"),
    ('{"operators": ["+"]}', "operators must be text"),
    ('{"max_terms": 1000000000}', "max_terms must be at most"),
    ('{"reverse_input": "false"}', "reverse_input must be true or false"),
    ('{"brackets": 1}', "brackets must be true or false"),
    ('{"max_operand": true}', "max_operand must be a whole number"),
    ('{"training": []}', "training must be a JSON object"),
    ('"x"' + " " * 5_000_000, "characters long"),
]


@pytest.mark.parametrize("text, message", CRAFTED, ids=range(len(CRAFTED)))
def test_a_crafted_config_is_a_config_error(text, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_json(text)


@pytest.mark.parametrize("text, message", CRAFTED[:6], ids=range(6))
def test_a_model_with_a_crafted_config_is_one_line_and_exit_2(tmp_path, text, message):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(DEFAULT_ONNX)
    for prop in proto.metadata_props:
        if prop.key == "adder.config":
            prop.value = text
    crafted = tmp_path / "crafted.onnx"
    onnx.save(proto, crafted)
    with pytest.raises(ModelError, match=message):
        Adder(crafted)
    result = run_adder("--model", str(crafted), "3+10")
    assert result.returncode == 2 and message in one_line_error(result.stderr)


# 3. one very long line


def test_a_very_long_line_is_refused_with_flat_memory():
    """150 MB on one line, then a good query: one error, the answer still on its own line, and
    the process never holds the line (it peaked at 648 MB for 200 MB before)."""
    wrapper = textwrap.dedent(
        f"""
        import resource, subprocess, sys
        command = "(head -c 150000000 /dev/zero | tr '\\\\0' 1; printf '\\\\n3+10\\\\n') | {sys.executable} -m adder -"
        result = subprocess.run(command, shell=True, capture_output=True)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(result.returncode, repr(result.stdout.decode()), round(peak_mb), result.stderr.decode().strip())
        """
    )
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=300).stdout
    code, stdout, peak_mb, stderr = out.split(" ", 3)
    assert (code, stdout) == ("1", repr("\n13\n"))
    assert stderr.strip() == "error: line 1: query is 150000000 characters long; at most 256 are accepted"
    assert int(peak_mb) < 250, f"peak RSS {peak_mb} MB"


# 4. nothing silently dropped


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda a: a.batch(["1+1"], chunk_size=0), ValueError, "chunk_size must be at least 1"),
        (lambda a: a.batch(["1+1"], chunk_size=-1), ValueError, "chunk_size must be at least 1"),
        (lambda a: a.batch(["1+1"], chunk_size=2.5), TypeError, "chunk_size must be a whole number"),
        (lambda a: a.batch("3+10"), TypeError, "not one str"),
        (lambda a: a.batch(b"3+10"), TypeError, "not one bytes"),
        (lambda a: list(a.results("3+10")), TypeError, "not one str"),
        (lambda a: a.results(["1+1"], chunk_size=0), ValueError, "chunk_size"),
        (lambda a: a.batch(42), TypeError, "iterable of queries"),
    ],
)
def test_batch_mistakes_raise_at_the_call_never_a_shorter_answer_list(call, error, message):
    with pytest.raises(error, match=message):
        call(Adder())


def test_every_query_gets_an_answer_whatever_the_chunk_size():
    adder = Adder()
    queries = [f"{i}+{i}" for i in range(1000)]
    for chunk_size in (1, 7, 1024, 5000):
        assert adder.batch(queries, chunk_size=chunk_size) == [2 * i for i in range(1000)]


# 5. write failures: found before the work, one line, old file kept


def test_an_unwritable_folder_is_found_before_any_work(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(WriteError, match=f"cannot write to {tmp_path}: Permission denied"):
        check_writable(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_by_train_at_once(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    result = subprocess.run([*TRAIN, "--out", str(folder / "m.keras")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "cannot write to" in one_line_error(result.stderr)


def test_a_full_disk_while_replacing_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "c.onnx"
    target.write_bytes(b"old")

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("adder.eval.files.os.replace", full)
    with pytest.raises(WriteError, match=f"cannot write {target}: No space left on device"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["c.onnx"]


@needs_training
@pytest.mark.slow
def test_export_and_train_turn_a_write_failure_into_one_line(tmp_path, tiny_model):
    """A file-size limit stands in for a full disk: writes past it fail with EFBIG."""
    keras_path, _ = tiny_model
    limit = textwrap.dedent(
        """
        import resource, signal, subprocess, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
        sys.exit(subprocess.run(sys.argv[2:]).returncode)
        """
    )
    target = tmp_path / "c.onnx"
    target.write_bytes(b"old")
    # The ONNX file is written after Keras has unpacked the model; a full disk by then:
    full_disk = textwrap.dedent(
        f"""
        import os, sys
        import adder.eval.files as files
        def full(*args):
            raise OSError(28, "No space left on device")
        files.os.replace = full
        sys.argv = ["adder-export", {str(keras_path)!r}, "-o", {str(target)!r}]
        from adder.commands.export import main
        main()
        """
    )
    result = subprocess.run([sys.executable, "-c", full_disk], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert f"cannot write {target}: No space left on device" in one_line_error(result.stderr)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["c.onnx"]
    out = tmp_path / "m.keras"
    train = [*TRAIN, "--largest", "9", "--epochs", "2", "--samples", "256", "--out", str(out)]
    result = subprocess.run([sys.executable, "-c", limit, "20000", *train], capture_output=True, text=True)
    assert result.returncode == 2 and "cannot write" in one_line_error(result.stderr)


@needs_training
@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda ckpt: (ckpt / "state.json").write_text("{garbage"), "state.json is unreadable"),
        (lambda ckpt: (ckpt / "last.keras").write_bytes(b"not a zip"), "last.keras could not be loaded"),
        (lambda ckpt: (ckpt / "replay.json").write_text('{"queries": ["5+5+5"]}'), "replay pool"),
    ],
    ids=["state", "model", "pool"],
)
def test_a_damaged_checkpoint_says_what_is_wrong_and_how_to_start_afresh(tmp_path, damage, message):
    out = tmp_path / "m.keras"
    args = [
        "--largest",
        "9",
        "--epochs",
        "3",
        "--samples",
        "300",
        "--arch",
        "8/8",
        "--out",
        str(out),
    ]
    process = subprocess.Popen([*TRAIN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "m.keras.ckpt" / "state.json"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if state.exists() and (tmp_path / "m.keras.ckpt" / "replay.json").exists():
            process.kill()
            break
        time.sleep(0.01)
    process.wait()
    if process.returncode == 0:
        pytest.skip("training finished before it could be interrupted")
    damage(tmp_path / "m.keras.ckpt")
    result = subprocess.run([*TRAIN, *args], capture_output=True, text=True, timeout=300)
    line = one_line_error(result.stderr)
    assert result.returncode == 2 and message in line and "to start afresh" in line


# 6. a reader that goes away


def test_a_closed_pipe_with_queries_as_arguments_is_quiet():
    queries = [f"{i % 1000}+1" for i in range(30000)]  # more output than a pipe buffers
    script = f'{sys.executable} -m adder "$@" | head -1'
    result = subprocess.run(["sh", "-c", script, "sh", *queries], capture_output=True, text=True, timeout=120)
    assert result.stdout == "1\n" and result.stderr == ""


# 7. one run per output


def test_a_second_run_on_the_same_output_is_refused_and_a_dead_runs_lock_is_not(tmp_path):
    target = tmp_path / "c.keras"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from adder.eval.files import exclusive\n"
            f"with exclusive(__import__('pathlib').Path({str(target)!r}), 'adder-train'):\n"
            "    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(Busy, match=rf"c.keras is being written by adder-train \(pid {holder.pid}, started"):
        with exclusive(target, "adder-train"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with exclusive(target, "adder-train"):  # the kernel dropped the dead run's lock
        pass


@needs_training
def test_adder_train_refuses_an_output_another_run_is_writing(tmp_path):
    target = tmp_path / "c.keras"
    with exclusive(target, "adder-train"):
        result = subprocess.run(
            [*TRAIN, "--largest", "9", "--epochs", "1", "--out", str(target)],
            capture_output=True,
            text=True,
        )
    assert result.returncode == 2 and f"pid {os.getpid()}" in one_line_error(result.stderr)
    assert not (tmp_path / "c.keras.ckpt").exists()


# 8. leftovers of a killed writer


def test_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "c.onnx"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        stale = tmp_path / f".c.onnx.{dead.pid}.x1.tmp.onnx"
        stale_dir = tmp_path / f".c.onnx.{dead.pid}.x2.tmp"
        live = tmp_path / f".c.onnx.{sleeper.pid}.x3.tmp.onnx"
        other = tmp_path / f".d.onnx.{dead.pid}.x4.tmp.onnx"
        for path in (stale, live, other):
            path.write_bytes(b"partial")
        stale_dir.mkdir()
        (stale_dir / "float32.onnx").write_bytes(b"partial")
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"model")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.onnx", live.name, other.name])
        assert remove_leftovers(target) == []
    finally:
        sleeper.kill()


# 9. not a file


def test_a_fifo_as_model_is_not_called_a_directory(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    result = run_adder("--model", str(fifo), "3+10")
    assert result.returncode == 2 and "not a regular file" in one_line_error(result.stderr)


def test_a_directory_as_model_is_called_one(tmp_path):
    result = run_adder("--model", str(tmp_path), "3+10")
    assert result.returncode == 2 and "is a directory" in one_line_error(result.stderr)


# and a few more


def test_json_output_of_an_overlong_line_stays_one_valid_object_per_line():
    result = run_adder("--json", "-", stdin=b"1" * 5000 + b"\n3+10\n")
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [("error" in r, r.get("answer")) for r in rows] == [(True, None), (False, 13)]


def test_a_line_of_invalid_utf8_bytes_longer_than_the_limit_is_one_error():
    result = run_adder("-", stdin=b"\xff" * 3000 + b"\n1+1\n")
    assert result.stdout.decode() == "\n2\n" and result.returncode == 1


# 10. `adder -` as a coprocess: an answer for every line read, as soon as the input is idle


def read_line(fd: int, timeout: float = 60) -> str:
    """One line from ``fd``, without its ending; fails the test instead of waiting forever."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            pytest.fail(f"no answer within {timeout} s (read so far: {data!r})")
        piece = os.read(fd, 1)
        if not piece:
            pytest.fail(f"output ended before a whole line (read so far: {data!r})")
        data += piece
    return data.decode().rstrip("\r\n")


def test_adder_dash_answers_each_line_before_the_next_is_written_through_a_pipe():
    process = subprocess.Popen(
        [sys.executable, "-m", "adder", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        for i in range(20):
            process.stdin.write(f"{i}+{i * 7}\n".encode())
            process.stdin.flush()
            assert read_line(process.stdout.fileno()) == str(8 * i)
        process.stdin.write(b"1000+1\n")  # a bad line is answered (empty) at once too
        process.stdin.flush()
        assert read_line(process.stdout.fileno()) == ""
        process.stdin.close()
        assert process.wait(timeout=60) == 1
        assert process.stderr.read().decode().startswith("error: line 21: ")
    finally:
        process.kill()
        process.wait()


def test_adder_dash_answers_each_line_typed_at_a_terminal():
    master, slave = pty.openpty()
    attributes = termios.tcgetattr(slave)
    attributes[3] &= ~termios.ECHO  # what a person types is not echoed back into the output read here
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    process = subprocess.Popen([sys.executable, "-m", "adder", "-"], stdin=slave, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        for i in range(10):
            os.write(master, f"{i * 11}+{i}\n".encode())
            assert read_line(master) == str(12 * i)
        os.write(master, b"\x04")  # Ctrl-D: the end of input
        assert process.wait(timeout=60) == 0, process.stderr.read()
    finally:
        process.kill()
        process.wait()
        os.close(master)


def test_a_line_without_its_newline_waits_for_it():
    process = subprocess.Popen(
        [sys.executable, "-m", "adder", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        process.stdin.write(b"1+1\n12")
        process.stdin.flush()
        assert read_line(process.stdout.fileno()) == "2"
        time.sleep(0.3)
        process.stdin.write(b"3+4\n")  # the line is 123+4, not 12
        process.stdin.flush()
        assert read_line(process.stdout.fileno()) == "127"
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("count", [3, 5000])
def test_sigterm_answers_every_line_already_sent_then_exits(count):
    process = subprocess.Popen(
        [sys.executable, "-m", "adder", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        process.stdin.write(b"0+0\n")
        process.stdin.flush()
        assert read_line(process.stdout.fileno()) == "0"  # started, and reading
        queries = [f"{i % 1000}+{i % 7}" for i in range(count)]
        process.stdin.write("".join(q + "\n" for q in queries).encode() + b"5+")  # the last line cut off
        process.stdin.flush()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 143  # its input still open: ended by the signal alone
        out, err = process.stdout.read(), process.stderr.read()
    finally:
        process.kill()
        process.wait()
    assert "Traceback" not in err.decode()
    assert out.decode().splitlines() == [str(i % 1000 + i % 7) for i in range(count)]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the signal mask from /proc")
def test_sigterm_while_the_model_loads_still_answers_the_lines_sent():
    process = subprocess.Popen(
        [sys.executable, "-m", "adder", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        process.stdin.write(b"1+1\n2+2\n3+3\n")
        process.stdin.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until SIGTERM is held back: the command has started
            status = Path(f"/proc/{process.pid}/status").read_text()
            blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
            if blocked == 1 << (signal.SIGTERM - 1):  # not every signal, as between fork and exec
                break
            time.sleep(0.001)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 143
        assert process.stdout.read().decode() == "2\n4\n6\n"
    finally:
        process.kill()
        process.wait()


def test_answer_chunks_answers_every_chunk_in_flight_before_asking_for_more_when_input_is_idle():
    adder = Adder(threads=4)
    asked = []

    def chunks():
        for i in range(5):
            asked.append(i)
            yield [f"{i}+1"] * 300

    answered = [(len(asked), results[0]) for _, results in adder.answer_chunks(chunks(), idle=lambda: True)]
    assert answered == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]  # each answered before the next was asked for
    asked.clear()
    next(adder.answer_chunks(chunks()))  # input never idle: several chunks in flight on the pool
    assert len(asked) == 5


def test_a_large_piped_input_is_still_answered_in_full_chunks():
    """Lines that are all waiting go to the model a chunk at a time, not one by one."""
    from adder.lines import StdinLines

    read, write = os.pipe()
    os.write(write, b"1+1\n" * 3000)
    os.close(write)
    lines = StdinLines(read)
    sizes = [len(chunk) for chunk in lines.chunks(1024)]
    os.close(read)
    assert sizes == [1024, 1024, 952]


def test_an_idle_pipe_ends_a_chunk_early():
    from adder.lines import StdinLines

    read, write = os.pipe()
    os.write(write, b"1+1\n2+2\n3+")
    lines = StdinLines(read)
    chunks = lines.chunks(1024)
    assert next(chunks) == ["1+1", "2+2"]  # returned although the chunk is not full: nothing more is waiting
    os.write(write, b"3\n")
    os.close(write)
    assert list(chunks) == [["3+3"]]
    os.close(read)


# 11. one decoding, exact at every answer width the validator accepts


def constant_model(config: ModelConfig, path: Path, digit: int = 9) -> Path:
    """A hand-made model of ``config`` that writes ``digit`` at every answer step, whatever the query."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from adder.config import BATCH_DIM, METADATA_KEY

    steps, vocab = config.output_length, len(config.alphabet)
    answer = np.zeros((1, steps, vocab), np.float32)
    answer[0, :, digit] = 1
    nodes = [
        helper.make_node("ReduceSum", ["query", "axes"], ["total"], keepdims=1),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),  # the batch dimension, nothing else
        helper.make_node("Add", ["nothing", "answer"], ["probs"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        numpy_helper.from_array(answer, "answer"),
    ]
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info("query", TensorProto.FLOAT, [BATCH_DIM, config.input_length, vocab])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [BATCH_DIM, steps, vocab])],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    helper.set_model_props(proto, {METADATA_KEY: config.to_json()})
    onnx.save(proto, path)
    return path


def test_an_answer_wider_than_int64_is_the_same_on_every_path(tmp_path):
    config = ModelConfig(min_terms=3, max_terms=3, max_operand=9_999_999, operators="*-")  # 21-digit answers
    path = constant_model(config, tmp_path / "big.onnx")
    expected = int("9" * config.output_length) + config.smallest_answer  # the answer as the model writes it
    adder = Adder(path)
    assert expected > 2**63 and adder("1*2*3") == expected
    assert adder.batch(["1*2*3"] * 20) == [expected] * 20
    assert run_adder("--model", str(path), "1*2*3").stdout.decode() == f"{expected}\n"
    piped = run_adder("--model", str(path), "-", stdin=b"1*2*3\n" * 20)
    assert piped.stdout.decode() == f"{expected}\n" * 20


def test_decoding_agrees_with_itself_and_with_python_at_every_width():
    import numpy as np

    from adder.codec import Codec
    from adder.config import MAX_OPERAND, MAX_TERMS

    configs = [
        ModelConfig(),
        ModelConfig(max_terms=2, max_operand=999_999_999, operators="*"),  # 18 digits: the int64 path's widest
        ModelConfig(max_terms=3, max_operand=9_999_999, operators="*-"),
        ModelConfig(max_terms=MAX_TERMS, max_operand=MAX_OPERAND, operators="+-*"),  # the widest accepted
    ]
    rng = np.random.default_rng(0)
    for config in configs:
        codec = Codec(config)
        indices = rng.integers(0, 10, size=(50, config.output_length))
        values, valid = codec.decode_answers(indices)
        written = ["".join(map(str, row[::-1] if config.reverse_output else row)) for row in indices.tolist()]
        assert valid.all() and values.tolist() == [int(text) + config.smallest_answer for text in written]
        assert [codec.decode_one(row) for row in indices] == values.tolist()
        assert (codec.encode_answers(values.tolist()) == indices).all()


def test_values_of_large_products_do_not_wrap():
    import numpy as np

    from adder.grammar import Expression, shape_values, values_of

    terms = np.array([[9_999_999, 9_999_999, 9_999_999], [2, 3, 4]])
    assert shape_values((3, ("*", "-"), ()), terms).tolist() == [9_999_999**2 - 9_999_999, 2]
    expressions = [Expression((999_999_999, 999_999_999), ("*",), ()), Expression((1, 2), ("+",), ())]
    assert values_of(expressions).tolist() == [999_999_999**2, 3]


@needs_training
@pytest.mark.slow
def test_training_a_domain_with_answers_wider_than_int64_ends_without_a_traceback(tmp_path):
    out = tmp_path / "big.keras"
    args = [
        "--terms",
        "3",
        "--largest",
        "9999999",
        "--ops",
        "*-",
        "--epochs",
        "1",
        "--samples",
        "64",
    ]
    args += ["--batch-size", "32", "--arch", "8/8", "--out", str(out)]
    result = subprocess.run([*TRAIN, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert ModelConfig.from_json((tmp_path / "big.json").read_text()).output_length == 21


# 12. archives read with bounds: a small zip that inflates to gigabytes is refused while reading

PLOT = [sys.executable, "-c", "from adder.commands.plot import main; main()"]
EVAL = [sys.executable, "-c", "from adder.commands.evaluate import main; main()"]
EXPORT = [sys.executable, "-c", "from adder.commands.export import main; main()"]


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """A ~300 kB .keras whose adder.json inflates to 300 MB."""
    import zipfile

    path = tmp_path_factory.mktemp("bomb") / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("adder.json", "w") as member:
        block = b" " * (1 << 20)
        for _ in range(300):
            member.write(block)
    return path


def peak_run(command: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``command`` in a child of a fresh process: (its result, its peak RSS in MB)."""
    wrapper = textwrap.dedent(
        """
        import json, resource, subprocess, sys
        result = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        print(json.dumps([result.returncode, result.stderr, peak]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, json.dumps(command)], capture_output=True, text=True, timeout=600
    )
    code, stderr, peak = json.loads(out.stdout)
    return subprocess.CompletedProcess(command, code, "", stderr), peak


@pytest.mark.parametrize("command", [PLOT, EVAL, EXPORT], ids=["adder-plot", "adder-eval", "adder-export"])
def test_an_archive_whose_config_inflates_to_300_mb_is_refused_with_flat_memory(zip_bomb, command):
    result, peak_mb = peak_run([*command, str(zip_bomb)])
    assert result.returncode == 2
    assert "adder.json is larger than 4,000,000 bytes" in one_line_error(result.stderr)
    assert peak_mb < 200, f"peak RSS {peak_mb} MB"


@needs_training
def test_init_from_an_archive_that_inflates_is_refused_in_one_line(zip_bomb, tmp_path):
    args = [
        "--largest",
        "9",
        "--epochs",
        "1",
        "--init",
        str(zip_bomb),
        "--out",
        str(tmp_path / "m.keras"),
    ]
    result = subprocess.run([*TRAIN, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "adder.json is larger than" in one_line_error(result.stderr)


def test_an_archive_member_past_its_size_is_refused_before_keras_unpacks_it(tmp_path):
    import zipfile

    from adder.train.archive import ArchiveError, check_archive_sizes

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("adder.json", ModelConfig().to_json())
        archive.writestr("config.json", b" " * 5_000_000)
    with pytest.raises(ArchiveError, match="'config.json' inflates to 5,000,000 bytes"):
        check_archive_sizes(path)


@pytest.mark.parametrize(
    "member, message",
    [(b"\xff\xfe{}", "is not UTF-8 text"), (b'{"max_operand": "x"}', "max_operand must be a whole number")],
)
def test_a_damaged_config_member_is_one_line_from_adder_plot(tmp_path, member, message):
    import zipfile

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("adder.json", member)
    result = subprocess.run([*PLOT, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in one_line_error(result.stderr)


# 13. every option and every field a command reads, checked before any work


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "4294967296"], "seed must be at most 4,294,967,295"),
        (["--terms", "2-3", "--term-mix", "1e308:1e308"], "term_mix takes non-negative weights like '1:9'"),
        (["--terms", "2-3", "--term-mix", "1" + "0" * 400 + ":1"], "term_mix weights must be finite"),
        (["--learning-rate", "inf"], "--learning-rate takes a number"),
        (["--learning-rate", "1e999"], "--learning-rate takes a finite number"),
        (["--samples", "1000000000000"], "samples must be at most"),
        (["--check-sample", "100000000000000000000"], "check_sample must be at most"),
    ],
    ids=["seed", "term-mix", "term-mix-huge", "learning-rate", "learning-rate-huge", "samples", "check-sample"],
)
def test_adder_train_refuses_option_values_past_their_limits_in_one_line(tmp_path, args, message):
    result = subprocess.run(
        [*TRAIN, *args, "--out", str(tmp_path / "m.keras")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and message in one_line_error(result.stderr)
    assert list(tmp_path.iterdir()) == []


RECORD = {"history": [{"epoch": 1, "loss": 1.5, "probe_exact_match": 0.2}], "evaluation": {"wrong": 0, "total": 9}}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(history="epochs"), "history must be a list of epochs, got str"),
        (lambda r: r.update(history={"epoch": 1}), "history must be a list of epochs, got dict"),
        (lambda r: r["history"].append(7), "history entry 2 must be an object, got int"),
        (lambda r: r["history"].append({"loss": 1.0, "probe_exact_match": 1.0}), "history entry 2 has no epoch"),
        (lambda r: r["history"][0].update(epoch="1"), "epoch must be a number, got '1'"),
        (lambda r: r["history"][0].update(loss=None), "loss must be a number, got None"),
        (lambda r: r["history"][0].pop("probe_exact_match"), "has loss but no probe_exact_match"),
        (lambda r: r["history"].append({"epoch": 2, "full_check_wrong": "3"}), "full_check_wrong must be a number"),
        (lambda r: r["history"].append({"epoch": 2, "sample_check_wrong": 3}), "but no sample_check_total"),
        (lambda r: r["evaluation"].update(wrong=[]), "evaluation: wrong must be a number"),
        (lambda r: r["history"][0].update(epoch=1e308), "epoch must be a whole number from 0 to 1,000,000,000"),
        (lambda r: r["history"][0].update(probe_exact_match=-1e308), "probe_exact_match must be a number from 0 to 1"),
        (lambda r: r["history"].append({"epoch": 2, "replay_pool": 2.5}), "replay_pool must be a whole number"),
    ],
)
def test_adder_plot_refuses_a_hand_edited_record_in_one_line(tmp_path, change, message):
    pytest.importorskip("matplotlib")
    record = json.loads(json.dumps(RECORD))
    change(record)
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"max_operand": 9, "training": record}))
    result = subprocess.run([*PLOT, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in one_line_error(result.stderr)
    assert not (tmp_path / "m.png").exists()


def test_adder_plot_checks_its_output_before_reading(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"max_operand": 9, "training": RECORD}))
    for out, message in [(tmp_path, "is a folder"), (tmp_path / "m.txt", "must end in .png")]:
        result = subprocess.run([*PLOT, str(path), "--out", str(out)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in one_line_error(result.stderr)


@pytest.mark.parametrize(
    "target, message",
    [("folder", "is a folder; give a file name"), ("missing/figures.json", "--json folder")],
)
def test_adder_eval_checks_its_json_target_before_evaluating(tmp_path, target, message):
    (tmp_path / "folder").mkdir()
    command = [*EVAL, str(DEFAULT_ONNX), "--json", str(tmp_path / target), "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in one_line_error(result.stderr)
    assert result.stdout == ""  # refused before any query was evaluated


@pytest.mark.parametrize(
    "command",
    [
        lambda name: [sys.executable, "-m", "adder", "--model", name, "3+10"],
        lambda name: [*EVAL, name],
        lambda name: [*PLOT, name],
        lambda name: [*EXPORT, name],
    ],
    ids=["adder", "adder-eval", "adder-plot", "adder-export"],
)
def test_a_path_with_control_characters_is_escaped_in_the_error(tmp_path, command):
    name = str(tmp_path / "evil\n\x1b[2Jname.keras")
    result = subprocess.run(command(name), capture_output=True, text=True, timeout=120)
    line = one_line_error(result.stderr)
    assert result.returncode == 2 and "\x1b" not in result.stderr and "evil\\n\\x1b[2Jname" in line


def test_an_extra_named_in_a_message_installs_what_it_promises(monkeypatch, capsys):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    import typer

    from adder.commands.common import require_training_stack
    from adder.train import device

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {extra: {re.split(r"[<>=\[ ]", spec)[0] for spec in specs} for extra, specs in extras.items()}
    for backend, extra in device.BACKEND_EXTRA.items():
        assert {"keras", device.BACKEND_PACKAGE[backend]} <= names[extra], (backend, extra)
    assert {"tf2onnx", "onnx", "tensorflow"} <= names["train"]  # adder-export's message names the train extra
    assert "matplotlib" in names["train"] and "matplotlib" in names["jax"]  # adder-plot's names both
    monkeypatch.setattr(device, "installed", lambda package: package != "torch")
    with pytest.raises(typer.Exit):
        require_training_stack("torch")
    message = capsys.readouterr().err
    assert "pip install torch" in message and ".[" not in message


# 14. files replaced under a running Adder


def test_a_running_adder_answers_with_the_model_it_loaded_when_its_files_are_replaced(tmp_path):
    for name in ("default.onnx", "default.single.onnx", "default.batch.onnx"):
        (tmp_path / name).write_bytes((DEFAULT_ONNX.parent / name).read_bytes())
    adder = Adder(tmp_path / "default.onnx")
    assert adder("3+10") == 13
    for name in ("default.onnx", "default.single.onnx", "default.batch.onnx"):
        (tmp_path / name).write_bytes(b"replaced by something that is no model")
    assert adder.batch(["50+11"] * 64) == [61] * 64  # the batch graph is opened only now
    assert adder.batch_path == tmp_path / "default.batch.onnx"
    for name in ("default.onnx", "default.single.onnx", "default.batch.onnx"):
        (tmp_path / name).unlink()
    assert adder("3+10") == 13 and list(adder.results(["1+1"] * 3000)) == [2] * 3000


@needs_training
@pytest.mark.slow
def test_init_from_a_model_whose_record_was_edited_by_hand_reads_its_layers_off_the_model(tmp_path, tiny_model):
    import zipfile

    keras_path, _ = tiny_model
    edited = tmp_path / "edited.keras"
    with zipfile.ZipFile(keras_path) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "adder.json":
                config = json.loads(data)
                config["training"].update(layers={"encoder": "wide", "decoder": [0]}, arch=["x"])
                data = json.dumps(config).encode()
            target.writestr(item, data)
    out = tmp_path / "m.keras"
    args = [
        "--largest",
        "9",
        "--epochs",
        "1",
        "--samples",
        "64",
        "--init",
        str(edited),
    ]
    result = subprocess.run([*TRAIN, *args, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    layers = json.loads(out.with_suffix(".json").read_text())["training"]["layers"]
    assert layers["encoder"] and all(isinstance(n, int) and n > 0 for n in layers["encoder"] + layers["decoder"])


# 15. standard streams that are closed or full


@pytest.mark.parametrize(
    "shell, message",
    [
        ('"$0" -m adder 1+1 > /dev/full', "error: cannot write the answers: No space left on device"),
        ('echo 1+1 | "$0" -m adder - > /dev/full', "error: cannot write the answers: No space left on device"),
        ('"$0" -m adder --info > /dev/full', "error: cannot write: No space left on device"),
        ('"$0" -m adder 1+1 >&-', "error: standard output is closed"),
        ('"$0" -m adder - <&-', "error: standard input is closed"),
    ],
    ids=["full", "full-stdin", "full-info", "stdout-closed", "stdin-closed"],
)
def test_a_closed_or_full_standard_stream_is_one_line_and_exit_2(shell, message):
    if shell.endswith("/dev/full") and not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    result = subprocess.run(["sh", "-c", shell, sys.executable], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and one_line_error(result.stderr).startswith(message)
