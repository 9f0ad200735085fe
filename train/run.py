"""``train()``: a recipe in, a model file, its record and curves out. The library entry point
that ``adder-train`` calls with keywords; it prints through ``log`` and raises ``TrainError``."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from adder.config import ConfigError
from adder.eval.files import WriteError
from adder.train.distributed import Cluster
from adder.train.growth import Growth, widened
from adder.train.recipe import Architecture, Recipe

FINAL_SAMPLE = 100_000  # pairs a budgeted run's last word draws where the suites (24 million) judge


class TrainError(ValueError):
    """A run that cannot start or go on; the message says why in one line, and what to do."""


@dataclass(frozen=True)
class Trained:
    """What a run made: whether it ended exact, the record written beside the model, and why it stopped."""

    exact: bool
    record: dict
    reason: str


def train(
    recipe: Recipe,
    out: Path,
    *,
    name: str = "",
    command: str = "",
    init: Path | None = None,
    device_count: int | None = 1,
    cluster: Cluster = Cluster(),
    log=print,
    to_onnx=None,
    keep_checkpoint: bool = True,
    about: str = "",
) -> Trained:
    """Train ``recipe`` into ``out`` (.keras), with its record (.json) and curves (.png) beside it.

    Stops exact, or when the recipe's budget is spent; either way the model and its record
    are written (process 0 only). With ``keep_checkpoint``, a budget spent inexact keeps the
    checkpoint, so the same call with a larger budget goes on from it.
    """
    from adder.train.checkpoint import Checkpoint, CheckpointError
    from adder.train.device import describe, use_devices, versions
    from adder.train.fit import fit

    problems = recipe.problems()
    if problems:
        raise TrainError(problems[0])
    config = recipe.model_config()
    if config.layout == "pairs":  # one small LSTM over digit pairs, proven rather than checked
        from adder.train.pairs import train_pairs

        return train_pairs(recipe, out, name=name, command=command, log=log)
    try:
        devices = use_devices(device_count, cluster.joined)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    if recipe.batch_size % devices["count"]:
        raise TrainError(f"batch_size {recipe.batch_size} must split evenly over {devices['count']} devices")
    if recipe.samples % recipe.batch_size % devices["count"]:
        raise TrainError(
            f"samples {recipe.samples} leaves a last batch of {recipe.samples % recipe.batch_size} "
            f"that does not split evenly over {devices['count']} devices"
        )
    arch, arch_name = recipe.architecture(), recipe.arch
    init_model, started_from = load_init(init, config) if init is not None else (None, None)
    if init_model is not None:  # the layers are the starting model's, whatever arch says
        arch_name = started_from.pop("arch")
        layers = started_from.pop("layers")
        arch = Architecture(**{k: tuple(v) if isinstance(v, list) else v for k, v in layers.items()})
    budget = f"up to {recipe.max_epochs} epochs" + (f" or {recipe.max_minutes:g} minutes" if recipe.max_minutes else "")
    log(
        f"training with {describe(devices)}: {config.describe()}, arch {arch_name}, "
        f"{budget} x {recipe.samples:,} samples, until exact"
        + (f", starting from {init}" if init else "")
        + (f"; {about}" if about else "")
    )
    earlier = Checkpoint(out, {}).seconds()  # spent by the calls before this one, if it resumes
    started = time.perf_counter()
    grown = Growth.load(out, recipe)
    try:
        while True:
            current = grown.recipe or recipe
            model, history, outcome = fit(current, out, log=log, init=init_model, cluster=cluster, to_onnx=to_onnx)
            if not outcome.stuck:
                break
            wider = widened(current)
            if wider is None:
                log(f"cannot grow past {current.arch}: {outcome.stuck}")
                break
            left = current.max_epochs - outcome.epochs
            log(
                f"growing from {current.arch} to {wider.arch}, from fresh weights, with {left} epochs left: {outcome.stuck}"
            )
            grown.add(current, outcome, wider.with_overrides(max_epochs=left))
            init_model = None
            if cluster.writer:
                Checkpoint(out, {}).remove()
                grown.save(out)
    except (CheckpointError, WriteError) as exc:
        raise TrainError(str(exc)) from None
    arch, arch_name = (current.architecture(), current.arch) if grown.steps else (arch, arch_name)
    seconds = time.perf_counter() - started
    record = {
        "command": command,
        "recipe": {"name": name or "derived", **recipe.to_dict()},
        "arch": arch_name,
        "layers": arch.to_dict(),
        "parameters": int(model.count_params()),
        "device": describe(devices),
        "backend": os.environ.get("KERAS_BACKEND", ""),
        "devices": devices,
        "versions": versions(),
        "train_seconds": round(earlier + seconds, 1),  # every call of a resumed run
        "call_seconds": round(seconds, 1),
        "history": history,
    }
    if started_from:
        record["init"] = started_from
    if grown.steps:
        record["growth"] = grown.steps
    result = outcome.result or final_check(model, recipe, config, keep_checkpoint, to_onnx)
    log(f"{out}: {result.summary()}")
    for example in result.first_wrong:
        log(f"  {example['query']} = {example['expected']}, model says {example['got']}")
    record["evaluation"] = result.to_dict()
    exact = outcome.exact or (result.is_verdict and result.wrong == 0)
    record["exact"] = bool(exact)
    if cluster.writer:
        write_model(model, replace(config, training=record), out, arch_name)
        written = f"wrote {out}, {out.with_suffix('.json')} and {out.with_suffix('.png')}"
    else:
        written = f"process {cluster.process_id} of {cluster.processes} done; process 0 writes {out}"
    kept = Checkpoint(out, {})
    if not exact and keep_checkpoint and cluster.writer and result.is_verdict and kept.state_path.exists():
        from adder.train.replay import ReplayPool  # a rerun with a larger budget replays what was wrong

        ReplayPool(result.wrong_queries).save(kept.pool_path)
    elif cluster.writer and (exact or not keep_checkpoint):
        kept.remove()
    log(written + f" (trained in {seconds:.0f} s)")
    wrong = f"{result.wrong:,} of {result.total:,} queries ({result.method}) still wrong"
    return Trained(bool(exact), record, "exact" if exact else f"not exact when {outcome.reason}: {wrong}")


def final_check(model, recipe: Recipe, config, thorough: bool, to_onnx):
    """What a run that ended without a verdict reached: the verdict itself where a rerun will
    replay it (``thorough``), else, where the suites judge the domain, a uniform sample, said so."""
    from adder.eval import suites
    from adder.train.checks import full_check

    if thorough or not suites.judged_by_suites(config):
        return full_check(model, config, to_onnx=to_onnx)
    return full_check(model, config, sample=recipe.check_sample or FINAL_SAMPLE, seed=recipe.seed, to_onnx=to_onnx)


def write_model(model, final, out: Path, arch_name: str) -> None:
    """The model with its record inside, the record beside it, and its curves."""
    from adder.eval.files import write_atomic
    from adder.train.archive import save_keras
    from adder.train.distributed import alone
    from adder.train.plot import draw_curves

    with alone():  # process 0 saves by itself
        save_keras(model, final, out)
    write_atomic(out.with_suffix(".json"), lambda tmp: tmp.write_text(final.to_json(indent=2) + "\n"))
    draw_curves(final.training, out.with_suffix(".png"), title=f"{out.name}: {final.describe()}, arch {arch_name}")


def load_init(path: Path, config):
    """The model to fine-tune and what the record says of it; refused unless its domain is ours."""
    from adder.train.archive import ArchiveError, load_keras

    try:
        model, init_config = load_keras(path)
    except (ArchiveError, ConfigError) as exc:
        raise TrainError(str(exc)) from None
    if init_config != config:
        raise TrainError(
            f"--init {path} was trained on {init_config.describe()} ({init_config.encoding}); "
            f"this run is {config.describe()} ({config.encoding}): give the same domain options"
        )
    started_from = {
        "path": str(path),
        "sha256": file_sha256(path),
        "command": init_config.training.get("command"),
        "arch": str(init_config.training.get("arch", "unrecorded")),
        "layers": recorded_layers(init_config.training.get("layers")) or layers_of(model),
    }
    return model, started_from


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def recorded_layers(layers) -> dict | None:
    """A record's layer sizes, or None where a hand-edited record holds anything else."""
    if not isinstance(layers, dict) or not {"encoder", "decoder"} <= set(layers) <= {"encoder", "decoder", "embedding"}:
        return None
    lists = all(isinstance(layers[k], list) for k in ("encoder", "decoder"))
    sizes = [*layers["encoder"], *layers["decoder"]] if lists else []
    embedding = layers.get("embedding", 0)
    whole = all(isinstance(n, int) and not isinstance(n, bool) for n in [*sizes, embedding])
    if not sizes or not whole or min(sizes) < 1 or embedding < 0:
        return None
    return layers


def layers_of(model) -> dict:
    """LSTM sizes read off a model whose record does not name them."""
    units = [layer.units for layer in model.layers if type(layer).__name__ == "LSTM"]
    return {"encoder": units[:1], "decoder": units[1:], "embedding": 0}
