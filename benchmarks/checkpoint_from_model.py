"""A run's checkpoint rebuilt from the model it wrote and its record, so the same command goes on.

A model that ``adder-train`` wrote is its run's last checkpoint: the archive holds the
weights and the optimizer's state, and the record (``NAME.json``) holds the history. The
cycles are not in either, but the policy (adder.train.policy) gives them again from the
history, and this script checks them against the cycle each epoch of the history names.
The replay pool of a run that ended exact is empty.

Where it is for: a run that ended exact under an earlier verdict, which the current
recipe, the same up to that epoch, would have carried on from. The model's last check
was clean suites; the current policy confirms clean suites on uniform pairs drawn
afresh (adder.train.suites.confirmed), so this script draws them, as the run would have
at that epoch, and puts what they find wrong into the replay pool. Settings the record
lacks must be ones that change nothing before the suites were first clean (mining and
the hold rate); any other difference between the record's recipe and the current one is
refused, since the history would not be the current recipe's. A continued fresh draw
(``--confirm-further``) changes nothing before a run's first clean draw: where that was
the model's last check, the record holds it, and this script draws only the pairs that
continue it; where the record holds a clean further check too, it draws only what a
later stage (``--confirm-beyond``) adds.

    python benchmarks/checkpoint_from_model.py wide370.keras runs/wide/wide.keras \
        --mine-margin 0.95 --mine-sample 400000 --hold-rate 1e-5
    cd runs/wide && adder-train --recipe wide --mine-margin 0.95 --mine-sample 400000 --hold-rate 1e-5 \
        --out wide.keras                                      # resumes from the rebuilt checkpoint

    python benchmarks/checkpoint_from_model.py wide470.keras runs/wide/wide.keras \
        --mine-margin 0.95 --mine-sample 400000 --hold-rate 1e-5 --confirm-further 10000000

    git show e1cf17c:train/models/wide.keras > wide500.keras; git show e1cf17c:train/models/wide.json > wide500.json
    python benchmarks/checkpoint_from_model.py wide500.keras runs/wide/wide.keras \
        --confirm-beyond 50000000 --average-weights            # the epoch-500 model, gone on to 570
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

# Settings that change nothing before a run's suites were first clean (adder.train.fit.mining_now, and the
# hold rate, which only a run whose suites were clean uses), so a record without them is the current run's.
LATER_SAFE = {"mine_margin", "mine_sample", "hold_rate", "confirm_further", "confirm_beyond", "average_weights"}
# Settings that change nothing before a run's first clean fresh draw (adder.train.fit.confirmed_further).
AFTER_FRESH = {"confirm_further"}
# Settings that change nothing before a run's first clean further check (adder.train.fit.confirmed_beyond).
AFTER_FURTHER = {"confirm_beyond", "average_weights"}
COUNTS = {"mine_sample", "confirm_further", "confirm_beyond"}
SWITCHES = {"average_weights"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a model adder-train wrote, its record beside it")
    parser.add_argument("out", type=Path, help="the --out of the run to go on (its checkpoint is OUT.ckpt)")
    for name in sorted(LATER_SAFE):
        flag = "--" + name.replace("_", "-")
        same = f"as adder-train's {flag}: it must be given the same to resume"
        if name in SWITCHES:
            parser.add_argument(flag, action="store_true", default=None, help=same)
        else:
            parser.add_argument(flag, type=float, help=same)
    args = parser.parse_args()

    import keras

    from adder.config import ModelConfig
    from adder.train import suites
    from adder.train.archive import read_keras_config
    from adder.train.evaluate import Evaluation
    from adder.train.fit import (
        Checkpoint,
        TrainSettings,
        checkpoint_dir,
        confirmed_afresh,
        confirmed_beyond,
        confirmed_further,
        domain_predictor,
        run_identity,
    )
    from adder.train.policy import first_cycle, next_cycle
    from adder.train.recipes import RECIPES, parse_arch
    from adder.train.replay import ReplayPool

    record = json.loads(args.model.with_suffix(".json").read_text())["training"]
    recorded = dict(record["recipe"])
    name = recorded.pop("name")
    given = {k: getattr(args, k) for k in LATER_SAFE if getattr(args, k) is not None}
    given = {k: int(v) if k in COUNTS else v for k, v in given.items()}
    recipe = RECIPES[name].with_overrides(seed=recorded["seed"], **given)
    current = recipe.to_dict()
    changed = {k for k, v in recorded.items() if current.get(k) != v}
    added = set(current) - set(recorded)
    if changed or not added <= LATER_SAFE:
        sys.exit(f"the {name} recipe trains otherwise than the record's: {sorted(changed | (added - LATER_SAFE))}")
    if checkpoint_dir(args.out).exists():
        sys.exit(f"{checkpoint_dir(args.out)} exists; this script does not overwrite a checkpoint")

    config = ModelConfig.from_dict(read_keras_config(args.model).to_dict() | {"training": {}})  # as a run builds it
    arch = parse_arch(recipe.arch)
    names = {f.name for f in fields(TrainSettings)}
    settings = TrainSettings(**{k: v for k, v in current.items() if k in names})
    history = record["history"]
    epochs = history[-1]["epoch"]
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1)), "the history has gaps"

    verdict_total = record["evaluation"]["total"]
    cycles = [first_cycle(settings.epochs, settings.learning_rate)]
    for entry in history:
        assert entry.get("cycle", 1) == len(cycles), f"epoch {entry['epoch']}: cycle {entry.get('cycle', 1)}"
        if entry["epoch"] == cycles[-1].end and entry["epoch"] < epochs:
            full = "full_check_wrong" in entry
            wrong = entry["full_check_wrong"] if full else entry["sample_check_wrong"]
            total = verdict_total if full else entry["sample_check_total"]
            cycles.append(next_cycle(cycles, wrong, total, settings.epochs, settings.learning_rate))

    last = history[-1]
    evaluation = record["evaluation"]
    assert last.get("full_check_wrong") == 0 and evaluation["wrong"] == 0, "the model's last check was not clean"
    if {k for k in added & AFTER_FRESH if current[k]}:
        earlier = [h["epoch"] for h in history[:-1] if h.get("fresh_check_wrong") == 0]
        if earlier or "further_check_wrong" in last:
            sys.exit(f"{sorted(added & AFTER_FRESH)} would have acted before the last epoch (clean draws: {earlier})")
    if {k for k in added & AFTER_FURTHER if current[k]}:
        earlier = [h["epoch"] for h in history[:-1] if h.get("further_check_wrong") == 0]
        if earlier or "beyond_check_wrong" in last:
            sys.exit(f"{sorted(added & AFTER_FURTHER)} would have acted before the last epoch (clean: {earlier})")
    result = Evaluation(evaluation["method"], evaluation["total"], 0, [], dict(evaluation["groups"]))
    model = keras.saving.load_model(args.model, compile=True, safe_mode=True)
    started = time.perf_counter()
    seed = suites.fresh_seed(settings.seed, epochs)
    further, beyond = settings.confirm_further, settings.confirm_beyond
    if last.get("fresh_check_seed") != seed:
        result = confirmed_afresh(model, config, result, seed, last, further, beyond)
    else:  # the record holds the clean draw: go on from where it ended
        predict = domain_predictor(model, config)[0]
        if "further_check_wrong" not in last:  # and where it holds one too, go on from where that ended
            result = confirmed_further(predict, config, result, seed, last, further)
        result = confirmed_beyond(predict, config, result, seed, last, further, beyond)
    seconds = time.perf_counter() - started
    print(result.summary())
    pool = ReplayPool()
    pool.reset(result.wrong_queries)
    last.update(full_check_wrong=result.wrong, replay_pool=len(pool))
    last["full_check_seconds"] = round(last.get("full_check_seconds", 0) + seconds, 1)
    if epochs == cycles[-1].end and result.wrong:
        cycles.append(
            next_cycle(cycles, result.wrong, result.total, settings.epochs, settings.learning_rate, settings.hold_rate)
        )
    checkpoint = Checkpoint(args.out, run_identity(config, arch, settings))
    checkpoint.save(model, config, epochs, history, pool, record["train_seconds"] + seconds, cycles)
    print(f"{checkpoint.dir}: epoch {epochs}, cycles {[c.to_dict() for c in cycles]}, replay pool {len(pool):,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
