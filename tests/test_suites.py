"""The fixed suites that stand in for an exhaustive check of ten-digit sums."""

from __future__ import annotations

import random

import numpy as np
import pytest

from adder.config import ConfigError, ModelConfig
from adder.eval.evaluate import Evaluation
from adder.eval.suites import (
    CHUNK,
    FURTHER_STEP,
    NINES_STREAM,
    RUNS_STREAM,
    UNIFORM_SIZE,
    adderboard_pairs,
    applies,
    carry_chain_pairs,
    combined,
    confirmed,
    confirmed_drawn,
    evaluate_suites,
    repdigit_pairs,
    sparse_operands,
    suite_blocks,
    uniform_blocks,
)
from tests.conftest import needs_training, run_adder
from tests.test_mining import nine_run
from tests.test_replay import carry_length

WIDE = ModelConfig(max_operand=9_999_999_999)


def test_ten_digit_operands_are_accepted_and_eleven_are_not():
    assert WIDE.output_length == 11 and WIDE.input_length == 21
    with pytest.raises(ConfigError, match="max_operand must be at most 9,999,999,999"):
        ModelConfig(max_operand=10**10)


def test_adderboard_cases_are_its_ten_edges_then_random_2025():
    pairs = adderboard_pairs()
    rng = random.Random(2025)
    assert len(pairs) == 10_010 and pairs[4].tolist() == [9_999_999_999, 9_999_999_999]
    assert pairs[10].tolist() == [rng.randint(0, 9_999_999_999), rng.randint(0, 9_999_999_999)]


