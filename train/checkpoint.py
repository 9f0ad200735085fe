"""A run's checkpoint: the last completed epoch's model, optimizer state, replay pool, weight
mean and plan, so a killed run resumes where it stopped, as the same run."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import keras

from adder.config import ModelConfig
from adder.eval.files import WriteError, write_atomic
from adder.train.archive import save_keras
from adder.train.averaging import WeightMean
from adder.train.distributed import alone
from adder.train.policy import Cycle
from adder.train.replay import ReplayPool

LAYOUT = 2  # state.json's layout; 1 (no "layout" key) named settings apart from the recipe


def checkpoint_dir(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed from; the message says how to start afresh."""


class Checkpoint:
    """The last completed epoch's model and optimizer state, plus what run it belongs to.

    It is four files, and a kill between writing two of them would pair one epoch's model
    with the state of the epoch before: a resume would then silently retrain an epoch from
    the wrong weights. So each save writes all of them into ``next/`` first, ``state.json``
    last, and only then moves them into place, ``state.json`` last again. While
    ``next/state.json`` exists, the files still in ``next/`` are the checkpoint's (a save
    cut off while moving them is read as the complete new epoch, and the next save ends
    the move); without it, ``next/`` is an unfinished save and is ignored.
    """

    FILES = ("last.keras", "replay.json", "mean.npz", "state.json")  # state.json last: it commits a save

    def __init__(self, out: Path, identity: dict) -> None:
        self.dir = checkpoint_dir(out)
        self.identity = identity
        self.staging = self.dir / "next"

    def _path(self, name: str) -> Path:
        staged = self.staging / name
        if (self.staging / "state.json").exists() and staged.exists():
            return staged
        return self.dir / name

    model_path = property(lambda self: self._path("last.keras"))
    pool_path = property(lambda self: self._path("replay.json"))
    mean_path = property(lambda self: self._path("mean.npz"))
    state_path = property(lambda self: self._path("state.json"))

    def _settle(self) -> None:
        """Move a committed save from ``next/`` into place; drop an uncommitted one."""
        if (self.staging / "state.json").exists():
            for name in self.FILES:
                if (self.staging / name).exists():
                    os.replace(self.staging / name, self.dir / name)
        shutil.rmtree(self.staging, ignore_errors=True)

    def load(self, config: ModelConfig) -> tuple[keras.Model, int, ReplayPool, WeightMean] | None:
        """The checkpoint to resume from, or None; a damaged one stops the run with a way out."""
        if not self.state_path.exists():
            return None
        afresh = f"delete {self.dir} to start afresh"
        try:
            state = json.loads(self.state_path.read_text())
            epochs_done = int(state["epochs_done"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{self.state_path} is unreadable ({exc}); {afresh}") from None
        if state.get("layout") != LAYOUT:
            raise CheckpointError(
                f"{self.dir} was written by an earlier adder-train, whose checkpoints this one cannot resume; {afresh}"
            )
        if state.get("identity") != self.identity:
            raise CheckpointError(
                f"{self.dir} holds a checkpoint of a run with other options; "
                f"rerun with the same options to resume, or {afresh}"
            )
        try:
            model = keras.saving.load_model(self.model_path, compile=True, safe_mode=True)
        except Exception as exc:  # Keras raises many types for a damaged archive
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{self.model_path} could not be loaded ({reason}); {afresh}") from None
        try:
            pool = ReplayPool.load(self.pool_path, config) if self.pool_path.exists() else ReplayPool()
            mean = WeightMean.load(self.mean_path) if self.mean_path.exists() else WeightMean()
        except ValueError as exc:
            raise CheckpointError(f"{exc}; {afresh}") from None
        return model, epochs_done, pool, mean

    def save(
        self,
        model: keras.Model,
        config: ModelConfig,
        epochs_done: int,
        history: list,
        pool: ReplayPool,
        seconds: float = 0.0,
        cycles: list[Cycle] = (),
        mean: WeightMean | None = None,
    ) -> None:
        try:
            self.dir.mkdir(exist_ok=True)
            self._settle()
            self.staging.mkdir()
        except OSError as exc:
            raise WriteError(f"cannot write {self.dir}: {exc.strerror or exc}") from None
        with alone():  # only process 0 saves
            save_keras(model, config, self.staging / "last.keras")
        pool.save(self.staging / "replay.json")
        if mean is not None and mean.count:
            mean.save(self.staging / "mean.npz")
        state = {
            "layout": LAYOUT,
            "identity": self.identity,
            "epochs_done": epochs_done,
            "seconds": round(seconds, 1),
            "cycles": [c.to_dict() for c in cycles],
            "history": history,
        }
        write_atomic(self.staging / "state.json", lambda tmp: tmp.write_text(json.dumps(state, indent=2)))
        try:
            self._settle()
        except OSError as exc:
            raise WriteError(f"cannot write {self.dir}: {exc.strerror or exc}") from None

    def history(self) -> list:
        if not self.state_path.exists():
            return []
        return json.loads(self.state_path.read_text()).get("history", [])

    def cycles(self) -> list[Cycle]:
        """The learning-rate cycles the run has planned so far (empty for a checkpoint without them)."""
        if not self.state_path.exists():
            return []
        try:
            return [Cycle.from_dict(c) for c in json.loads(self.state_path.read_text()).get("cycles", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                f"{self.state_path} has unreadable cycles ({exc}); delete {self.dir} to start afresh"
            ) from None

    def seconds(self) -> float:
        """Training and checking time spent by the runs that wrote this checkpoint; 0 for none, or
        for a damaged one (which ``load`` refuses with a way out)."""
        try:
            value = json.loads(self.state_path.read_text()).get("seconds", 0.0)
        except (OSError, ValueError, AttributeError):
            return 0.0
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0 else 0.0

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
