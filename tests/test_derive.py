"""A recipe derived from the domain: deterministic, shaped by the domain, growing when stuck."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adder.train.derive import derive, expected_epochs, units_for
from adder.train.growth import stuck, widened
from adder.train.policy import Cycle, first_cycle
from adder.train.recipe import Recipe
from tests.conftest import needs_training

TRAIN = [sys.executable, "-c", "from adder.commands.train import main; main()"]


def domain(**fields) -> Recipe:
    return Recipe(**fields)


def test_the_derived_recipe_is_a_function_of_the_domain_alone():
    mine = domain(terms="3", largest=49)
    assert derive(mine) == derive(mine) == derive(mine.with_overrides(seed=9, arch="8/8", samples=3))
    assert derive(mine).problems() == [] and derive(mine).grow


def test_layers_grow_with_the_digits_held_and_with_what_mixes_them():
    sizes = [units_for(domain(largest=n).model_config()) for n in (9, 999, 9999, 9_999_999_999)]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    plain = units_for(domain(largest=99).model_config())
    assert units_for(domain(largest=99, ops="*").model_config()) > units_for(domain(largest=99, ops="+-").model_config()) > plain
    assert units_for(domain(largest=99, terms="3").model_config()) > plain
    assert all(units % 8 == 0 for units in sizes)


def test_checks_and_draws_follow_the_domains_size_and_shape():
    small, mid = derive(domain(largest=99)), derive(domain(largest=999, terms="3"))
    assert (small.check_sample, small.check_every) == (0, 5)  # 10,000 queries: every one, every check
    assert mid.check_sample == 1_000_000  # a billion: sampled, and never called exact on a sample
    ranged = derive(domain(terms="2-3", largest=9, ops="+-", brackets=True))
    assert ranged.curriculum and ranged.term_mix == "1:3" and ranged.large_operands > 0
    assert derive(domain(largest=9999)).carry_chains > 0 and not derive(domain(largest=99)).carry_chains
    assert expected_epochs(derive(domain(largest=9))) < expected_epochs(derive(domain(largest=9999)))
    suites = derive(domain(largest=9999))  # 10^8 queries, two-term sums: judged by the suites, as wide is
    assert suites.mine_margin and suites.confirm_further and suites.average_weights and suites.problems() == []
    assert suites.max_epochs > derive(domain(largest=999, ops="+-")).max_epochs
    assert not derive(domain(largest=999, terms="3")).confirm_further  # sampled, not the suites


def history_of(shares: list[tuple[int, float]]) -> list[dict]:
    return [{"epoch": e, "check_wrong": round(s * 1000), "checked": 1000} for e, s in shares]


def test_a_cycle_whose_wrong_share_does_not_halve_is_stuck_and_one_that_halves_is_not():
    cycles = [first_cycle(10, 1e-2)]
    assert stuck(history_of([(5, 0.30), (10, 0.20)]), cycles)  # 30% -> 20%: not halved
    assert not stuck(history_of([(5, 0.30), (10, 0.14)]), cycles)  # halved
    assert not stuck(history_of([(5, 0.30), (10, 0.005)]), cycles)  # finishing, not stuck
    assert not stuck(history_of([(10, 0.9)]), cycles)  # no check to compare with
    again = [*cycles, Cycle(10, 10, 1e-2, "again")]
    assert stuck(history_of([(5, 0.3), (10, 0.2), (15, 0.15), (20, 0.12)]), again)  # since the last cycle's end
    assert widened(Recipe(arch="16/16")).arch == "24/24" and widened(Recipe(arch="64,32/48")).arch == "96,48/72"
    assert widened(Recipe(arch="4096/4096")) is None


@needs_training
@pytest.mark.slow
def test_a_domain_no_recipe_names_ends_exact_unattended(tmp_path):
    result = subprocess.run([*TRAIN, "--largest", "6", "--ops", "+-", "--out", "u.keras"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("training with ") and "; a recipe derived from the domain: arch " in first
    assert "expect about" in first
    training = json.loads((tmp_path / "u.json").read_text())["training"]
    assert training["exact"] and training["evaluation"]["method"] == "exhaustive"
    assert training["evaluation"]["total"] == 98 and training["evaluation"]["wrong"] == 0  # 7 x 7 x 2
    assert training["command"] == "adder-train --largest 6 --ops +- --out u.keras"
    assert training["recipe"]["grow"] is True and training["recipe"]["name"] == "derived"


@needs_training
@pytest.mark.slow
def test_a_stuck_run_grows_and_its_record_says_from_what_and_why(tmp_path):
    args = ["--largest", "99", "--ops", "*", "--arch", "4/4", "--set", "cycle_epochs=4", "--set", "check_every=2"]
    args += ["--set", "samples=1000", "--epochs", "12", "--out", "g.keras"]
    result = subprocess.run([*TRAIN, *args], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "growing from 4/4 to 8/8, from fresh weights" in result.stdout
    training = json.loads((tmp_path / "g.json").read_text())["training"]
    growth = training["growth"]
    assert growth[0]["arch"] == "4/4" and growth[0]["grew_to"] == "8/8" and "not halved" in growth[0]["why"]
    assert training["arch"] == growth[-1]["grew_to"] and training["layers"]["encoder"] == [int(growth[-1]["grew_to"].split("/")[0])]
    assert not (tmp_path / "g.keras.ckpt").exists()
