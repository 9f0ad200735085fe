"""A killed adder-train resumes from its last completed epoch and loses nothing."""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import kill_after_first_epoch, needs_training

pytestmark = [needs_training, pytest.mark.slow]

TRAIN = [sys.executable, "-c", "from adder.train.cli import main; main()"]
ARGS = [
    "--largest",
    "9",
    "--epochs",
    "3",
    "--no-stop-when-exact",
    "--samples",
    "20000",
    "--batch-size",
    "32",
    "--no-evaluate",
]


def test_sigkill_then_rerun_resumes_and_finishes(tmp_path):
    out = tmp_path / "m.keras"
    out.write_bytes(b"previous model")
    state = tmp_path / "m.keras.ckpt" / "state.json"
    command = [*TRAIN, *ARGS, "--out", str(out)]
    kill_after_first_epoch(command, state)
    assert out.read_bytes() == b"previous model"  # the target is never half-written

    saved = json.loads(state.read_text())
    done = saved["epochs_done"]
    saved["seconds"] = 10_000.0  # as if the killed call had run for hours: the record must count them
    state.write_text(json.dumps(saved))
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"resuming from epoch {done + 1}" in result.stdout
    trained = re.findall(r"^epoch (\d+)/3: ", result.stdout, flags=re.MULTILINE)
    assert trained == [str(epoch) for epoch in range(done + 1, 4)]  # only the epochs not yet done
    assert out.read_bytes()[:2] == b"PK"  # a complete .keras archive replaced the old file
    assert not state.parent.exists()  # a finished run cleans its checkpoint up
    record = json.loads((tmp_path / "m.json").read_text())
    assert [h["epoch"] for h in record["training"]["history"]] == [1, 2, 3]
    training = record["training"]
    assert training["train_seconds"] > 10_000 > training["call_seconds"] > 0  # every call, and the last one


def test_a_checkpoint_from_other_options_is_not_silently_reused(tmp_path):
    out = tmp_path / "m.keras"
    first = subprocess.run(
        [
            *TRAIN,
            "--largest",
            "9",
            "--epochs",
            "1",
            "--no-stop-when-exact",
            "--samples",
            "64",
            "--no-evaluate",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    ckpt = tmp_path / "m.keras.ckpt"
    ckpt.mkdir()
    (ckpt / "state.json").write_text(json.dumps({"identity": {"other": True}, "epochs_done": 1}))
    second = subprocess.run(
        [*TRAIN, "--largest", "9", "--epochs", "1", "--no-stop-when-exact", "--samples", "64", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode != 0 and "other options" in second.stderr


def test_same_seed_same_machine_gives_the_same_model(tmp_path):
    from adder.train.archive import load_keras

    weights = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.keras"
        args = [
            "--largest",
            "9",
            "--epochs",
            "2",
            "--no-stop-when-exact",
            "--samples",
            "512",
            "--seed",
            "11",
            "--no-evaluate",
        ]
        subprocess.run([*TRAIN, *args, "--out", str(out)], check=True, capture_output=True, timeout=300)
        weights.append(load_keras(out)[0].get_weights())
    assert all((a == b).all() for a, b in zip(*weights))
