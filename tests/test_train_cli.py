"""adder-train and adder-export refuse bad options before doing any work."""

import subprocess
import sys

import pytest

from adder.eval.files import atomic_path

TRAIN = [sys.executable, "-c", "from adder.commands.train import main; main()"]
EXPORT = [sys.executable, "-c", "from adder.commands.export import main; main()"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--largest", "0"], "operands must satisfy"),
        (["--terms", "1"], "terms must satisfy"),
        (["--terms", "two"], "terms takes a number or a range like 2-4"),
        (["--epochs", "-3"], "--epochs must be at least 1"),
        (["--samples", "0"], "samples must be at least 1"),
        (["--seed", "-1"], "seed must be at least 0"),
        (["--seed", "4294967296"], "seed must be at most 4,294,967,295"),
        (["--seed", "٣"], "--seed takes a whole number"),  # int() takes other scripts' digits
        (["--recipe", "nope"], "recipe must be one of"),
        (["--max-epochs", "-1"], "max_epochs must be at least 1"),
        (["--max-minutes", "inf"], "--max-minutes takes a number"),
        (["--curriculum", "-1"], "curriculum must be at least 0"),
        (["--out", "missing-folder/m.keras"], "does not exist"),
        (["--out", "m.h5"], "must end in .keras"),
        (["--encoding", "bits"], "encoding must be one of"),
        (["--mine-margin", "1"], "mine_margin must be below 1"),
        (["--mine-margin", "0.9"], "mine_margin 0.9 needs mine_sample of 1 or more"),
        (["--mine-sample", "-5"], "mine_sample must be at least 0"),
        (["--hold-rate", "nan"], "--hold-rate takes a number"),
        (["--mine-margin", "0.9", "--mine-sample", "10"], "mine_margin, mine_sample act only where fixed suites judge"),
        (["--hold-rate", "1e-5"], "hold_rate acts only where fixed suites judge the domain"),
        (["--confirm-further", "-1"], "confirm_further must be at least 0"),
        (["--confirm-further", "2000000000"], "confirm_further must be at most 1,000,000,000"),
        (["--confirm-further", "100000"], "confirm_further acts only where fixed suites judge the domain"),
        (["--confirm-beyond", "-1"], "confirm_beyond must be at least 0"),
        (["--confirm-beyond", "2000000000"], "confirm_beyond must be at most 1,000,000,000"),
        (
            ["--recipe", "wide", "--confirm-further", "1500000", "--confirm-beyond", "5000000"],
            "which must then be a positive multiple of 1,000,000 pairs, got 1,500,000",
        ),
        (
            ["--recipe", "default", "--largest", "9999999999", "--confirm-beyond", "5000000"],
            "which must then be a positive multiple of 1,000,000 pairs, got 0",
        ),
        (["--average-weights"], "average_weights acts only once a run goes beyond"),
        (["--recipe", "wide", "--confirm-beyond", "0"], "needs confirm_beyond too (or --no-average-weights)"),
        (["--set", "grow=maybe"], "grow takes true or false"),
        (["--nonsense", "1"], "no such option or setting --nonsense"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_training_options_are_refused_in_one_line(tmp_path, args, message):
    result = subprocess.run([*TRAIN, *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and not list(tmp_path.iterdir())


def test_export_of_a_missing_model_is_refused(tmp_path):
    result = subprocess.run([*EXPORT, str(tmp_path / "none.keras")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_export_of_a_file_that_is_not_a_model_is_refused(tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"not a zip")
    result = subprocess.run([*EXPORT, str(fake)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "not a .keras archive" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "fake.onnx").exists()


def test_a_failed_write_leaves_the_previous_file_untouched(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-written")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_completed_write_replaces_the_file(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_training_without_the_extra_asks_for_it_in_one_line(monkeypatch, capsys):
    import importlib.util

    import typer

    from adder.commands import common as cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "keras" else real(name))
    with pytest.raises(typer.Exit) as info:
        cli.require_training_stack()
    assert info.value.exit_code == 1
    assert capsys.readouterr().err == cli.EXTRA_HINT + "\n"
