"""The self-driving training: recipes, the cycle policy, and a run that drives itself to exact."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from adder.train.policy import NEAR, RESTART_FLOOR, RESTART_PEAK, first_cycle, learning_rate_at, next_cycle
from adder.train.quiet import USER_VARIABLES, is_native_log
from adder.train.recipe import Recipe, parse_arch
from adder.train.recipe_files import load_recipe, recipe_names
from tests.conftest import needs_training

TRAIN = [sys.executable, "-c", "from adder.commands.train import main; main()"]
MODELS = Path(__file__).resolve().parent.parent / "train" / "models"


def test_a_cycle_far_from_exact_is_run_again_and_a_near_one_finishes_lower_and_shorter():
    cycles = [first_cycle(40, 1e-2)]
    cycles.append(next_cycle(cycles, wrong=500, total=1000, epochs=40, learning_rate=1e-2))
    assert (cycles[-1].start, cycles[-1].length, cycles[-1].peak, cycles[-1].kind) == (40, 40, 1e-2, "again")
    for _ in range(RESTART_FLOOR + 2):
        cycles.append(next_cycle(cycles, wrong=1, total=1000, epochs=40, learning_rate=1e-2))
    finishing = [c for c in cycles if c.kind == "finish"]
    assert [c.length for c in finishing] == [20] * len(finishing)
    assert [c.start for c in cycles] == [0, 40, 80, 100, 120, 140, 160]
    peaks = [c.peak / 1e-2 for c in finishing]
    assert peaks == pytest.approx([RESTART_PEAK ** min(k, RESTART_FLOOR) for k in range(1, len(finishing) + 1)])
    # exactly at the threshold the model is finishing
    assert next_cycle(cycles[:1], wrong=int(NEAR * 1000), total=1000, epochs=40, learning_rate=1e-2).kind == "finish"


def test_the_learning_rate_decays_within_each_cycle():
    cycle = next_cycle([first_cycle(10, 1e-2)], wrong=0, total=10, epochs=10, learning_rate=1e-2)
    rates = [learning_rate_at(cycle, e, "cosine") for e in range(cycle.start, cycle.end)]
    assert rates[0] == pytest.approx(cycle.peak) and all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] > 0
    assert learning_rate_at(cycle, cycle.start + 3, "constant") == cycle.peak


def test_every_shipped_recipe_file_loads_checks_clean_and_the_default_file_is_the_defaults():
    assert set(recipe_names()) >= {"default", "arith", "calc", "wide"}
    for name in recipe_names():
        _, recipe = load_recipe(name)
        assert isinstance(recipe, Recipe) and recipe.problems() == [], name
        parse_arch(recipe.arch)
    assert load_recipe("default")[1] == Recipe()
    assert set(Recipe.field_names()) >= {"arch", "cycle_epochs", "max_epochs", "max_minutes", "seed", "terms"}


@pytest.mark.parametrize("record", sorted(MODELS.glob("*.json")), ids=lambda p: p.stem)
def test_each_shipped_model_was_trained_by_its_recipe_and_its_command_names_it(record):
    training = json.loads(record.read_text())["training"]
    recipe = training.get("recipe")
    if not recipe:
        pytest.skip(f"{record.name} predates recipes")
    name = recipe.pop("name")
    assert training["command"].startswith(f"adder-train --recipe {name} ")
    assert "--init" not in training["command"] and "init" not in training
    # A setting added to recipes after a model was trained is absent from its record; such a
    # setting's default is the one that draws the data as before it existed.
    later = {f for f in Recipe.field_names() if f not in recipe and f != "cycle_epochs"} - {"epochs"}
    assert later <= {
        "large_operands",
        "carry_chains",
        "sparse_operands",
        "mine_margin",
        "mine_sample",
        "hold_rate",
        "confirm_further",
        "confirm_beyond",
        "average_weights",
        "grow",
        "layout",  # "text" by default; and the pairs layout's own settings, which act only with it
        "digits",
        "settle",
        "settle_epochs",
        "state_noise",
        "recurrent_units",
    }
    # The budget is not part of a run (a rerun may raise it); one that stopped exact under a
    # smaller budget than the recipe's stops there under the recipe's too.
    _, ran = Recipe.from_record(recipe)
    want = load_recipe(name)[1].with_overrides(seed=recipe["seed"])
    assert ran.identity() == want.identity()
    assert ran.max_epochs <= want.max_epochs
    if ran.layout == "pairs":  # proven, not evaluated: the proof in its record passed
        assert training["exact"] is True and training["proof"]["passed"] is True
        return
    method = training["evaluation"]["method"]
    assert training["exact"] is True and (method == "exhaustive" or method.startswith("suites"))
    assert training["evaluation"]["wrong"] == 0


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """adder-train as a user runs it: none of TensorFlow's logging variables set unless given."""
    clean = {k: v for k, v in os.environ.items() if k not in USER_VARIABLES} | env
    return subprocess.run([*TRAIN, *args], capture_output=True, text=True, cwd=tmp_path, timeout=900, env=clean)


