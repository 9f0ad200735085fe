"""Shared fixtures: a tiny model trained and exported once per pytest run (seconds)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HAS_TRAINING_STACK = all(importlib.util.find_spec(m) for m in ("keras", "tensorflow", "tf2onnx"))
needs_training = pytest.mark.skipif(not HAS_TRAINING_STACK, reason="needs the train extra")


def run_adder(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `adder` CLI as a user would: a fresh process, bytes in, text out."""
    return subprocess.run(
        [sys.executable, "-m", "adder", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-term, 0..9 model: (keras path, onnx path), via the real train and export commands."""
    return train_and_export(tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def tiny_ordinal_model(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny model with ordinal inputs: one number per time step."""
    return train_and_export(tmp_path_factory, "tiny-ordinal", "--encoding", "ordinal")


@pytest.fixture(scope="session")
def tiny_wide_model(tmp_path_factory) -> tuple[Path, Path]:
    """An untrained-in-all-but-name model of ten-digit sums: what matters is that every layer
    takes ten-digit operands alike (no evaluation: its domain's verdict is 24 million cases)."""
    return train_and_export(tmp_path_factory, "tiny-wide", "--largest", "9999999999", "--arch", "8/8", "--set", "check_sample=1000")


def train_and_export(tmp_path_factory, name: str, *extra: str) -> tuple[Path, Path]:
    if not HAS_TRAINING_STACK:
        pytest.skip("needs the train extra")
    folder = tmp_path_factory.mktemp(name)
    keras_path, onnx_path = folder / f"{name}.keras", folder / f"{name}.onnx"
    train = [sys.executable, "-c", "from adder.commands.train import main; main()"]
    args = [
        "--largest",
        "9",
        "--epochs",
        "2",
        "--samples",
        "256",
        "--batch-size",
        "64",
        "--seed",
        "3",
        *extra,
    ]
    subprocess.run([*train, *args, "--out", str(keras_path)], check=True, capture_output=True, timeout=600)
    export = [sys.executable, "-c", "from adder.commands.export import main; main()"]
    subprocess.run([*export, str(keras_path), "-o", str(onnx_path)], check=True, capture_output=True, timeout=600)
    return keras_path, onnx_path


def kill_after_first_epoch(command: list[str], state: Path, timeout: float = 300) -> None:
    """Start a training command and SIGKILL it once its checkpoint records a finished epoch."""
    import json
    import signal
    import time

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists() and json.loads(state.read_text())["epochs_done"] >= 1:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "training ended before it could be killed"


def loop_recipe(largest: int, epochs: int, max_epochs: int = 0, arch: str = "4/4", **settings):
    """A recipe for driving adder.train.fit directly in tests: small, one cycle of ``epochs``
    (the budget too unless ``max_epochs``), every check as given."""
    from adder.train.recipe import Recipe

    base = {"batch_size": 128, "learning_rate": 1e-3, "check_every": 0}
    return Recipe(largest=largest, arch=arch, cycle_epochs=epochs, max_epochs=max_epochs or epochs, **(base | settings))
