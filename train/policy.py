"""What a run does when a learning-rate cycle ends and checks still find wrong answers.

The policy, in full (docs/training.md says it in words):
- The first cycle is ``epochs`` long, its learning rate at ``learning_rate`` and, with
  the cosine schedule, decaying to 0 by its end. Every cycle ends with a check.
- A cycle that ends with more than NEAR of the checked queries wrong has not learned
  the task yet: the same cycle again (same length, same peak).
- A cycle that ends with NEAR or fewer wrong is finishing: the next cycle is half as
  long (at least MIN_LENGTH epochs) with a peak RESTART_PEAK times the last finishing
  peak (the first: RESTART_PEAK times ``learning_rate``), down to RESTART_PEAK **
  RESTART_FLOOR, and replays what the checks found wrong. A high peak would undo what
  the model knows; the low ones let replay move the few wrong queries without new ones.
- With a hold rate (``hold_rate``), once a check has found the fixed suites clean and
  only pairs drawn afresh wrong, a finishing cycle holds that constant rate instead of
  restarting: a restart's peak moved more than replay mended (a ten-digit run went
  from 0 to 13 wrong on its suites in cycle 4).
- Checks in between (``check_every``; sampled with ``check_sample``) refill the replay
  pool; a clean sample with every pooled query right calls for an exhaustive check,
  and only an exhaustive check with nothing wrong ends the run as exact.
- The run stops when exact, or when ``max_epochs`` or ``max_minutes`` is spent (exit
  1; a rerun with a larger budget goes on from the checkpoint).
The cycles a run has made are kept in its checkpoint, so a resumed run continues the
same plan.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

NEAR = 0.01  # at most this share of checked queries wrong: the model is finishing, not learning
RESTART_PEAK = 0.3  # a finishing cycle's peak, as a share of the last finishing peak
RESTART_FLOOR = 3  # finishing peaks stop falling at RESTART_PEAK ** RESTART_FLOOR of the first
RESTART_LENGTH = 0.5  # a finishing cycle's length, as a share of the first cycle
MIN_LENGTH = 2


@dataclass(frozen=True)
class Cycle:
    start: int  # first epoch, from 0
    length: int  # epochs
    peak: float  # learning rate at its start
    kind: str  # "first", "again" (still learning), "finish" or "hold" (finishing at a constant rate)

    @property
    def end(self) -> int:
        """The first epoch after it."""
        return self.start + self.length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Cycle:
        cycle = cls(int(data["start"]), int(data["length"]), float(data["peak"]), str(data["kind"]))
        if cycle.start < 0 or cycle.length < 1 or not math.isfinite(cycle.peak) or cycle.peak <= 0:
            raise ValueError(f"a cycle out of range: {data}")
        return cycle


def first_cycle(epochs: int, learning_rate: float) -> Cycle:
    return Cycle(0, epochs, learning_rate, "first")


def next_cycle(
    cycles: list[Cycle], wrong: int, total: int, epochs: int, learning_rate: float, hold_rate: float = 0.0
) -> Cycle:
    """The cycle after ``cycles[-1]``, which ended with ``wrong`` of ``total`` checked queries wrong;
    a finishing one holds ``hold_rate`` when it is given (the caller gives it once the suites were clean)."""
    start = cycles[-1].end
    if total and wrong / total > NEAR:
        return Cycle(start, epochs, learning_rate, "again")
    if hold_rate:
        return Cycle(start, max(MIN_LENGTH, round(epochs * RESTART_LENGTH)), hold_rate, "hold")
    finishing = sum(c.kind == "finish" for c in cycles)
    peak = learning_rate * RESTART_PEAK ** min(finishing + 1, RESTART_FLOOR)
    return Cycle(start, max(MIN_LENGTH, round(epochs * RESTART_LENGTH)), peak, "finish")


def learning_rate_at(cycle: Cycle, epoch: int, schedule: str) -> float:
    if schedule == "cosine" and cycle.kind != "hold":
        return cycle.peak * 0.5 * (1 + math.cos(math.pi * (epoch - cycle.start) / cycle.length))
    return cycle.peak
