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

from adder.config import ModelConfig
from adder.eval.domain import domain_blocks, expressions_of, sampled_blocks
from adder.figures import percent
from adder.grammar import Expression, Shape, shape_text, shape_values

EXHAUSTIVE_LIMIT = 50_000_000  # every query up to this many; arith's 24,040,000 fits
SAMPLE_SIZE = 1_000_000
SHOWN_WRONG = 10
KEPT_WRONG = 200_000  # wrong queries kept for the replay pool; the count is always exact

# Answers a list of expressions: (values, valid) as Codec.decode_answers returns.
Predictor = Callable[[list[Expression]], tuple[np.ndarray, np.ndarray]]
# Answers one shape's queries given as rows of terms; the fast path for whole domains.
BlockPredictor = Callable[[Shape, np.ndarray], tuple[np.ndarray, np.ndarray]]
# Told (done, total, wrong so far) after every block.
Progress = Callable[[int, int, int], None]


@dataclass
class Evaluation:
    method: str  # "exhaustive" or "sample of N (seed S)"
    total: int = 0
    wrong: int = 0
    first_wrong: list[dict] = field(default_factory=list)
    groups: dict[str, dict[str, int]] = field(default_factory=dict)  # slice -> total, wrong
    wrong_queries: list[Expression] = field(default_factory=list, repr=False)  # for replay; not serialised
    engine: str = ""  # what answered: "keras", "onnxruntime", or the runtime's string API

    @property
    def is_verdict(self) -> bool:
        """Whether this check can call a model exact: every query of the domain, or, where the
        domain is too large to enumerate, every fixed suite (adder.eval.suites)."""
        return self.method == "exhaustive" or self.method.startswith("suites")

    def add_group(self, name: str, other: Evaluation) -> None:
        """Count ``other``'s queries in this evaluation too, as the group ``name``."""
        self.total += other.total
        self.wrong += other.wrong
        self.first_wrong += other.first_wrong[: max(0, SHOWN_WRONG - len(self.first_wrong))]
        self.wrong_queries += other.wrong_queries
        self.groups[name] = {"total": other.total, "wrong": other.wrong}

    @property
    def exact_match(self) -> float:
        return (self.total - self.wrong) / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("wrong_queries")
        return {**data, "exact_match": self.exact_match}

    def summary(self) -> str:
        how = self.method + (f", through {self.engine}" if self.engine else "")
        lines = [f"exact-match {percent(self.exact_match)} ({self.wrong:,} wrong of {self.total:,}, {how})"]
        for group, counts in sorted(self.groups.items()):
            share = (counts["total"] - counts["wrong"]) / counts["total"]
            lines.append(f"  {group}: {percent(share)} ({counts['wrong']:,} wrong of {counts['total']:,})")
        return "\n".join(lines)


def by_blocks(predict: Predictor | BlockPredictor) -> BlockPredictor:
    """A predictor over (shape, terms) blocks; one over lists of expressions is adapted."""
    if getattr(predict, "takes_blocks", False):
        return predict
    return lambda shape, terms: predict(expressions_of(shape, terms))


def domain_plan(config: ModelConfig, seed: int = 2026, chunk: int = 100_000, sample: int = 0):
    """(method, total, blocks): every query when the domain is small enough (and no smaller
    ``sample`` is asked for), else a uniform seeded sample."""
    if config.domain_size <= EXHAUSTIVE_LIMIT and not 0 < sample < config.domain_size:
        return "exhaustive", config.domain_size, domain_blocks(config, chunk)
    size = sample or SAMPLE_SIZE
    rng = np.random.default_rng(seed)
    return (
        f"sample of {size:,} drawn uniformly over {config.domain_size:,} queries (seed {seed})",
        size,
        sampled_blocks(config, size, rng, chunk),
    )


def groups_of(shape: Shape, config: ModelConfig) -> list[str]:
    """The slices of the domain a shape's queries belong to, for the per-slice report."""
    n, operators, brackets = shape
    found = []
    if config.min_terms != config.max_terms:
        found.append(f"{n} terms")
    if len(config.operators) > 1:
        found += [f"with {op}" for op in config.operators if op in operators]
    if config.brackets:
        found.append("with brackets" if brackets else "without brackets")
    return found


def evaluate(
    predict: Predictor | BlockPredictor,
    config: ModelConfig,
    progress: Progress | None = None,
    sample: int = 0,
    seed: int = 2026,
) -> Evaluation:
    """Exact-match over the domain (or its uniform sample), plus every term count small enough
    to check exhaustively when the whole domain is not.

    ``sample`` asks for a uniform sample of that many queries even where the whole
    domain would fit (a cheap check during training), and then skips the per-term-count
    exhaustive passes.
    """
    predict = by_blocks(predict)
    method, total, blocks = domain_plan(config, seed=seed, sample=sample)
    result = tally(predict, config, method, total, blocks, progress)
    if method != "exhaustive" and not sample:
        for n in range(config.min_terms, config.max_terms + 1):
            part = replace(config, min_terms=n, max_terms=n)
            if part.domain_size <= EXHAUSTIVE_LIMIT:
                every = tally(predict, config, "exhaustive", part.domain_size, domain_blocks(part))
                result.groups[f"{n} terms, every query"] = {"total": every.total, "wrong": every.wrong}
    return result


def tally(predict: BlockPredictor, config: ModelConfig, method: str, total: int, blocks, progress=None) -> Evaluation:
    result = Evaluation(method)
    for shape, terms in blocks:
        values, valid = predict(shape, terms)
        right = (values == shape_values(shape, terms)) & valid
        wrong = np.flatnonzero(~right)
        result.total += len(terms)
        result.wrong += len(wrong)
        room = KEPT_WRONG - len(result.wrong_queries)
        if len(wrong) and room > 0:
            result.wrong_queries += expressions_of(shape, terms[wrong[:room]])
        truth = shape_values(shape, terms[wrong[: SHOWN_WRONG - len(result.first_wrong)]])
        for i, expected in zip(wrong[: SHOWN_WRONG - len(result.first_wrong)].tolist(), truth.tolist()):
            got = int(values[i]) if valid[i] else None
            query = shape_text(shape).format(*terms[i].tolist())
            result.first_wrong.append({"query": query, "expected": expected, "got": got})
        for group in groups_of(shape, config):
            counts = result.groups.setdefault(group, {"total": 0, "wrong": 0})
            counts["total"] += len(terms)
            counts["wrong"] += len(wrong)
        if progress:
            progress(result.total, total, result.wrong)
    return result


def write_json(evaluation: Evaluation, path: Path, extra: dict | None = None) -> None:
    from adder.eval.files import write_atomic

    data = {**(extra or {}), **evaluation.to_dict()}
    write_atomic(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))
