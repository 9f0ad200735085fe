"""Growing when stuck: a run whose checks stop improving widens its layers rather than
spending its whole budget at one size.

Stuck is measured, not guessed: a learning-rate cycle that ends with more than NEAR of
its checked queries wrong, where that share has not halved since the check nearest the
cycle's middle (or, for a cycle after the first, since the end of the one before). Such a
run starts again from fresh weights, its layers GROWTH times as wide (to a multiple of 8),
with the epochs it has left; the record says which size ended exact and why each grew.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from adder.train.policy import NEAR, Cycle
from adder.train.recipe import MAX_UNITS, Recipe

GROWTH = 1.5


def check_shares(history: list[dict]) -> list[tuple[int, float]]:
    """(epoch, wrong share) of every check in the history that counted what it checked."""
    return [(h["epoch"], h["check_wrong"] / h["checked"]) for h in history if h.get("checked")]


def stuck(history: list[dict], cycles: list[Cycle]) -> str:
    """Why the cycle that just ended counts as stuck, in words; '' when it does not."""
    shares = check_shares(history)
    if not shares:
        return ""
    end_epoch, end = shares[-1]
    cycle = cycles[-1]
    if end <= NEAR or end_epoch != cycle.end:
        return ""
    middle = cycle.start + cycle.length // 2
    before = [(e, s) for e, s in shares[:-1] if e <= middle] if len(cycles) == 1 else [
        (e, s) for e, s in shares[:-1] if e <= cycle.start
    ]  # fmt: skip
    if not before:
        return ""
    epoch, share = before[-1]
    if end > share / 2:
        return f"{100 * share:.2f}% wrong at epoch {epoch}, {100 * end:.2f}% at epoch {end_epoch}: not halved"
    return ""


def widened(recipe: Recipe) -> Recipe | None:
    """The recipe with every layer GROWTH times as wide, or None when it cannot grow."""
    arch = recipe.architecture()
    grow = [min(MAX_UNITS, 8 * math.ceil(units * GROWTH / 8)) for units in (*arch.encoder, *arch.decoder)]
    if grow == [*arch.encoder, *arch.decoder]:
        return None
    encoder, decoder = grow[: len(arch.encoder)], grow[len(arch.encoder) :]
    return replace(recipe, arch=f"{','.join(map(str, encoder))}/{','.join(map(str, decoder))}")


@dataclass
class Growth:
    """The sizes a run has grown through, kept beside its checkpoint (``grown.json``) so that a
    resumed run goes on at the size it had reached."""

    base: dict  # the identity of the recipe the run was started with
    recipe: Recipe | None = None  # the grown recipe now trained, if any
    steps: list[dict] = field(default_factory=list)

    @staticmethod
    def path(out: Path) -> Path:
        return out.with_name(out.name + ".ckpt") / "grown.json"

    @classmethod
    def load(cls, out: Path, recipe: Recipe) -> Growth:
        path = cls.path(out)
        try:
            data = json.loads(path.read_text())
            if data.get("base") == json.loads(json.dumps(recipe.identity())):
                return cls(data["base"], Recipe.from_mapping(data["recipe"], str(path)), list(data["steps"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # none, or another run's: this run starts at its own size
        return cls(recipe.identity())

    def add(self, recipe: Recipe, outcome, wider: Recipe) -> None:
        self.steps.append({"arch": recipe.arch, "epochs": outcome.epochs, "why": outcome.stuck, "grew_to": wider.arch})
        self.recipe = wider

    def save(self, out: Path) -> None:
        from adder.eval.files import write_atomic

        path = self.path(out)
        path.parent.mkdir(exist_ok=True)
        data = {"base": self.base, "recipe": self.recipe.to_dict(), "steps": self.steps}
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
