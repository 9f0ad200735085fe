"""The replay pool: queries an evaluation found wrong, mixed back into later epochs.

A near-exact model is wrong on a few thousand queries of millions; fresh uniform
samples meet each of them about once in a run, so the last carries and borrows are
never learnt. Replaying what the probe and the full-domain checks find wrong (a
fixed share of every epoch, oversampled) is what AdderBoard-style "fine-tune on the
failures" does, inside the training loop. The pool is saved with the checkpoint,
so a resumed run replays exactly what the killed one would have.
"""

from __future__ import annotations

import json
from pathlib import Path

from adder.config import ModelConfig
from adder.eval.files import write_atomic
from adder.grammar import Expression, Grammar, QueryError

MAX_POOL = 200_000  # newest kept; a model this wrong needs more epochs, not more replay


class ReplayPool:
    def __init__(self, expressions: list[Expression] | None = None) -> None:
        self._queries: dict[Expression, None] = dict.fromkeys(expressions or [])  # ordered, no duplicates

    def __len__(self) -> int:
        return len(self._queries)

    @property
    def queries(self) -> list[Expression]:
        return list(self._queries)

    def add(self, expressions: list[Expression]) -> int:
        """Add what a probe found wrong; returns how many were new."""
        before = len(self._queries)
        for expression in expressions:
            self._queries.pop(expression, None)
            self._queries[expression] = None
        while len(self._queries) > MAX_POOL:
            del self._queries[next(iter(self._queries))]
        return len(self._queries) - before

    def reset(self, expressions: list[Expression]) -> None:
        """After a full-domain check: the pool becomes exactly what is wrong now."""
        self._queries = dict.fromkeys(expressions[-MAX_POOL:])

    def save(self, path: Path) -> None:
        texts = [expression.text() for expression in self._queries]
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps({"queries": texts}) + "\n"))

    @classmethod
    def load(cls, path: Path, config: ModelConfig) -> ReplayPool:
        """Read a saved pool; every query is parsed again, so a pool cannot smuggle in a query
        outside the model's domain. Raises ValueError saying what is wrong with the file."""
        try:
            texts = json.loads(path.read_text())["queries"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: unreadable replay pool ({exc})") from None
        if not isinstance(texts, list):
            raise ValueError(f"{path}: unreadable replay pool (queries is not a list)")
        grammar = Grammar(config)
        try:
            return cls([grammar.parse(text) for text in texts])
        except QueryError as exc:
            raise ValueError(f"{path}: replay pool holds a query outside the model's domain ({exc})") from None
