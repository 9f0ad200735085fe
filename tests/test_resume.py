"""A killed adder-train resumes from its last completed epoch and loses nothing."""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import kill_after_first_epoch, needs_training

pytestmark = [needs_training, pytest.mark.slow]

TRAIN = [sys.executable, "-c", "from adder.commands.train import main; main()"]
ARGS = [
    "--largest",
    "9",
    "--epochs",
    "3",
    "--samples",
    "20000",
    "--batch-size",
    "32",
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
            "--samples",
            "64",
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
    from adder.train.checkpoint import LAYOUT

    again = [*TRAIN, "--largest", "9", "--epochs", "1", "--samples", "64", "--out", str(out)]
    (ckpt / "state.json").write_text(json.dumps({"layout": LAYOUT, "identity": {"other": True}, "epochs_done": 1}))
    second = subprocess.run(again, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2 and "other options" in second.stderr
    # a checkpoint of the layout before recipes held every setting: refused in one line, not misread
    (ckpt / "state.json").write_text(json.dumps({"identity": {"settings": {"epochs": 1}}, "epochs_done": 1}))
    old = subprocess.run(again, capture_output=True, text=True, timeout=300)
    error = [line for line in old.stderr.splitlines() if line.startswith("error:")]
    assert old.returncode == 2 and len(error) == 1 and "written by an earlier adder-train" in error[0]
    assert f"delete {ckpt} to start afresh" in error[0]


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
            "--samples",
            "512",
            "--seed",
            "11",
        ]
        subprocess.run([*TRAIN, *args, "--out", str(out)], check=True, capture_output=True, timeout=300)
        weights.append(load_keras(out)[0].get_weights())
    assert all((a == b).all() for a, b in zip(*weights))


def crash_in_checkpoint(monkeypatch, where: str, at_save: int) -> None:
    """Kill the run, as SIGKILL would, inside its ``at_save``-th checkpoint: after the model is
    written but before the replay pool (``between files``), or after the model has been moved
    into place but before the rest (``while moving``)."""
    import os

    from adder.train.replay import ReplayPool

    saves = []
    pool_save, replace = ReplayPool.save, os.replace

    def counting_save(self, path):
        saves.append(path)
        if where == "between files" and len(saves) == at_save:
            raise KeyboardInterrupt
        pool_save(self, path)

    def moving(src, dst):
        if where == "while moving" and len(saves) == at_save and str(src).endswith("next/replay.json"):
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(ReplayPool, "save", counting_save)
    monkeypatch.setattr(os, "replace", moving)


@pytest.mark.parametrize("where", ["between files", "while moving"])
def test_a_run_killed_inside_a_checkpoint_resumes_from_one_whole_epoch_to_the_same_weights(
    tmp_path, monkeypatch, where
):
    """A checkpoint is several files; a kill while they are written must never pair one
    epoch's model with another epoch's state (the resume would quietly retrain an epoch from
    the wrong weights). Killed inside the second epoch's save, the resumed run ends with the
    weights of a run never killed, to the bit."""
    import numpy as np

    from adder.train import fit as fit_module
    from tests.conftest import loop_recipe

    settings = loop_recipe(9, epochs=3, arch="8/8", samples=256, batch_size=32, seed=5)

    def train(out):
        model, history, _ = fit_module.fit(settings, out, log=lambda _: None)
        return model.get_weights(), [h["loss"] for h in history]

    whole, losses = train(tmp_path / "a.keras")
    with monkeypatch.context() as patch:
        crash_in_checkpoint(patch, where, at_save=2)
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path / "b.keras")
    ckpt = tmp_path / "b.keras.ckpt"
    assert json.loads((ckpt / "state.json").read_text())["epochs_done"] == 1  # the first epoch's, in place
    assert (ckpt / "next").exists()  # the second epoch's save, cut off
    resumed, resumed_losses = train(tmp_path / "b.keras")
    assert resumed_losses == losses
    assert all(np.array_equal(a, b) for a, b in zip(resumed, whole))
    assert not (ckpt / "next").exists()
