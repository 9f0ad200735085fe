"""A verdict beyond the fixed suites: stages of pairs drawn afresh for this check alone, as data.

A run replays what its suites find wrong, so by the time they are clean they are partly
taught; pairs no epoch has seen are the held-out half of the verdict. At about one wrong
pair in ten million, a clean draw of ten million says little (0 wrong in n pairs bounds
the error rate below 3/n at 95%), so a run may ask for more: each stage is drawn only
once everything before it is clean, and a stage's steps likewise, so a model still wrong
in ten million is not checked on fifty million more only to find more of the same.

- ``fresh``: 10,000,000 uniform pairs under the epoch's own seed.
- ``further`` (``confirm_further`` pairs): that draw continued, plus a tenth as many pairs
  summing to 9 over a run with no carry into it, which uniform pairs almost never hold.
- ``beyond`` (``confirm_beyond`` pairs): first a fiftieth as many nine-dense pairs (every
  digit 9 with probability 1/2), which found a model this far on wrong four thousand
  times as often as uniform pairs; then both draws continued again.
"""

from __future__ import annotations

from dataclasses import dataclass

from adder.config import ModelConfig
from adder.eval import suites
from adder.eval.evaluate import Evaluation

NINES_PER_BEYOND = 50  # a beyond stage's uniform pairs per nine-dense pair drawn before them


@dataclass(frozen=True)
class Draw:
    """``size`` pairs of a family (``uniform``, or one of ``suites.FAMILIES``), past the first ``skip`` of its draw."""

    family: str
    size: int
    skip: int = 0

    def add_to(self, result: Evaluation, predict, config: ModelConfig, seed: int) -> Evaluation:
        if self.family == "uniform":
            return suites.confirmed(result, predict, config, seed, self.size, skip=self.skip)
        return suites.confirmed_drawn(result, predict, config, seed, self.size, skip=self.skip, family=self.family)


@dataclass(frozen=True)
class Stage:
    """A named stage: its steps in order, each a group of draws made only while all before is clean."""

    name: str
    size: int
    steps: tuple[tuple[Draw, ...], ...]


def stages(further: int = 0, beyond: int = 0) -> list[Stage]:
    """The stages a verdict draws, given a run's ``confirm_further`` and ``confirm_beyond``."""
    uniform, runs = suites.UNIFORM_SIZE, suites.RUNS_PER_FURTHER
    found = [Stage("fresh", uniform, ((Draw("uniform", uniform),),))]
    if further:
        found.append(Stage("further", further, ((Draw("uniform", further, uniform), Draw("runs", further // runs)),)))
        if beyond:
            nines = (Draw("nines", beyond // NINES_PER_BEYOND),)
            more = (Draw("uniform", beyond, uniform + further), Draw("runs", beyond // runs, further // runs))
            found.append(Stage("beyond", beyond, (nines, more)))
    return found


def judge(result: Evaluation, predict, config: ModelConfig, seed: int, plan: list[Stage], entry: dict) -> Evaluation:
    """Clean suites carried through each stage of ``plan`` while they stay clean; any other
    result is returned as it is. ``entry`` (the epoch's history) gets each stage's count."""
    if not (result.is_verdict and result.wrong == 0 and suites.judged_by_suites(config)):
        return result
    for stage in plan:
        if result.wrong:
            break
        for step in stage.steps:
            if result.wrong:
                break
            for draw in step:
                result = draw.add_to(result, predict, config, seed)
        if stage.name == "fresh":
            entry["fresh_check_seed"] = seed
        else:
            entry[f"{stage.name}_check_size"] = stage.size
        entry[f"{stage.name}_check_wrong"] = result.wrong
    return result


def stage_cleared(history: list[dict], name: str) -> bool:
    """Whether a verdict of this run has found stage ``name`` clean: the run has gone past it."""
    return any(h.get(f"{name}_check_wrong") == 0 for h in history)


def suites_were_clean(history: list[dict]) -> bool:
    """Whether a check of this run has found the fixed suites clean (a fresh stage was drawn)."""
    return any("fresh_check_seed" in h for h in history)
