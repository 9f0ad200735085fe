"""Mining unsure answers, carry-dense pairs, and finishing cycles held at a constant rate."""

import numpy as np
import pytest

from adder.config import ModelConfig
from adder.eval import suites
from adder.eval.draws import dense_carry_pairs, propagate_run_pairs
from adder.train.mining import margins, mine
from adder.train.policy import first_cycle, learning_rate_at, next_cycle
from tests.conftest import loop_recipe, needs_training

WIDE = ModelConfig(max_operand=9_999_999_999)


def carries(a: int, b: int) -> int:
    """How many digit positions of a + b carry out."""
    count = carry = 0
    while a or b or carry:
        carry = (a % 10 + b % 10 + carry) // 10
        count += carry
        a, b = a // 10, b // 10
    return count


def test_dense_carry_pairs_carry_out_of_every_count_of_digits_alike():
    pairs = dense_carry_pairs(WIDE, 22_000, np.random.default_rng(5))
    assert pairs.min() >= 0 and pairs.max() <= WIDE.max_operand
    counts = np.bincount([carries(a, b) for a, b in pairs.tolist()], minlength=11)
    shares = counts / counts.sum()
    assert len(counts) == 11 and (shares > 0.07).all() and (shares < 0.115).all()  # each 1/11, about 0.091
    uniform = np.random.default_rng(5).integers(0, WIDE.max_operand + 1, size=(22_000, 2))
    dense = (np.bincount([carries(a, b) for a, b in uniform.tolist()], minlength=11)[8:].sum()) / 22_000
    assert dense < 0.1 < shares[8:].sum()  # uniform pairs seldom carry out of 8 or more digits


def nine_run(a: int, b: int) -> tuple[int, int] | None:
    """The longest run of digit positions whose pairs sum to exactly 9 with no carry into
    the run, as (start, length) with the units digit at 0; None if no such run."""
    sums, carry_in, width = [], [], 10
    carry = 0
    for i in range(width):
        digit_sum = a // 10**i % 10 + b // 10**i % 10
        sums.append(digit_sum)
        carry_in.append(carry)
        carry = (digit_sum + carry) // 10
    best = None
    i = 0
    while i < width:
        if sums[i] == 9 and not carry_in[i]:
            j = i
            while j < width and sums[j] == 9:
                j += 1
            if best is None or j - i > best[1]:
                best = (i, j - i)
            i = j
        else:
            i += 1
    return best


def test_propagate_runs_sum_to_9_over_every_length_and_start_with_no_carry_into_them():
    pairs = propagate_run_pairs(WIDE, 20_000, np.random.default_rng(8))
    assert pairs.min() >= 0 and pairs.max() <= WIDE.max_operand
    runs = [nine_run(a, b) for a, b in pairs.tolist()]
    assert None not in runs
    lengths = np.bincount([length for _, length in runs], minlength=11)[1:]
    assert (lengths > 1_000).all()  # every length 1-10, each about 1 in 10 (longer by chance)
    assert {start for start, _ in runs} == set(range(10))
    assert sum(a + b == WIDE.max_operand for a, b in pairs.tolist()) > 1_500  # all ten: 9,999,999,999
    uniform = np.random.default_rng(8).integers(0, WIDE.max_operand + 1, size=(20_000, 2))
    assert (
        sum((nine_run(a, b) or (0, 0))[1] >= 5 for a, b in uniform.tolist())
        < 20
        < sum(length >= 5 for _, length in runs)
    )  # uniform pairs: about 1 in 20,000 has such a run of 5 or more


def test_dense_carry_pairs_stay_in_a_narrower_range():
    narrow = ModelConfig(min_operand=10, max_operand=500)
    pairs = dense_carry_pairs(narrow, 5_000, np.random.default_rng(1))
    assert pairs.min() >= 10 and pairs.max() <= 500


def test_a_margin_is_the_weakest_step_winning_over_its_runner_up():
    probabilities = np.array(
        [
            [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]],  # steps win by 0.85 and 0.5
            [[0.1, 0.1, 0.8], [0.34, 0.33, 0.33]],  # 0.7 and 0.01: one step is a coin toss
        ]
    )
    assert margins(probabilities) == pytest.approx([0.5, 0.01])


