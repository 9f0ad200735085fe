"""Two training processes on 127.0.0.1 with JAX's distributed runtime (CPU collectives, gloo)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import time
import zipfile

import numpy as np
import pytest

from tests.test_backend import HAS_JAX, TRAIN, env_without_backend

needs_jax = pytest.mark.skipif(not HAS_JAX, reason="needs the jax extra")

# A tiny domain that a global batch of 128 makes exact in about a dozen short epochs, with a
# loss that falls smoothly (at 0.03 it spikes, and a spike magnifies any difference).
ARGS = ["--largest", "9", "--samples", "4096", "--batch-size", "128", "--learning-rate", "0.02", "--check-every", "2"]
# Two processes and one start from the same seeded weights and see the same global batches;
# only the order of float32 additions differs (gloo's all-reduce sums the two halves' gradients).
# Measured: the largest weight difference after a dozen epochs is about 1e-6 of weights near 1.
WEIGHT_TOLERANCE = 1e-4
PEER_TIMEOUT = 10  # seconds, for the kill test
BOUND = PEER_TIMEOUT + 20  # what a survivor may take to exit: the heartbeat, plus a loaded machine's slack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(process_id: int, out, port: int, *extra: str) -> subprocess.Popen:
    cluster = ["--num-processes", "2", "--process-id", str(process_id), "--coordinator", f"127.0.0.1:{port}"]
    return subprocess.Popen(
        [*TRAIN, *ARGS, *cluster, "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_without_backend(),
    )


def finish(processes: list[subprocess.Popen], timeout: float = 600) -> list[tuple[int, str, str]]:
    """Each process's (exit code, stdout, stderr); none is left running."""
    try:
        results = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=timeout)
            results.append((process.returncode, stdout, stderr))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def layer_weights(path) -> dict[str, np.ndarray]:
    """The layers' weights in a .keras archive, read with h5py (no Keras backend needed)."""
    import h5py

    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
    found: dict[str, np.ndarray] = {}

    def keep(name, item):
        if isinstance(item, h5py.Dataset) and name.startswith("layers/"):
            found[name] = item[()]

    with h5py.File(io.BytesIO(data), "r") as weights:
        weights.visititems(keep)
    return found


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:1234"],
            "--process-id must be from 0 to 1",
        ),
        (
            ["--num-processes", "2", "--process-id", "-1", "--coordinator", "127.0.0.1:1234"],
            "--process-id must be from 0 to 1",
        ),
        (["--num-processes", "0"], "--num-processes must be at least 1"),
        (["--num-processes", "2"], "needs --coordinator HOST:PORT"),
        (["--num-processes", "2", "--coordinator", "127.0.0.1"], "--coordinator takes HOST:PORT"),
        (["--num-processes", "2", "--coordinator", "127.0.0.1:70000"], "--coordinator takes HOST:PORT"),
        (["--num-processes", "2", "--coordinator", "no host!:1234"], "neither an IP address nor a host name"),
        (["--num-processes", "2", "--coordinator", "h:1", "--backend", "tensorflow"], "needs --backend jax"),
        (["--num-processes", "2", "--coordinator", "h:1", "--devices", "2"], "with --num-processes every device"),
        (["--num-processes", "2", "--coordinator", "h:1", "--peer-timeout", "0"], "--peer-timeout must be at least 1"),
    ],
)
def test_bad_distributed_options_are_refused_in_one_line(tmp_path, args, message):
    result = subprocess.run(
        [*TRAIN, *args, "--out", str(tmp_path / "m.keras")], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_options_can_come_from_the_environment(tmp_path):
    env = os.environ | {"ADDER_NUM_PROCESSES": "2", "ADDER_PROCESS_ID": "5", "ADDER_COORDINATOR": "127.0.0.1:1234"}
    result = subprocess.run(
        [*TRAIN, "--out", str(tmp_path / "m.keras")], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 2 and "--process-id must be from 0 to 1" in result.stderr


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Two processes train; process 0 (the coordinator) is killed after the first checkpoint;
    both are started again, resume, and finish. Returns what each step showed."""
    folder = tmp_path_factory.mktemp("two")
    out, state = folder / "m.keras", folder / "m.keras.ckpt" / "state.json"
    timeout = ["--peer-timeout", str(PEER_TIMEOUT)]
    port = free_port()
    processes = [start(0, out, port, *timeout), start(1, out, port, *timeout)]
    try:
        deadline = time.monotonic() + 300
        while not state.exists() and time.monotonic() < deadline and processes[1].poll() is None:
            time.sleep(0.05)
        assert state.exists(), "no checkpoint was written"
        os.kill(processes[0].pid, signal.SIGKILL)  # the process a user started, and the training it runs
        killed = time.monotonic()
        survivor = finish(processes[1:], timeout=BOUND + 30)[0]
        took = time.monotonic() - killed
    finally:
        finish(processes, timeout=1)
    done = json.loads(state.read_text())["epochs_done"]
    port = free_port()
    resumed = finish([start(0, out, port, *timeout), start(1, out, port, *timeout)])
    return {"out": out, "survivor": survivor, "took": took, "done": done, "resumed": resumed}


@needs_jax
@pytest.mark.slow
def test_killing_one_process_ends_the_other_with_one_error_line_in_bounded_time(two_processes):
    code, _, stderr = two_processes["survivor"]
    print(f"the survivor exited {two_processes['took']:.1f} s after process 0 was killed")
    assert code != 0 and two_processes["took"] < BOUND, (code, two_processes["took"])
    assert stderr.strip().splitlines()[-1].startswith("error: process 1 of 2 "), stderr[-2000:]
    assert "Traceback" not in stderr


@needs_jax
@pytest.mark.slow
def test_both_processes_resume_from_the_checkpoint_to_an_exact_model(two_processes):
    (code0, out0, err0), (code1, out1, err1) = two_processes["resumed"]
    assert code0 == 0 and code1 == 0, err0[-2000:] + err1[-2000:]
    for stdout in (out0, out1):
        assert f"resuming from epoch {two_processes['done'] + 1}" in stdout
        assert stdout.splitlines()[0].startswith("training with jax on 2 CPU") and "in 2 processes" in stdout
    assert out1.splitlines()[-1].startswith("process 1 of 2 done") and "process 0 writes" in out1
    out = two_processes["out"]
    record = json.loads(out.with_suffix(".json").read_text())["training"]
    devices = record["devices"]
    assert devices["processes"] == 2 and devices["count"] == 2, devices
    assert [name.endswith(f"(process {i})") for i, name in enumerate(devices["names"])] == [True, True]
    assert record["exact"] and record["evaluation"]["wrong"] == 0 and record["evaluation"]["total"] == 100
    assert not out.with_name(out.name + ".ckpt").exists()  # process 0 cleaned up when done


@needs_jax
@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(two_processes, tmp_path):
    one = tmp_path / "one.keras"
    result = subprocess.run(
        [*TRAIN, *ARGS, "--backend", "jax", "--out", str(one)],
        capture_output=True, text=True, timeout=600, env=env_without_backend(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    two = two_processes["out"]
    history = [json.loads(p.with_suffix(".json").read_text())["training"]["history"] for p in (one, two)]
    assert [h["epoch"] for h in history[0]] == [h["epoch"] for h in history[1]]
    a, b = layer_weights(one), layer_weights(two)
    assert a.keys() == b.keys() and len(a) >= 6
    difference = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    print(f"largest weight difference, one process against two: {difference:.3g}")
    assert difference <= WEIGHT_TOLERANCE


@needs_jax
@pytest.mark.slow
def test_processes_that_see_different_checkpoints_refuse_to_resume(tmp_path):
    """What a folder that is not shared between hosts looks like: each process its own view."""
    seen, unseen = tmp_path / "host0", tmp_path / "host1"
    (seen / "m.keras.ckpt").mkdir(parents=True)
    unseen.mkdir()
    (seen / "m.keras.ckpt" / "state.json").write_text(json.dumps({"identity": {}, "epochs_done": 1}))
    port = free_port()
    results = finish([start(0, seen / "m.keras", port), start(1, unseen / "m.keras", port)], timeout=300)
    for code, _, stderr in results:
        assert code == 2 and "do not all see the same checkpoint" in stderr.strip().splitlines()[-1], stderr[-2000:]