# A first cycle of 2 epochs cannot make this model exact; a few more cycles do.
TINY = ["--recipe", "default", "--largest", "9", "--arch", "32/32", "--samples", "4000", "--batch-size", "32", "--cycle-epochs", "2"]
TINY += ["--learning-rate", "5e-3", "--check-every", "0", "--seed", "3", "--out", "s.keras"]


@needs_training
@pytest.mark.slow
def test_a_run_whose_first_cycle_ends_inexact_goes_on_by_itself_until_exact(tmp_path):
    result = run([*TINY, "--max-epochs", "40"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "still wrong" in result.stdout and "stopping early: exact on the whole domain" in result.stdout
    assert result.stderr == ""  # TensorFlow's own start-up lines are not ours to print
    training = json.loads((tmp_path / "s.json").read_text())["training"]
    assert training["exact"] is True and training["evaluation"]["wrong"] == 0
    assert max(h.get("cycle", 1) for h in training["history"]) >= 2
    words = shlex.split(training["command"])
    assert words[:3] == ["adder-train", "--recipe", "default"]
    assert words[3:7] == ["--largest", "9", "--arch", "32/32"] and words[-4:] == ["--seed", "3", "--out", "s.keras"]
    sets = dict(w.split("=") for w in words[8:-4:2])
    assert sets == {
        "cycle_epochs": "2", "samples": "4000", "batch_size": "32", "learning_rate": "0.005",
        "check_every": "0", "max_epochs": "40",
    }  # fmt: skip
    assert training["recipe"]["arch"] == "32/32" and training["recipe"]["name"] == "default"
    assert not (tmp_path / "s.keras.ckpt").exists()
    # the record's command, run again, is the same run: it parses to the same recipe
    again = run([*words[1:], "--show-recipe"], tmp_path)
    assert again.returncode == 0 and Recipe.from_mapping(tomllib.loads(again.stdout), "shown") == (
        Recipe.from_record(training["recipe"])[1]
    )


@needs_training
@pytest.mark.slow
def test_the_recipes_own_budget_spent_exits_1_with_the_count_and_a_rerun_with_more_goes_on(tmp_path):
    spent = run([*TINY, "--max-epochs", "2"], tmp_path)
    assert spent.returncode == 1
    error = spent.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: not exact when the budget of 2 epochs is spent: ")
    assert "queries (exhaustive) still wrong" in error[0] and "max_epochs" in error[0]
    assert (tmp_path / "s.keras.ckpt" / "state.json").exists() and (tmp_path / "s.keras").exists()
    record = json.loads((tmp_path / "s.json").read_text())["training"]
    assert record["exact"] is False
    # the final check's wrong queries wait in the checkpoint's replay pool for the rerun
    pooled = json.loads((tmp_path / "s.keras.ckpt" / "replay.json").read_text())["queries"]
    assert len(pooled) == record["evaluation"]["wrong"] > 0
    more = run([*TINY, "--set", "max_epochs=40"], tmp_path)
    assert more.returncode == 0, more.stdout + more.stderr
    assert "resuming from epoch 3" in more.stdout
    assert json.loads((tmp_path / "s.json").read_text())["training"]["exact"] is True


@needs_training
@pytest.mark.slow
def test_epochs_n_trains_n_epochs_then_writes_the_model_and_says_what_it_reached(tmp_path):
    result = run(["--largest", "9", "--arch", "8/8", "--samples", "256", "--epochs", "3", "--out", "e.keras"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    trained = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in trained] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    record = json.loads((tmp_path / "e.json").read_text())["training"]
    assert len([h for h in record["history"] if "loss" in h]) == 3 and record["recipe"]["cycle_epochs"] == 3
    assert "written as it is" in result.stdout and "of 100 queries" in result.stdout
    assert not (tmp_path / "e.keras.ckpt").exists() and (tmp_path / "e.keras").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--epochs", "²"], "--epochs takes a whole number"),
        (["--seed", "-1"], "seed must be at least 0"),
        (["--set", "samples=lots"], "samples takes a whole number"),
        (["--set", "max_epochs=0"], "max_epochs must be at least 1"),
        (["--sampels", "9"], "did you mean --samples"),
        (["--set", "nonsense"], "--set takes NAME=VALUE"),
        (["--recipe", "nope"], "recipe must be one of"),
        (["--recipe", "missing.toml"], "no such file"),
        (["--largest", "9", "--set", "confirm_further=1000000"], "only where fixed suites judge the domain"),
        (["--devices", "²"], "--devices takes a number or 'all'"),
    ],
)
def test_a_bad_option_or_setting_is_one_line_and_exit_2(tmp_path, args, message):
    result = run([*args, "--out", "x.keras"], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_a_recipe_file_holds_only_what_differs_and_trains_the_run_it_names(tmp_path):
    (tmp_path / "mine.toml").write_text('largest = 9\narch = "8/8"\nseed = 5\n')
    shown = run(["--recipe", "mine.toml", "--set", "samples=300", "--show-recipe"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    recipe = Recipe.from_mapping(tomllib.loads(shown.stdout), "shown")
    assert (recipe.largest, recipe.arch, recipe.seed, recipe.samples) == (9, "8/8", 5, 300)
    assert recipe.with_overrides(samples=50_000, largest=999, arch="24/24", seed=0) == Recipe()
    listed = run(["--list-settings"], tmp_path)
    assert listed.returncode == 0 and all(name in listed.stdout for name in Recipe.field_names())


def test_help_fits_on_one_screen_with_about_twenty_options(tmp_path):
    result = run(["--help"], tmp_path)
    assert result.returncode == 0
    options = [line for line in result.stdout.splitlines() if line.startswith("│ --")]
    assert len(options) <= 22, options


def test_native_log_lines_are_told_from_everything_else():
    native = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        b"I0000 00:00:1795851662.916830    3952 port.cc:153] oneDNN custom operations are on.",
        b"E0000 00:00:1795851670.857295    3952 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
        b"W1128 07:57:34.194338   29577 pjrt_client.cc:579] PjRt-IFRT device count: total=1",
    ]
    ours = [b"error: --seed must be an integer", b"epoch 1/40: 0.5 s", b"Traceback (most recent call last):", b""]
    assert all(is_native_log(line) for line in native) and not any(is_native_log(line) for line in ours)


@needs_training
@pytest.mark.slow
def test_tensorflow_logs_as_it_likes_when_the_user_sets_its_variables(tmp_path):
    args = ["--largest", "9", "--arch", "8/8", "--samples", "64", "--epochs", "1"]
    result = run([*args, "--out", "m.keras"], tmp_path, TF_CPP_MIN_LOG_LEVEL="0")
    assert result.returncode == 0, result.stderr
    assert any(is_native_log(line.encode()) for line in result.stderr.splitlines())
