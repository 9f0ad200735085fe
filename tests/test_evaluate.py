"""Exact-match evaluation counts every wrong answer, overall and per slice."""

import numpy as np

import adder.train.evaluate as evaluation
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


def test_large_domains_use_a_seeded_sample_and_check_small_term_counts_exhaustively(monkeypatch):
    monkeypatch.setattr(evaluation, "SAMPLE_SIZE", 5000)
    config = ModelConfig(min_terms=2, max_terms=3, operators="+-", brackets=True, max_operand=99)
    result = evaluation.evaluate(off_by_one_every(100), config)
    assert result.method.startswith("seeded sample of 5,000") and result.total == 5000 and result.wrong == 50
    assert result.groups["2 terms, every query"] == {"total": 40_000, "wrong": 400}
    assert {"2 terms", "3 terms", "with +", "with -", "with brackets", "without brackets"} <= set(result.groups)