def test_every_carry_chain_length_and_start_is_there_and_each_stops_where_it_should():
    pairs = carry_chain_pairs(10)
    lengths = {carry_length(a, b) for a, b in pairs.tolist()}
    assert lengths == set(range(1, 11))
    assert [9_999_999_999, 1] in pairs.tolist() or [1, 9_999_999_999] in pairs.tolist()
    starts = set()
    for a, b in pairs[:: max(1, len(pairs) // 3000)].tolist():
        digits = [(a // 10**i % 10) + (b // 10**i % 10) for i in range(10)]
        start = next(i for i, d in enumerate(digits) if d >= 10)
        starts.add(start)
        k = carry_length(a, b)
        assert all(d == 9 for d in digits[start + 1 : start + k]) and all(d <= 8 for d in digits[start + k :])
    assert starts == set(range(10))


def test_repdigits_and_sparse_operands_are_complete():
    assert len(repdigit_pairs(10)) == 91**2 and [7_777, 0] in repdigit_pairs(10).tolist()
    sparse = sparse_operands(10)
    assert len(sparse) == len(set(sparse.tolist())) == 1 + 90 + 45 * 81
    assert all(sum(c != "0" for c in str(v)) <= 2 for v in sparse.tolist())


def test_suites_apply_only_to_sums_of_two_terms_and_a_right_model_passes_them_all():
    assert applies(WIDE) and not applies(ModelConfig(max_operand=99, operators="+-"))
    small = ModelConfig(max_operand=99_999)
    right = lambda shape, terms: (terms.sum(axis=1), np.ones(len(terms), dtype=bool))  # noqa: E731
    right.takes_blocks = True
    results = evaluate_suites(right, small, uniform=1000)
    assert set(results) == set(suite_blocks(small, uniform=1000))
    assert all(r.wrong == 0 and r.total > 0 for r in results.values())
    whole = combined(results)
    assert whole.is_verdict and whole.wrong == 0 and whole.total == sum(r.total for r in results.values())


def test_another_uniform_seed_draws_other_pairs_and_says_so():
    """A held-out check: training replays what its own suites find wrong, so their uniform pairs
    are not unseen by the end of a run; another seed's are."""
    small = ModelConfig(max_operand=99_999)
    default = dict(suite_blocks(small, uniform=500))
    other = dict(suite_blocks(small, uniform=500, seed=7))
    assert "uniform pairs (numpy seed 2026)" in default and "uniform pairs (numpy seed 7)" in other
    drawn = [
        np.concatenate([b for _, b in blocks[1]])
        for blocks in (default["uniform pairs (numpy seed 2026)"], other["uniform pairs (numpy seed 7)"])
    ]
    assert drawn[0].shape == drawn[1].shape == (500, 2) and not np.array_equal(drawn[0], drawn[1])
    assert set(default) - {"uniform pairs (numpy seed 2026)"} == set(other) - {"uniform pairs (numpy seed 7)"}


def test_one_wrong_answer_in_any_suite_is_counted_there():
    small = ModelConfig(max_operand=9_999)

    def off_on_long_chains(shape, terms):
        values = terms.sum(axis=1)
        values[(terms[:, 0] == 9_999) & (terms[:, 1] == 1)] += 1
        return values, np.ones(len(terms), dtype=bool)

    off_on_long_chains.takes_blocks = True
    whole = combined(evaluate_suites(off_on_long_chains, small, uniform=100))
    assert whole.wrong >= 2 and not whole.wrong == 0  # the chain suite and the sparse suite both hold it
    assert whole.groups["carry chains (every length and start)"]["wrong"] >= 1
    assert {"query": "9999+1", "expected": 10_000, "got": 10_001} in whole.first_wrong


def answers_all_but(*wrong_pairs):
    """A predictor that adds right except on ``wrong_pairs``; it keeps every pair it was asked."""

    def predict(shape, terms):
        asked.append(terms.copy())
        values = terms.sum(axis=1)
        for a, b in wrong_pairs:
            values[(terms[:, 0] == a) & (terms[:, 1] == b)] += 1
        return values, np.ones(len(terms), dtype=bool)

    asked: list[np.ndarray] = []
    predict.takes_blocks, predict.asked = True, asked
    return predict


def test_a_fresh_draw_continued_checks_the_next_pairs_of_the_same_draw():
    """The continuation is the same stream: 0 wrong in the first n and the next m together
    is a clean draw of n + m, not two draws that could overlap."""
    whole = np.concatenate(list(uniform_blocks(WIDE, 2 * CHUNK + 500, seed=11)))
    target = tuple(whole[2 * CHUNK + 7])
    predict = answers_all_but(target)
    result = confirmed(Evaluation("suites of 3 fixed cases", 3), predict, WIDE, 11, size=500, skip=2 * CHUNK)
    assert np.array_equal(np.concatenate(predict.asked), whole[2 * CHUNK :])
    assert result.wrong == 1 and result.total == 503 and [q.terms for q in result.wrong_queries] == [target]
    group = "uniform pairs drawn afresh (numpy seed 11), pairs 200,001-200,500"
    assert result.groups == {group: {"total": 500, "wrong": 1}}
    assert result.method == "suites of 3 fixed cases, plus the next 500 pairs of that draw"
    with pytest.raises(ValueError, match="whole blocks of 100,000"):
        confirmed(Evaluation("suites"), predict, WIDE, 11, size=500, skip=CHUNK + 1)


def stage_alone(name: str, further: int, beyond: int = 0):
    """One stage of a verdict's plan (adder.eval.verdict), to judge a result with it alone."""
    from adder.eval import verdict

    return [stage for stage in verdict.stages(further, beyond) if stage.name == name]


def confirmed_further(predict, config, result, seed, entry, size):
    from adder.eval import verdict

    return verdict.judge(result, predict, config, seed, stage_alone("further", size), entry) if size else result


def confirmed_beyond(predict, config, result, seed, entry, further, size):
    from adder.eval import verdict

    return verdict.judge(result, predict, config, seed, stage_alone("beyond", further, size), entry)


def test_a_verdicts_stages_are_data_and_beyond_only_follows_further():
    from adder.eval import verdict

    assert [s.name for s in verdict.stages()] == ["fresh"]
    assert [s.name for s in verdict.stages(0, 500)] == ["fresh"]
    plan = verdict.stages(FURTHER_STEP, 1000)
    assert [s.name for s in plan] == ["fresh", "further", "beyond"]
    assert [[d.family for d in step] for step in plan[2].steps] == [["nines"], ["uniform", "runs"]]
    assert plan[2].steps[1][0].skip == UNIFORM_SIZE + FURTHER_STEP


def test_only_a_clean_fresh_draw_is_continued_and_the_history_says_what_the_rest_found():

    first = np.concatenate(list(uniform_blocks(WIDE, UNIFORM_SIZE + 1000, seed=5)))[UNIFORM_SIZE:]
    predict = answers_all_but(tuple(first[3]), tuple(first[999]))
    entry: dict = {}
    result = confirmed_further(predict, WIDE, Evaluation("suites", 10), 5, entry, 1000)
    assert result.wrong == 2 and result.total == 1110 and not result.exact_match == 1  # 100 runs besides
    assert entry == {"further_check_size": 1000, "further_check_wrong": 2}
    assert len(predict.asked) == 2 and all(nine_run(a, b) for a, b in predict.asked[1].tolist())
    assert result.groups["pairs summing to 9 over a run with no carry into it (numpy seed 5)"] == {
        "total": 100,
        "wrong": 0,
    }
    for already, size in ((Evaluation("suites", 10, 1), 1000), (Evaluation("suites", 10), 0)):
        fresh = answers_all_but()
        entry = {}
        assert confirmed_further(fresh, WIDE, already, 5, entry, size) is already
        assert fresh.asked == [] and entry == {}


def test_runs_continued_are_the_same_draw_of_runs_past_its_first_blocks():
    from adder.eval.draws import propagate_run_pairs

    rng = np.random.default_rng([4, RUNS_STREAM])
    whole = np.concatenate([propagate_run_pairs(WIDE, CHUNK, rng), propagate_run_pairs(WIDE, 300, rng)])
    target = tuple(whole[CHUNK + 299])
    predict = answers_all_but(target)
    result = confirmed_drawn(Evaluation("suites", 3), predict, WIDE, 4, size=300, skip=CHUNK)
    assert np.array_equal(np.concatenate(predict.asked), whole[CHUNK:])
    assert result.wrong == 1 and [q.terms for q in result.wrong_queries] == [target]
    group = "pairs summing to 9 over a run with no carry into it (numpy seed 4), pairs 100,001-100,300"
    assert result.groups == {group: {"total": 300, "wrong": 1}}
    assert result.method.endswith("plus the next 300 pairs summing to 9 over a run with no carry into it")
    with pytest.raises(ValueError, match="whole blocks of 100,000"):
        confirmed_drawn(Evaluation("suites"), predict, WIDE, 4, size=300, skip=CHUNK // 2)


def test_the_beyond_stage_goes_on_from_a_clean_further_check_and_only_from_one():
    from adder.eval.draws import nine_dense_pairs
    from adder.eval.verdict import NINES_PER_BEYOND

    further, size = FURTHER_STEP, 1000
    drawn = np.concatenate(list(uniform_blocks(WIDE, UNIFORM_SIZE + further + size, seed=6)))
    beyond = drawn[UNIFORM_SIZE + further :]
    dense = nine_dense_pairs(WIDE, size // NINES_PER_BEYOND, np.random.default_rng([6, NINES_STREAM]))
    predict = answers_all_but(tuple(beyond[650]))
    entry = {"further_check_size": further, "further_check_wrong": 0}
    result = confirmed_beyond(predict, WIDE, Evaluation("suites", 10), 6, entry, further, size)
    assert np.array_equal(predict.asked[0], dense) and np.array_equal(predict.asked[1], beyond)  # then 100 runs
    assert sum(len(a) for a in predict.asked) == 1120 and result.total == 1130 and result.wrong == 1
    assert entry == {"further_check_size": further, "further_check_wrong": 0, "beyond_check_size": size,
                     "beyond_check_wrong": 1}  # fmt: skip
    runs = "pairs summing to 9 over a run with no carry into it (numpy seed 6), pairs 100,001-100,100"
    assert result.groups[runs] == {"total": 100, "wrong": 0}
    # wrong on a nine-dense pair: the stage stops there, its uniform pairs and runs not drawn
    first = answers_all_but(tuple(dense[3]))
    result = confirmed_beyond(first, WIDE, Evaluation("suites", 10), 6, {"further_check_wrong": 0}, further, size)
    assert result.wrong == 1 and len(first.asked) == 1 and result.total == 10 + size // NINES_PER_BEYOND
    already = Evaluation("suites", 10, 1)  # a further check that was not clean
    fresh = answers_all_but()
    assert confirmed_beyond(fresh, WIDE, already, 6, {}, further, size) is already and fresh.asked == []


TEN_DIGIT_QUERIES = ["9999999999+1", "0+0", "1234567890+9876543210", " 0009999999999 + 7 ", "5000000000+5000000000"]
TEN_DIGIT_BAD = ["10000000000+1", "99999999999+0", "1+2+3", "9999999999-1"]


@needs_training
@pytest.mark.slow
def test_sampled_checks_add_long_carries_and_sparse_pairs_and_count_them_apart(tiny_wide_model):
    import keras

    from adder.train.checks import full_check

    model = keras.saving.load_model(tiny_wide_model[0])
    plain = full_check(model, WIDE, sample=500, seed=7)
    drawn = full_check(model, WIDE, sample=500, seed=7, carry_chains=0.2, sparse_operands=0.3)
    assert plain.total == 500 and drawn.total == 1500 and not drawn.is_verdict
    groups = drawn.groups
    assert groups["carry chains (drawn)"]["total"] == groups["sparse operands (drawn)"]["total"] == 500
    extra = groups["carry chains (drawn)"]["wrong"] + groups["sparse operands (drawn)"]["wrong"]
    assert drawn.wrong == plain.wrong + extra
    assert "with many zero digits" in drawn.method


def test_ten_digit_operands_go_through_keras_onnx_and_the_cli_alike(tiny_wide_model):
    from adder import Adder, QueryError
    from adder.eval.draws import sample_expressions
    from tests.test_parity import assert_parity

    keras_path, onnx_path = tiny_wide_model
    adder = Adder(onnx_path)
    assert adder.config.max_operand == 9_999_999_999 and adder.config.output_length == 11
    expressions = sample_expressions(adder.config, 2000, np.random.default_rng(0), small_share=0.5)
    expressions += [adder.parse(q) for q in TEN_DIGIT_QUERIES]
    assert_parity(keras_path, onnx_path, expressions)
    results = list(adder.results(TEN_DIGIT_QUERIES + TEN_DIGIT_BAD))
    assert all(isinstance(r, QueryError) for r in results[len(TEN_DIGIT_QUERIES) :])
    assert "outside this model's range 0..9999999999" in str(results[len(TEN_DIGIT_QUERIES)])
    printed = run_adder("--model", str(onnx_path), *TEN_DIGIT_QUERIES)
    answers = [str(r) if not isinstance(r, QueryError) else "" for r in results[: len(TEN_DIGIT_QUERIES)]]
    assert printed.stdout.decode().split("\n")[: len(answers)] == answers


def test_a_few_wrong_in_millions_never_print_as_100_percent():
    """3 wrong of 24,093,649 is 99.99998%: rounded, that reads 100.0000%, a claim of exactness the
    counts refute. Shares are printed rounded down."""
    from adder.eval.evaluate import Evaluation
    from adder.figures import percent

    result = Evaluation("suites", total=24_093_649, wrong=3, groups={"uniform": {"total": 10_000_000, "wrong": 3}})
    assert "100.0000%" not in result.summary() and "exact-match 99.9999% (3 wrong of 24,093,649" in result.summary()
    assert "uniform: 99.9999% (3 wrong" in result.summary()
    assert percent(1.0) == "100.0000%" and percent(1 - 1 / 10_010) == "99.9900%" and percent(0.0) == "0.0000%"


def test_adder_eval_adds_propagate_runs_to_the_suites_when_asked(tmp_path, monkeypatch):
    """``adder-eval --runs N``: the suites, then N pairs summing to 9 over a run with no carry
    into it, drawn with --uniform-seed; one wrong among them fails the model."""
    from typer.testing import CliRunner

    import adder.commands.evaluate as cli
    from adder.eval import suites

    asked = []

    def predict(shape, terms):
        asked.append(terms.copy())
        values = terms.sum(axis=1)
        values[terms.sum(axis=1) == WIDE.max_operand] += 1  # wrong where a run covers all ten digits
        values[(terms % 10 == 9).all(axis=1) & (terms > 10**9).all(axis=1)] += 1  # and on 9+9 units, ten digits
        return values, np.ones(len(terms), dtype=bool)

    predict.takes_blocks = True
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    monkeypatch.setattr(cli, "predictor_for", lambda path: (predict, WIDE))
    monkeypatch.setattr(suites, "evaluate_suites", lambda *a, **k: {"fixed": Evaluation("every case", 10)})
    result = CliRunner().invoke(cli.eval_app, [str(model), "--no-progress", "--runs", "2000", "--uniform-seed", "7"])
    assert result.exit_code == 1, result.output
    assert "plus 2,000 pairs summing to 9 over a run with no carry into it" in result.output
    assert sum(len(t) for t in asked) == 2000 and all(nine_run(a, b) for t in asked for a, b in t.tolist())
    clean = CliRunner().invoke(cli.eval_app, [str(model), "--no-progress"])
    assert clean.exit_code == 0 and "summing to 9" not in clean.output
    asked.clear()
    dense = CliRunner().invoke(cli.eval_app, [str(model), "--no-progress", "--nines", "3000"])
    assert dense.exit_code == 1 and "plus 3,000 pairs whose every digit is 9 with probability 1/2" in dense.output
    nines = [(str(a).zfill(10) + str(b).zfill(10)).count("9") for t in asked for a, b in t.tolist()]
    assert len(nines) == 3000 and 10 < np.mean(nines) < 12  # 9999999999 + 0 and the like are among them