def scripted_probabilities(unsure: set[tuple[int, int]], config: ModelConfig, seen: list):
    """Right answers for every pair, given with a margin of 0.2 for the ``unsure`` ones, 1 else."""
    from adder.codec import Codec

    codec = Codec(config)

    def probabilities(shape, terms):
        seen.append((shape, terms.copy()))
        steps = codec.encode_answers(terms.sum(axis=1))  # the right symbol's index at every step
        output = np.eye(len(config.alphabet))[steps]
        weak = np.flatnonzero([tuple(row) in unsure for row in terms.tolist()])
        output[weak, 0, :] = 0.0
        output[weak, 0, steps[weak, 0]] = 0.6
        output[weak, 0, (steps[weak, 0] + 1) % len(config.alphabet)] = 0.4  # step 0 wins by 0.2
        return output

    return probabilities


def test_mining_keeps_exactly_the_unsure_answers_of_a_reproducible_draw():
    seen = []
    everything = scripted_probabilities(set(), WIDE, seen)
    mine(everything, WIDE, 1_000, seed=3, epoch=7, below=0.5)
    drawn = [tuple(row) for _, terms in seen for row in terms.tolist()]
    assert len(drawn) == 1_000 and len(set(drawn)) == 1_000
    assert sum(carries(a, b) >= 8 for a, b in drawn[500:]) > 100  # half carry-dense: 27% carry out of 8+
    unsure = set(drawn[::37])
    found = mine(scripted_probabilities(unsure, WIDE, []), WIDE, 1_000, seed=3, epoch=7, below=0.5)
    assert {e.terms for e in found} == unsure and all(e.operators == ("+",) for e in found)
    assert mine(scripted_probabilities(unsure, WIDE, []), WIDE, 1_000, seed=3, epoch=7, below=0.1) == []
    other = []
    mine(scripted_probabilities(set(), WIDE, other), WIDE, 1_000, seed=3, epoch=8, below=0.5)
    assert not set(drawn) & {tuple(row) for _, terms in other for row in terms.tolist()}  # each epoch its own


def test_mined_propagate_runs_come_after_the_same_draw_as_without_them():
    without, beside = [], []
    mine(scripted_probabilities(set(), WIDE, without), WIDE, 1_000, seed=3, epoch=7, below=0.5)
    mine(scripted_probabilities(set(), WIDE, beside), WIDE, 1_000, seed=3, epoch=7, below=0.5, runs=300)
    first = np.concatenate([terms for _, terms in without])
    drawn = np.concatenate([terms for _, terms in beside])
    assert len(drawn) == 1_300 and np.array_equal(drawn[:1_000], first)
    assert all(nine_run(a, b) for a, b in drawn[1_000:].tolist())
    unsure = {tuple(row) for row in drawn[1_000::29].tolist()}
    found = mine(scripted_probabilities(unsure, WIDE, []), WIDE, 1_000, seed=3, epoch=7, below=0.5, runs=300)
    assert {e.terms for e in found} == unsure


def test_mined_nine_dense_pairs_come_after_the_runs_and_the_rest_is_the_same_draw():
    from adder.eval.draws import nine_dense_pairs

    beside, more = [], []
    mine(scripted_probabilities(set(), WIDE, beside), WIDE, 1_000, seed=3, epoch=7, below=0.5, runs=300)
    mine(scripted_probabilities(set(), WIDE, more), WIDE, 1_000, seed=3, epoch=7, below=0.5, runs=300, nines=400)
    first = np.concatenate([terms for _, terms in beside])
    drawn = np.concatenate([terms for _, terms in more])
    assert len(drawn) == 1_700 and np.array_equal(drawn[:1_300], first)
    nines = [(str(a).zfill(10) + str(b).zfill(10)).count("9") for a, b in drawn[1_300:].tolist()]
    assert 10 < np.mean(nines) < 12  # 20 digits, each 9 with probability 1/2 + 1/20
    assert np.array_equal(
        nine_dense_pairs(WIDE, 5, np.random.default_rng(1)), nine_dense_pairs(WIDE, 5, np.random.default_rng(1))
    )
    small = ModelConfig(max_operand=5_000)
    assert (nine_dense_pairs(small, 2_000, np.random.default_rng(2)) <= 5_000).all()  # out of range: redrawn
    unsure = {tuple(row) for row in drawn[1_300::31].tolist()}
    found = mine(scripted_probabilities(unsure, WIDE, []), WIDE, 1_000, seed=3, epoch=7, below=0.5, runs=300, nines=400)
    assert {e.terms for e in found} == unsure


def test_a_held_cycle_keeps_its_rate_where_a_finishing_one_would_restart():
    cycles = [first_cycle(40, 1e-2)]
    held = next_cycle(cycles, wrong=1, total=1000, epochs=40, learning_rate=1e-2, hold_rate=1e-5)
    assert (held.start, held.length, held.peak, held.kind) == (40, 20, 1e-5, "hold")
    assert {learning_rate_at(held, e, "cosine") for e in range(held.start, held.end)} == {1e-5}
    # still learning: the same cycle again, hold rate or not
    assert next_cycle(cycles, wrong=500, total=1000, epochs=40, learning_rate=1e-2, hold_rate=1e-5).kind == "again"


