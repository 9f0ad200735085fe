"""Exact-match evaluation: the share of queries whose whole answer is right.

Exhaustive over the domain when it fits (every query, not a sample), so a
reported 100% means no query of the domain is answered wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from adder.grammar import Expression, values_of
from adder.config import ModelConfig
from adder.train.data import all_expressions, sample_expressions

EXHAUSTIVE_LIMIT = 5_000_000
SAMPLE_SIZE = 1_000_000
SHOWN_WRONG = 10

# Answers a list of expressions: (values, valid) as Codec.decode_answers returns.
Predictor = Callable[[list[Expression]], tuple[np.ndarray, np.ndarray]]


@dataclass
class Evaluation:
    method: str  # "exhaustive" or "sample of N (seed S)"
    total: int = 0
    wrong: int = 0
    first_wrong: list[dict] = field(default_factory=list)
    groups: dict[str, dict[str, int]] = field(default_factory=dict)  # slice -> total, wrong

    @property
    def exact_match(self) -> float:
        return (self.total - self.wrong) / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "exact_match": self.exact_match}

    def summary(self) -> str:
        lines = [f"exact-match {100 * self.exact_match:.4f}% ({self.wrong:,} wrong of {self.total:,}, {self.method})"]
        for group, counts in sorted(self.groups.items()):
            share = (counts["total"] - counts["wrong"]) / counts["total"]
            lines.append(f"  {group}: {100 * share:.4f}% ({counts['wrong']:,} wrong of {counts['total']:,})")
        return "\n".join(lines)


def query_text(expression: Expression) -> str:
    return expression.text()


def domain_chunks(config: ModelConfig, seed: int = 2026, chunk: int = 100_000):
    """Every query when the domain is small enough, else a fixed seeded sample."""
    if config.domain_size <= EXHAUSTIVE_LIMIT:
        return "exhaustive", all_expressions(config, chunk)
    rng = np.random.default_rng(seed)

    def sampled():
        for start in range(0, SAMPLE_SIZE, chunk):
            yield sample_expressions(config, min(chunk, SAMPLE_SIZE - start), rng)

    return f"seeded sample of {SAMPLE_SIZE:,} (seed {seed})", sampled()


def groups_of(expression: Expression, config: ModelConfig) -> list[str]:
    """The slices of the domain a query belongs to, for the per-slice report."""
    found = []
    if config.min_terms != config.max_terms:
        found.append(f"{len(expression.terms)} terms")
    if len(config.operators) > 1:
        found += [f"with {op}" for op in config.operators if op in expression.operators]
    if config.brackets:
        found.append("with brackets" if expression.brackets else "without brackets")
    return found


def evaluate(predict: Predictor, config: ModelConfig, progress: Callable[[int], None] | None = None) -> Evaluation:
    """Exact-match over the domain (or its seeded sample), plus every term count small enough
    to check exhaustively when the whole domain is not."""
    method, chunks = domain_chunks(config)
    result = tally(predict, config, method, chunks, progress)
    if method != "exhaustive":
        for n in range(config.min_terms, config.max_terms + 1):
            part = replace(config, min_terms=n, max_terms=n)
            if part.domain_size <= EXHAUSTIVE_LIMIT:
                every = tally(predict, config, "exhaustive", all_expressions(part))
                result.groups[f"{n} terms, every query"] = {"total": every.total, "wrong": every.wrong}
    return result


def tally(predict: Predictor, config: ModelConfig, method: str, chunks, progress=None) -> Evaluation:
    result = Evaluation(method)
    for expressions in chunks:
        values, valid = predict(expressions)
        truth = values_of(expressions)
        right = (values == truth) & valid
        wrong = np.flatnonzero(~right)
        result.total += len(expressions)
        result.wrong += len(wrong)
        for i in wrong[: SHOWN_WRONG - len(result.first_wrong)]:
            got = int(values[i]) if valid[i] else None
            result.first_wrong.append({"query": query_text(expressions[i]), "expected": int(truth[i]), "got": got})
        for expression, ok in zip(expressions, right.tolist()):
            for group in groups_of(expression, config):
                counts = result.groups.setdefault(group, {"total": 0, "wrong": 0})
                counts["total"] += 1
                counts["wrong"] += not ok
        if progress:
            progress(result.total)
    return result


def write_json(evaluation: Evaluation, path: Path, extra: dict | None = None) -> None:
    from adder.train.archive import write_atomic

    data = {**(extra or {}), **evaluation.to_dict()}
    write_atomic(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))
