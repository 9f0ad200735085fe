"""benchmarks/adversarial_families.py: a ten-digit adder on pairs that uniform draws almost never hold."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from adder import Adder
from adder.codec import Codec
from adder.eval import suites

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "adversarial_families.py"


def rows(stdout: str) -> dict[str, list[int]]:
    """family -> the row's integer columns before the timing (wrong[, unsure], pairs)."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"[\d,]+", cells[1]):
            found[cells[0]] = [int(c.replace(",", "")) for c in cells[1:-2]]
    return found


def run(model: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), model, *args], capture_output=True, text=True, timeout=600)


def unsure_recounted(model: str, pairs: int, seed: int) -> dict[str, int]:
    """Per family, answers whose weakest output step wins by less than 0.95, counted here from the
    probabilities of the script's own draws under the same seed."""
    spec = importlib.util.spec_from_file_location("adversarial_families", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    adder = Adder(model)
    counts = {}
    for name, (a, b) in script.families(adder.config, pairs, np.random.default_rng(seed)).items():
        probabilities = adder.predict_tensor(Codec(adder.config).encode_shape(suites.SUM, np.stack([a, b], axis=1)))
        top = np.sort(probabilities, axis=-1)
        counts[name] = int(((top[..., -1] - top[..., -2]).min(axis=-1) < 0.95).sum())
    return counts


def test_every_family_is_drawn_and_unsure_answers_are_counted_without_changing_the_draws():
    plain = run("wide", "--pairs", "3000", "--seed", "5")
    counted = run("wide", "--pairs", "3000", "--seed", "5", "--unsure")
    assert plain.stderr == counted.stderr == ""
    before, after = rows(plain.stdout), rows(counted.stdout)
    assert list(before) == list(after) and len(before) == 7 and "uniform" in before
    assert all(r[-1] == 3000 for r in [*before.values(), *after.values()])
    assert [r[0] for r in before.values()] == [r[0] for r in after.values()]  # the same pairs, the same wrong
    wrong = sum(r[0] for r in before.values())
    assert plain.returncode == counted.returncode == (1 if wrong else 0)
    assert {name: r[1] for name, r in after.items()} == unsure_recounted("wide", 3000, 5)


def test_a_barely_trained_model_is_wrong_and_unsure_where_the_column_says(tiny_wide_model):
    onnx = str(tiny_wide_model[1])
    result = run(onnx, "--pairs", "500", "--seed", "3", "--unsure")
    assert result.returncode == 1 and result.stderr == ""
    found = rows(result.stdout)
    assert len(found) == 7 and all(r[2] == 500 for r in found.values())
    unsure = {name: r[1] for name, r in found.items()}
    assert unsure == unsure_recounted(onnx, 500, 3) and sum(unsure.values()) > 0
