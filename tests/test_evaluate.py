"""Exact-match evaluation counts every wrong answer, overall and per slice."""

import numpy as np

import adder.eval.evaluate as evaluation
from adder.config import ModelConfig


def off_by_one_every(k: int):
    def predict(expressions):
        values = np.array([e.value for e in expressions])
        values[::k] += 1
        return values, np.ones(len(values), dtype=bool)

    return predict


def test_small_domains_are_evaluated_exhaustively():
    result = evaluation.evaluate(off_by_one_every(10), ModelConfig(max_operand=9))
    assert (result.method, result.total, result.wrong) == ("exhaustive", 100, 10)
    assert result.first_wrong[0] == {"query": "0+0", "expected": 0, "got": 1}


def test_invalid_outputs_count_as_wrong():
    def predict(expressions):
        return np.array([e.value for e in expressions]), np.arange(len(expressions)) % 2 == 0

    result = evaluation.evaluate(predict, ModelConfig(max_operand=9))
    assert result.wrong == 50 and result.first_wrong[0]["got"] is None


def test_large_domains_use_a_uniform_sample_and_check_small_term_counts_exhaustively(monkeypatch):
    monkeypatch.setattr(evaluation, "SAMPLE_SIZE", 5000)
    monkeypatch.setattr(evaluation, "EXHAUSTIVE_LIMIT", 100_000)
    config = ModelConfig(min_terms=2, max_terms=3, operators="+-", brackets=True, max_operand=99)
    result = evaluation.evaluate(off_by_one_every(100), config)
    assert result.method.startswith("sample of 5,000 drawn uniformly") and result.total == 5000
    assert 0 < result.wrong < 150
    assert result.groups["2 terms, every query"] == {"total": 40_000, "wrong": 400}
    assert {"2 terms", "3 terms", "with +", "with -", "with brackets", "without brackets"} <= set(result.groups)
    # Uniform over queries, not over term counts: 3-term queries are 99.8% of this domain.
    assert result.groups["3 terms"]["total"] > 0.99 * 5000


def test_domains_up_to_fifty_million_are_checked_exhaustively():
    config = ModelConfig(min_terms=2, max_terms=3, operators="+-", brackets=True, max_operand=99)
    assert config.domain_size == 24_040_000
    assert evaluation.domain_plan(config)[0] == "exhaustive"


def test_a_planted_wrong_answer_is_found_and_reported():
    config = ModelConfig(min_terms=2, max_terms=3, operators="+-", brackets=True, max_operand=4)

    def predict(shape, terms):
        values = evaluation.shape_values(shape, terms)
        planted = np.zeros(len(terms), dtype=bool)
        if shape == (3, ("-", "+"), ((0, 1),)):
            planted = (terms == [3, 1, 4]).all(axis=1)
        return np.where(planted, values + 10, values), np.ones(len(terms), dtype=bool)

    predict.takes_blocks = True
    seen = []
    result = evaluation.evaluate(predict, config, progress=lambda done, total, wrong: seen.append((done, total, wrong)))
    assert (result.method, result.total, result.wrong) == ("exhaustive", config.domain_size, 1)
    assert result.first_wrong == [{"query": "(3-1)+4", "expected": 6, "got": 16}]
    assert [e.text() for e in result.wrong_queries] == ["(3-1)+4"]
    assert result.groups["3 terms"]["wrong"] == 1 and result.groups["2 terms"]["wrong"] == 0
    assert seen[-1] == (config.domain_size, config.domain_size, 1)


def test_a_sample_can_be_asked_for_where_the_whole_domain_would_fit():
    config = ModelConfig(min_terms=2, max_terms=3, operators="+-", brackets=True, max_operand=99)
    result = evaluation.evaluate(off_by_one_every(100), config, sample=3000, seed=7)
    assert result.method == "sample of 3,000 drawn uniformly over 24,040,000 queries (seed 7)"
    assert result.total == 3000 and 0 < result.wrong < 100
    assert "2 terms, every query" not in result.groups  # no exhaustive passes behind a cheap check
