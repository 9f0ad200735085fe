"""Training on any Keras backend, and data-parallel over several devices with JAX."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import HAS_TRAINING_STACK

TRAIN = [sys.executable, "-c", "from adder.commands.train import main; main()"]
EXPORT = [sys.executable, "-c", "from adder.commands.export import main; main()"]
EVAL = [sys.executable, "-c", "from adder.commands.evaluate import main; main()"]
HAS_JAX = importlib.util.find_spec("jax") is not None and importlib.util.find_spec("keras") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None


def env_without_backend(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    return env | extra


def test_auto_prefers_a_gpu_then_tensorflow_then_jax(monkeypatch):
    from adder.train import device

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    have = {"tensorflow", "jax", "keras"}
    monkeypatch.setattr(device, "installed", lambda name: name in have)
    monkeypatch.setattr(device, "jax_sees_gpu", lambda: False)
    monkeypatch.setattr(device, "torch_sees_gpu", lambda: False)
    assert device.choose_backend("auto") == "tensorflow"
    monkeypatch.setattr(device, "jax_sees_gpu", lambda: True)
    assert device.choose_backend("auto") == "jax"
    monkeypatch.setattr(device, "jax_sees_gpu", lambda: False)
    have.discard("tensorflow")
    assert device.choose_backend("auto") == "jax"
    assert device.choose_backend("torch") == "torch"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert device.choose_backend("auto") == "torch"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "theano"], "--backend must be one of"),
        (["--devices", "0"], "--devices takes a number or 'all'"),
        (["--devices", "two"], "--devices takes a number or 'all'"),
    ],
)
def test_bad_backend_options_are_refused_in_one_line(tmp_path, args, message):
    result = subprocess.run([*TRAIN, *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr


@pytest.mark.skipif(not HAS_TRAINING_STACK, reason="needs the train extra")
def test_several_devices_need_jax(tmp_path):
    result = subprocess.run(
        [*TRAIN, "--backend", "tensorflow", "--devices", "2", "--largest", "9", "--out", str(tmp_path / "m.keras")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "needs --backend jax" in result.stderr.splitlines()[-1]


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (its wheel is too big for CI)")
@pytest.mark.slow
def test_torch_trains_a_tiny_model(tmp_path):
    out = tmp_path / "t.keras"
    args = [
        "--backend",
        "torch",
        "--largest",
        "9",
        "--epochs",
        "2",
        "--samples",
        "512",
        "--out",
        str(out),
    ]
    result = subprocess.run([*TRAIN, *args], capture_output=True, text=True, timeout=600, env=env_without_backend())
    assert result.returncode == 0, result.stderr
    assert json.loads(out.with_suffix(".json").read_text())["training"]["backend"] == "torch"


@pytest.mark.skipif(not HAS_JAX, reason="needs the jax extra")
@pytest.mark.slow
def test_jax_on_two_host_devices_becomes_exact_and_exports(tmp_path):
    out = tmp_path / "j.keras"
    env = env_without_backend(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    args = ["--backend", "jax", "--devices", "2", "--largest", "9", "--samples", "20000", "--out", str(out)]
    result = subprocess.run([*TRAIN, *args], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0].startswith("training with jax on 2 CPU")
    record = json.loads(out.with_suffix(".json").read_text())["training"]
    assert record["backend"] == "jax" and record["devices"]["count"] == 2 and "jaxlib" in record["versions"]
    assert record["evaluation"]["wrong"] == 0 and record["evaluation"]["total"] == 100
    if not HAS_TRAINING_STACK:
        return
    onnx = tmp_path / "j.onnx"
    subprocess.run([*EXPORT, str(out), "-o", str(onnx)], check=True, capture_output=True, timeout=600)
    result = subprocess.run([*EVAL, str(onnx), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "0 wrong of 100" in result.stdout
