"""The replay pool: filled by evaluations, saved with the checkpoint, kept across a resume."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from adder.config import ModelConfig
from adder.grammar import Expression
from adder.train.data import REPLAY_COPIES, epoch_expressions
from adder.train.replay import MAX_POOL, ReplayPool
from tests.conftest import kill_after_first_epoch, loop_recipe, needs_training

ARITH = ModelConfig(min_terms=2, max_terms=3, operators="+-", brackets=True, max_operand=99)
TRAIN = [sys.executable, "-c", "from adder.commands.train import main; main()"]


def test_a_pool_round_trips_through_its_file_with_brackets(tmp_path):
    pool = ReplayPool()
    queries = [Expression((0, 0, 0), ("+", "+")), Expression((12, 7, 30), ("-", "+"), ((0, 1),))]
    assert pool.add(queries) == 2 and pool.add(queries[:1]) == 0
    pool.save(tmp_path / "replay.json")
    assert ReplayPool.load(tmp_path / "replay.json", ARITH).queries == [queries[1], queries[0]]
    pool.reset(queries[:1])
    assert pool.queries == queries[:1]


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "unreadable replay pool"),
        ('{"queries": 3}', "not a list"),
        ('{"queries": ["1000+1"]}', "outside the model's domain"),
        ('{"other": []}', "unreadable replay pool"),
    ],
)
def test_a_damaged_pool_file_is_refused_with_its_path(tmp_path, content, message):
    (tmp_path / "replay.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        ReplayPool.load(tmp_path / "replay.json", ARITH)


def test_the_pool_keeps_the_newest_queries_up_to_its_limit(monkeypatch):
    monkeypatch.setattr("adder.train.replay.MAX_POOL", 3)
    pool = ReplayPool()
    pool.add([Expression((i, 1), ("+",)) for i in range(5)])
    assert [e.terms[0] for e in pool.queries] == [2, 3, 4]
    assert MAX_POOL >= 100_000


def test_an_epoch_replays_its_share_of_the_pool_and_stays_reproducible():
    config = ModelConfig(max_operand=99)
    hard = [Expression((i, 1), ("+",)) for i in range(20, 40)]
    args = (config, 1000, 0, 5, None, 0.25, hard, 0.3)
    first, again = epoch_expressions(*args), epoch_expressions(*args)
    assert first == again and len(first) == 1000
    replayed = sum(e in hard for e in first)
    assert 300 <= replayed <= 310  # 300 drawn from the pool, plus any fresh draw that hits one
    few = hard[:2]  # a small pool is not drawn 300 times: at most REPLAY_COPIES each
    replayed = sum(e in few for e in epoch_expressions(config, 1000, 0, 5, None, 0.25, few, 0.3))
    assert 2 * REPLAY_COPIES <= replayed <= 2 * REPLAY_COPIES + 5


def test_small_operands_are_served():
    from adder.eval.draws import sample_expressions

    config = ModelConfig(min_terms=3, max_terms=3, max_operand=99)
    rng = np.random.default_rng(0)
    uniform = sample_expressions(config, 20_000, rng)
    mixed = sample_expressions(config, 20_000, rng, small_share=0.5)
    all_small = [sum(max(e.terms) < 10 for e in s) for s in (uniform, mixed)]
    assert all_small[0] < 60 and all_small[1] > 10 * all_small[0]


@needs_training
@pytest.mark.slow
def test_the_pool_is_in_the_checkpoint_and_a_resumed_run_keeps_it(tmp_path):
    out = tmp_path / "m.keras"
    args = [
        "--largest",
        "9",
        "--epochs",
        "3",
        "--samples",
        "20000",
        "--batch-size",
        "32",
    ]
    command = [*TRAIN, *args, "--arch", "8/8", "--out", str(out)]
    state, saved = tmp_path / "m.keras.ckpt" / "state.json", tmp_path / "m.keras.ckpt" / "replay.json"
    kill_after_first_epoch(command, state)
    pool = json.loads(saved.read_text())["queries"]
    history = json.loads(state.read_text())["history"]
    assert len(pool) > 0 and history[-1]["replay_pool"] == len(pool)  # an 8/8 model after one epoch is mostly wrong
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert re.search(
        rf"resuming from epoch {len(history) + 1} \(checkpoint .*, replay pool {len(pool):,}\)", result.stdout
    )
    record = json.loads(out.with_suffix(".json").read_text())
    assert all("replay_pool" in h for h in record["training"]["history"])
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_term_mix_weights_the_term_counts_drawn():
    from adder.eval.draws import sample_expressions

    rng = np.random.default_rng(0)
    uniform = sample_expressions(ARITH, 20_000, rng)
    mixed = sample_expressions(ARITH, 20_000, rng, term_weights=(1.0, 9.0))
    three = [sum(len(e.terms) == 3 for e in s) / 20_000 for s in (uniform, mixed)]
    assert 0.48 < three[0] < 0.52 and 0.88 < three[1] < 0.92
    # A curriculum that narrows the grammar to two terms drops the weights past it.
    from dataclasses import replace

    narrowed = sample_expressions(replace(ARITH, max_terms=2), 1000, rng, term_weights=(1.0, 9.0))
    assert all(len(e.terms) == 2 for e in narrowed)


@pytest.mark.parametrize(
    "mix, message",
    [("1", "needs 2 weight"), ("a:b", "weights like"), ("0:0", "not all 0"), ("1:-1", "non-negative")],
)
def test_a_bad_term_mix_is_one_line(mix, message):
    result = subprocess.run(
        [*TRAIN, "--terms", "2-3", "--term-mix", mix, "--out", "/tmp/never.keras"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@needs_training
def test_sampled_checks_feed_the_pool_and_never_count_as_exact(tmp_path):
    """A sampled check's wrong queries join the pool; only an exhaustive check may end a run."""
    out = tmp_path / "m.keras"
    args = [
        "--terms",
        "2-3",
        "--largest",
        "9",
        "--ops",
        "+-",
        "--term-mix",
        "1:3",
        "--epochs",
        "2",
    ]
    args += ["--samples", "2000", "--check-every", "1", "--check-sample", "300", "--arch", "8/8"]
    result = subprocess.run([*TRAIN, *args, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "sampled check: exact-match" in result.stdout and "sample of 300 drawn uniformly" in result.stdout
    history = json.loads(out.with_suffix(".json").read_text())["training"]["history"]
    checked = [h for h in history if "sample_check_wrong" in h]
    assert checked and all(h["sample_check_total"] == 300 and "full_check_wrong" not in h for h in checked)
    assert checked[0]["replay_pool"] >= checked[0]["sample_check_wrong"] > 0  # an 8/8 model after an epoch


@needs_training
@pytest.mark.parametrize("pooled_still_wrong, exhaustive", [(0, True), (1, False)])
def test_a_clean_sample_calls_for_the_whole_domain_only_once_the_pool_is_right(
    tmp_path, monkeypatch, pooled_still_wrong, exhaustive
):
    """A sample with nothing wrong leads to an exhaustive check, unless a query the pool
    holds (say, from the last exhaustive check) is still answered wrong; then the
    exhaustive check waits for the end of the cycle, which a near-clean sample ends with
    one (so the next cycle would replay every wrong query, not the sample's few)."""
    import adder.train.checks as checks_module
    import adder.train.fit as fit_module
    from adder.eval.evaluate import Evaluation

    calls = []

    def scripted_check(model, config, sample=0, seed=2026, **drawn_shares):
        calls.append(sample)
        return Evaluation("exhaustive" if not sample else f"sample of {sample:,}", total=sample or 100)

    def scripted_right(model, codec, x, truth):  # the probe and the pool's recheck alike
        right = np.ones(len(x), dtype=bool)
        right[:pooled_still_wrong] = False
        return right

    monkeypatch.setattr(fit_module, "full_check", scripted_check)

    monkeypatch.setattr(checks_module, "full_check", scripted_check)
    monkeypatch.setattr(fit_module, "answers_right", scripted_right)
    monkeypatch.setattr(checks_module, "answers_right", scripted_right)
    config = ModelConfig(max_operand=9)
    settings = loop_recipe(config.max_operand, epochs=3, samples=200, check_every=1, check_sample=50, replay_share=0.25)
    model, history, outcome = fit_module.fit(settings, tmp_path / "m.keras", log=lambda _: None
    )
    assert calls[:2] == ([50, 0] if exhaustive else [50, 50])
    if exhaustive:  # the exhaustive check found nothing wrong: the run ends after epoch 1
        assert outcome.exact and outcome.result.method == "exhaustive"
        assert len([h for h in history if "loss" in h]) == 1
    else:  # the cycle's end (epoch 3) checks the whole domain, which is right here: exact then
        assert calls == [50, 50, 50, 0]
        assert [h["epoch"] for h in history if "full_check_wrong" in h] == [3]
        assert outcome.exact and outcome.result.method == "exhaustive"


def test_largest_operands_are_served_and_a_share_of_0_draws_the_data_it_always_did():
    from adder.eval.draws import draw_operands
    from adder.train.data import epoch_expressions

    config = ModelConfig(min_terms=3, max_terms=3, max_operand=99, operators="+-", brackets=True)
    drawn = draw_operands(config, (50_000, 3), np.random.default_rng(0), 0.25, large_share=0.05)
    assert 0.05 <= (drawn == 99).mean() <= 0.065 and (drawn == 99).all(axis=1).sum() > 5
    # the recipes without it see the very queries they saw before it existed
    before = draw_operands(config, (1000, 3), np.random.default_rng(1), 0.25)
    after = draw_operands(
        config, (1000, 3), np.random.default_rng(1), 0.25, large_share=0.0, carry_share=0.0, sparse_share=0.0
    )
    assert np.array_equal(before, after)
    assert epoch_expressions(config, 500, 0, 3, None, 0.25) == epoch_expressions(
        config, 500, 0, 3, None, 0.25, large_share=0.0, carry_share=0.0, sparse_share=0.0
    )


def carry_length(a: int, b: int) -> int:
    """The longest carry chain of a + b: a digit whose pair sums to 10 or more, and the digits
    above it whose pair sums to exactly 9, each of which carries only because a carry came in."""
    longest = run = carry = 0
    while a or b:
        pair = a % 10 + b % 10
        run = 1 if pair >= 10 else run + 1 if pair == 9 and carry else 0
        carry = (pair + carry) // 10
        longest = max(longest, run)
        a, b = a // 10, b // 10
    return longest


def test_carry_pairs_carry_through_chains_of_every_length_and_uniform_pairs_do_not():
    from adder.eval.draws import carry_pairs

    config = ModelConfig(max_operand=9_999_999_999)
    a, b = carry_pairs(config, 20_000, np.random.default_rng(0))
    lengths = np.bincount([carry_length(x, y) for x, y in zip(a.tolist(), b.tolist())], minlength=11)
    assert all(lengths[k] > 1000 for k in range(1, 11))  # every length, about one pair in ten each
    assert (a <= config.max_operand).all() and (b <= config.max_operand).all()
    uniform = np.random.default_rng(1).integers(0, 10**10, size=(20_000, 2)).tolist()
    assert sum(carry_length(x, y) >= 5 for x, y in uniform) < 0.002 * len(uniform)


def nonzero_digits(values: np.ndarray) -> np.ndarray:
    return np.array([sum(d != "0" for d in str(v)) if v else 0 for v in values.tolist()])


def test_sparse_operands_have_every_count_of_nonzero_digits_and_stay_in_range():
    from adder.eval.draws import draw_operands, sparse_operands

    wide = ModelConfig(max_operand=9_999_999_999)
    counts = np.bincount(nonzero_digits(sparse_operands(wide, 22_000, np.random.default_rng(0))), minlength=11)
    assert len(counts) == 11 and all(1600 < c < 2400 for c in counts)  # uniform over 0..10: 2,000 each
    uniform = np.random.default_rng(1).integers(0, 10**10, size=22_000)
    assert (nonzero_digits(uniform) <= 2).sum() == 0  # what uniform draws give the suite of sparse operands
    without = draw_operands(wide, (20_000, 2), np.random.default_rng(2), 0.5)
    drawn = draw_operands(wide, (20_000, 2), np.random.default_rng(2), 0.5, sparse_share=0.3)
    gain = (nonzero_digits(drawn[:, 0]) <= 2).mean() - (nonzero_digits(without[:, 0]) <= 2).mean()
    assert 0.04 < gain < 0.09  # 30% of operands, 3 in 11 of those, less the narrow ones they replace
    # a domain whose width admits values past its largest keeps its range
    narrow = ModelConfig(min_operand=10, max_operand=500)
    drawn = draw_operands(narrow, (20_000, 2), np.random.default_rng(3), 0.0, sparse_share=1.0)
    assert drawn.min() >= 10 and drawn.max() <= 500 and (drawn % 10 == 0).mean() > 0.18  # uniform: 0.1


def script_suites_clean_and_fresh_draws(
    monkeypatch, fresh_wrong: int, size: int, wrong_block: int = 1
) -> list[np.ndarray]:
    """Every check of a run scripted clean (sampled, then "suites"), and the fresh draws answered
    right but for the first ``fresh_wrong`` pairs of the ``wrong_block``-th block asked; returns
    the blocks drawn."""
    import adder.train.checks as checks_module
    import adder.train.fit as fit_module
    from adder.eval import suites
    from adder.eval.evaluate import Evaluation

    drawn = []

    def scripted_check(model, config, sample=0, seed=2026, **drawn_shares):
        return Evaluation(f"sample of {sample:,}" if sample else "suites of 100 fixed cases", total=sample or 100)

    def predictor(model, config, to_onnx=None):
        def predict(shape, terms):
            drawn.append(terms.copy())
            values = terms.sum(axis=1)
            values[: fresh_wrong if len(drawn) == wrong_block else 0] += 1  # wrong on that block's first pairs only
            return values, np.ones(len(terms), dtype=bool)

        predict.takes_blocks = True
        return predict, "scripted"

    monkeypatch.setattr(fit_module, "full_check", scripted_check)

    monkeypatch.setattr(checks_module, "full_check", scripted_check)
    monkeypatch.setattr(checks_module, "domain_predictor", predictor)
    monkeypatch.setattr(fit_module, "answers_right", lambda model, codec, x, truth: np.ones(len(x), dtype=bool))
    monkeypatch.setattr(checks_module, "answers_right", lambda model, codec, x, truth: np.ones(len(x), dtype=bool))
    monkeypatch.setattr(suites, "UNIFORM_SIZE", size)
    return drawn


@needs_training
@pytest.mark.parametrize("fresh_wrong", [0, 3])
def test_clean_suites_end_a_run_only_once_pairs_drawn_afresh_are_right_too(tmp_path, monkeypatch, fresh_wrong):
    """Where the suites stand in for the domain, their uniform pairs have been replayed by the
    time they are clean; a run is exact only when uniform pairs drawn for that check alone
    are right as well, and what those get wrong is replayed like any other find."""
    import adder.train.fit as fit_module
    from adder.eval import suites

    config = ModelConfig(max_operand=9_999)  # 10^8 queries: too many to enumerate, so the suites judge
    drawn = script_suites_clean_and_fresh_draws(monkeypatch, fresh_wrong, 500)
    settings = loop_recipe(config.max_operand, epochs=3, samples=200, check_every=1, check_sample=50, seed=4)
    model, history, outcome = fit_module.fit(settings, tmp_path / "m.keras", log=lambda _: None
    )
    checked = [h for h in history if "fresh_check_wrong" in h]
    assert [h["fresh_check_seed"] for h in checked] == [suites.fresh_seed(4, h["epoch"]) for h in checked]
    assert len({h["fresh_check_seed"] for h in checked}) == len(checked)  # each check its own pairs
    expected = np.random.default_rng(suites.fresh_seed(4, 1)).integers(0, 10_000, size=(500, 2))
    assert np.array_equal(drawn[0], expected)
    assert outcome.exact and outcome.result.is_verdict and outcome.result.wrong == 0
    assert f"uniform pairs drawn afresh (numpy seed {suites.fresh_seed(4, checked[-1]['epoch'])})" in (
        outcome.result.groups
    )
    if fresh_wrong:  # epoch 1's suites were clean and its fresh pairs were not: not exact yet; they are replayed
        assert [h["fresh_check_wrong"] for h in checked] == [fresh_wrong, 0]
        assert history[0]["replay_pool"] == fresh_wrong and history[0]["full_check_wrong"] == fresh_wrong
    else:
        assert [h["epoch"] for h in checked] == [1] and len([h for h in history if "loss" in h]) == 1


@needs_training
@pytest.mark.parametrize("fresh_wrong", [0, 2])
def test_a_starting_model_clean_on_the_suites_is_confirmed_on_fresh_pairs_before_it_counts_as_exact(
    tmp_path, monkeypatch, fresh_wrong
):
    import adder.train.fit as fit_module
    from adder.eval import suites
    from adder.train.model import Architecture, build_model

    config = ModelConfig(max_operand=9_999)
    script_suites_clean_and_fresh_draws(monkeypatch, fresh_wrong, 300)
    arch = Architecture((4,), (4,))
    settings = loop_recipe(config.max_operand, epochs=2, samples=200, check_every=1, check_sample=50)
    model, history, outcome = fit_module.fit(settings, tmp_path / "m.keras", log=lambda _: None,
        init=build_model(config, arch),
    )  # fmt: skip
    start = history[0]
    assert start["epoch"] == 0 and start["fresh_check_seed"] == suites.fresh_seed(0, 0)
    assert start["fresh_check_wrong"] == start["full_check_wrong"] == fresh_wrong
    assert outcome.exact
    if fresh_wrong:  # not exact at the start: trained, and exact after a later clean draw
        assert outcome.reason == "exact after epoch 1" and start["replay_pool"] == fresh_wrong
    else:
        assert outcome.reason == "the starting model is exact" and len(history) == 1


@needs_training
@pytest.mark.parametrize("further", [0, 200])
def test_a_clean_fresh_draw_is_continued_before_a_run_stops_and_what_the_rest_finds_is_replayed(
    tmp_path, monkeypatch, further
):
    """With ``confirm_further``, a clean fresh draw of its first pairs goes on for more of the
    same draw and for pairs summing to 9 over a run with no carry into it; here the first
    check's continuation has one wrong pair, which is replayed, and the second check ends
    the run. Without it, that first check ends the run."""
    import adder.train.fit as fit_module
    from adder.eval import suites

    calls = script_suites_clean_and_fresh_draws(monkeypatch, 1, 500, wrong_block=6)  # the continuation's first
    monkeypatch.setattr(suites, "CHUNK", 100)  # so a draw of 500 is five blocks, continued in whole ones
    config = ModelConfig(max_operand=9_999)
    settings = loop_recipe(config.max_operand, epochs=3, samples=200, check_every=1, check_sample=50, seed=4, confirm_further=further
    )
    model, history, outcome = fit_module.fit(settings, tmp_path / "m.keras", log=lambda _: None
    )
    assert outcome.exact and outcome.result.wrong == 0
    checked = [h for h in history if "fresh_check_wrong" in h]
    assert all(h["fresh_check_wrong"] == 0 for h in checked)
    if not further:
        assert len(checked) == 1 and not any("further_check_wrong" in h for h in history) and len(calls) == 5
        return
    assert [h["further_check_wrong"] for h in checked] == [1, 0] and history[0]["replay_pool"] == 1
    assert len(calls) == 16  # each check: 5 blocks of its fresh draw, 2 continuing it, 1 of 20 runs
    seed = suites.fresh_seed(4, 1)
    whole = np.random.default_rng(seed).integers(0, 10_000, size=(700, 2))
    assert np.array_equal(np.concatenate(calls[:7]), whole)  # the same draw, continued
    assert len(calls[7]) == 20
    assert "the next 200 pairs of that draw" in outcome.result.method
    assert "20 pairs summing to 9 over a run with no carry into it" in outcome.result.method


@needs_training
@pytest.mark.parametrize("beyond", [0, 500])
def test_a_clean_further_check_goes_on_beyond_and_the_run_is_the_same_until_then(tmp_path, monkeypatch, beyond):
    """With ``confirm_beyond``, a verdict whose further check is clean draws more of the same
    draw and more runs; here that stage finds one wrong pair at the first check, which is
    replayed, and the second check ends the run. Without it the first check ends the run,
    and up to that verdict the two runs are the same."""
    import adder.train.fit as fit_module
    from adder.eval import suites
    from adder.eval.draws import propagate_run_pairs

    # each check: 5 blocks of its fresh draw, 10 continuing it, 1 of 100 runs; then beyond:
    # 1 of 10 nine-dense pairs, 5 of the draw continued again, 1 of 50 more runs
    calls = script_suites_clean_and_fresh_draws(monkeypatch, 1, 500, wrong_block=18)  # beyond's first uniform
    monkeypatch.setattr(suites, "CHUNK", 100)
    config = ModelConfig(max_operand=9_999)
    settings = loop_recipe(config.max_operand, epochs=3, samples=200, check_every=1, check_sample=50, seed=4, confirm_further=1000, confirm_beyond=beyond
    )
    model, history, outcome = fit_module.fit(settings, tmp_path / "m.keras", log=lambda _: None
    )
    assert outcome.exact and outcome.result.wrong == 0
    checked = [h for h in history if "further_check_wrong" in h]
    assert all(h["fresh_check_wrong"] == 0 and h["further_check_wrong"] == 0 for h in checked)
    if not beyond:
        assert len(checked) == 1 and len(calls) == 16 and not any("beyond_check_wrong" in h for h in history)
        return
    assert [h["beyond_check_wrong"] for h in checked] == [1, 0] and history[0]["replay_pool"] == 1
    assert len(calls) == 46 and len(calls[16]) == 10
    whole = np.random.default_rng(suites.fresh_seed(4, 1)).integers(0, 10_000, size=(2000, 2))
    assert np.array_equal(np.concatenate(calls[:15] + calls[17:22]), whole)  # one draw, continued twice
    rng = np.random.default_rng([suites.fresh_seed(4, 1), suites.RUNS_STREAM])
    runs = [propagate_run_pairs(config, 100, rng), propagate_run_pairs(config, 50, rng)]  # the runs, continued
    assert all(np.array_equal(calls[i], drawn) for i, drawn in zip((15, 22), runs))
    assert "the next 500 pairs of that draw" in outcome.result.method
    assert "the next 50 pairs summing to 9 over a run with no carry into it" in outcome.result.method


def test_a_run_confirms_further_and_mines_runs_only_once_a_fresh_draw_was_clean():
    from adder.train.fit import confirming
    from adder.train.recipe import Recipe

    dirty = [{"epoch": 10, "fresh_check_wrong": 2}, {"epoch": 20}]
    clean = dirty + [{"epoch": 30, "fresh_check_wrong": 0}]
    assert not confirming(Recipe(confirm_further=100_000), dirty)
    assert confirming(Recipe(confirm_further=100_000), clean)
    assert not confirming(Recipe(), clean)


@needs_training
def test_averaged_weights_are_judged_once_a_run_goes_beyond_and_a_resumed_run_keeps_their_mean(tmp_path, monkeypatch):
    """With ``average_weights``, the checks after a clean further check judge the mean of the
    weights after each epoch since, and the run returns that mean; before it they judge the
    model itself. Here the beyond stage's nine-dense pairs have one wrong at the first three
    verdicts, so epochs 2-4 are averaged and the fourth verdict ends the run. A run broken
    after epoch 2 and resumed ends with the same weights, to the bit."""
    import adder.train.checks as checks_module
    import adder.train.fit as fit_module
    from adder.eval import suites
    from adder.eval.evaluate import Evaluation

    monkeypatch.setattr(suites, "UNIFORM_SIZE", 500)
    monkeypatch.setattr(suites, "CHUNK", 100)
    config = ModelConfig(max_operand=9_999)
    settings = loop_recipe(config.max_operand, epochs=6, samples=200, check_every=1, check_sample=50, seed=4, confirm_further=1000, confirm_beyond=500,
        average_weights=True,
    )  # fmt: skip

    original = fit_module.train_epoch

    def run(out, nines, crash_after=0):
        raw, judged = [], []

        def scripted_check(model, config, sample=0, seed=2026, **drawn_shares):
            judged.append(model.get_weights())
            return Evaluation(f"sample of {sample:,}" if sample else "suites of 100 fixed cases", total=sample or 100)

        def predictor(model, config, to_onnx=None):
            def predict(shape, terms):
                values = terms.sum(axis=1)
                if len(terms) == 10:  # the beyond stage's nine-dense pairs: one wrong at each of three verdicts
                    nines.append(1)
                    values[: 1 if len(nines) <= 3 else 0] += 1
                return values, np.ones(len(terms), dtype=bool)

            predict.takes_blocks = True
            return predict, "scripted"

        def train_epoch(model, *args, **kwargs):
            if crash_after and len(raw) == crash_after:
                raise KeyboardInterrupt  # as a crash would, after the last checkpoint
            loss = original(model, *args, **kwargs)
            raw.append(model.get_weights())
            return loss

        monkeypatch.setattr(fit_module, "full_check", scripted_check)

        monkeypatch.setattr(checks_module, "full_check", scripted_check)
        monkeypatch.setattr(checks_module, "domain_predictor", predictor)
        monkeypatch.setattr(fit_module, "answers_right", lambda model, codec, x, truth: np.ones(len(x), dtype=bool))
        monkeypatch.setattr(checks_module, "answers_right", lambda model, codec, x, truth: np.ones(len(x), dtype=bool))
        monkeypatch.setattr(fit_module, "train_epoch", train_epoch)
        try:
            model, history, outcome = fit_module.fit(settings, out, log=lambda _: None
            )  # fmt: skip
        except KeyboardInterrupt:
            return raw, judged, None, None
        return raw, judged, model, history

    raw, judged, model, history = run(tmp_path / "a.keras", [])
    assert [h.get("averaged_epochs") for h in history] == [None, 1, 2, 3]
    assert [h["beyond_check_wrong"] for h in history] == [1, 1, 1, 0]
    # each epoch's checks judged the sampled model, then the verdict's: the model itself at epoch 1
    assert all(np.array_equal(a, b) for a, b in zip(judged[0], raw[0]))
    mean = [
        np.mean([np.asarray(r[i], np.float64) for r in raw[1:]], axis=0).astype(np.float32) for i in range(len(raw[0]))
    ]
    assert all(np.array_equal(a, b) for a, b in zip(judged[-1], mean))  # the last verdict's: the mean of 2-4
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), mean))  # and the model returned
    assert not all(np.array_equal(a, b) for a, b in zip(mean, raw[-1]))
    # broken after epoch 2 (a mean of one epoch in its checkpoint), resumed: the same mean to the bit
    nines = []
    run(tmp_path / "b.keras", nines, crash_after=2)
    assert (tmp_path / "b.keras.ckpt" / "mean.npz").exists()
    _, _, resumed, resumed_history = run(tmp_path / "b.keras", nines)

    def timeless(entries):
        return [{k: v for k, v in h.items() if not k.endswith("_seconds")} for h in entries]

    assert timeless(resumed_history) == timeless(history)
    assert all(np.array_equal(a, b) for a, b in zip(resumed.get_weights(), model.get_weights()))