@needs_training
@pytest.mark.parametrize("suites_wrong", [0, 1])
def test_finishing_epochs_mine_and_hold_once_the_suites_were_clean(tmp_path, monkeypatch, suites_wrong):
    """Cycle 1 learns and does not mine. When its end finds only fresh pairs wrong, cycle 2 holds the
    hold rate and every one of its epochs replays the unsure answers of its own fresh draw. When the
    suites themselves are not yet clean, cycle 2 restarts and mines nothing: the run is the one
    without mining options, epoch for epoch."""
    import adder.train.checks as checks_module
    import adder.train.fit as fit_module
    from adder.eval.evaluate import Evaluation

    config = ModelConfig(max_operand=9_999)  # too many queries to enumerate: the suites judge
    script = {"unsure": set()}

    def scripted_check(model, config, sample=0, seed=2026, **drawn_shares):
        if sample:
            return Evaluation(f"sample of {sample:,}", total=sample)
        return Evaluation("suites of 100 fixed cases", total=100, wrong=suites_wrong)

    def predictor(model, config, to_onnx=None):
        def predict(shape, terms):  # the fresh draw: its first pair wrong, every time
            values = terms.sum(axis=1)
            values[:1] += 1
            return values, np.ones(len(terms), dtype=bool)

        predict.takes_blocks = True
        return predict, "scripted"

    mined_draws = []

    def probability_predictor(model, config, to_onnx=None):
        def probabilities(shape, terms):
            script["unsure"] = {tuple(row) for row in terms[:3].tolist()}  # the first 3 of every draw
            return scripted_probabilities(script["unsure"], config, mined_draws)(shape, terms)

        return probabilities, "scripted"

    rates = []
    real_train = fit_module.train_epoch

    def train_epoch(model, x, y, batch_size, cluster=fit_module.Cluster()):
        rates.append(float(model.optimizer.learning_rate.numpy()))
        return real_train(model, x, y, batch_size, cluster)

    monkeypatch.setattr(fit_module, "train_epoch", train_epoch)
    monkeypatch.setattr(fit_module, "full_check", scripted_check)
    monkeypatch.setattr(checks_module, "full_check", scripted_check)
    monkeypatch.setattr(checks_module, "domain_predictor", predictor)
    monkeypatch.setattr(fit_module, "probability_predictor", probability_predictor)
    monkeypatch.setattr(fit_module, "answers_right", lambda model, codec, x, truth: np.ones(len(x), dtype=bool))
    monkeypatch.setattr(checks_module, "answers_right", lambda model, codec, x, truth: np.ones(len(x), dtype=bool))
    monkeypatch.setattr(checks_module, "answers_sure", lambda model, codec, x, truth, margin: np.zeros(len(x), dtype=bool))
    monkeypatch.setattr(suites, "UNIFORM_SIZE", 200)
    settings = loop_recipe(config.max_operand, epochs=4, samples=200, check_every=0, max_epochs=8, learning_rate=1e-2,
        mine_margin=0.5, mine_sample=40, hold_rate=1e-4,
    )  # fmt: skip
    log = []
    model, history, outcome = fit_module.fit(settings, tmp_path / "m.keras", log=log.append
    )
    assert not outcome.exact  # every fresh draw has a wrong pair, or the suites one
    trained = [h for h in history if "loss" in h]
    assert rates[:4] == pytest.approx([learning_rate_at(first_cycle(4, 1e-2), e, "cosine") for e in range(4)])
    if suites_wrong:
        assert [h.get("mined") for h in trained] == [None] * 8
        cycles = [first_cycle(4, 1e-2)]
        for _ in range(2):  # two finishing cycles of 2 epochs, each restarting lower
            cycles.append(next_cycle(cycles, wrong=1, total=100, epochs=4, learning_rate=1e-2))
        assert [c.kind for c in cycles[1:]] == ["finish", "finish"]
        planned = [learning_rate_at(c, e, "cosine") for c in cycles[1:] for e in range(c.start, c.end)]
        assert rates[4:] == pytest.approx(planned)
        assert not any("held at a constant rate" in line or "unsure" in line for line in log)
        return
    assert [h.get("mined") for h in trained] == [None] * 4 + [6] * 4  # 3 of each half of every draw
    assert rates[4:] == pytest.approx([1e-4] * 4)
    assert any("held at a constant rate" in line for line in log)
    assert "6 of 40 fresh answers unsure" in "\n".join(log)
