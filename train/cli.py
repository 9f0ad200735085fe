"""`adder-train` and `adder-eval`: thin typer layers over train.fit and train.evaluate.

Nothing heavy is imported at module level, so `--help` and the message asking for
the `train` extra work without TensorFlow installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from adder.answer import printable
from adder.config import MAX_CONFIG_CHARS, ConfigError, ModelConfig
from adder.train.device import BACKENDS

MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which Keras uses, takes no more
MAX_SAMPLES = 100_000_000  # an epoch's queries are built in memory: about 30 GB at this many
EXTRA_HINT = (
    "error: training needs the train extra; install it with: pip install '.[train]' "
    "(or '.[jax]' to train with JAX and no TensorFlow)"
)

train_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
eval_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
plot_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def fail(message: str) -> typer.Exit:
    """Print one error line (control characters in a path escaped, see adder.answer.printable); exit 2."""
    typer.echo(f"error: {printable(message)}", err=True)
    return typer.Exit(2)


def require_training_stack(backend: str = "auto") -> str:
    """Point Keras at a backend (before anything imports keras) and check it is installed.

    Returns the backend chosen. TensorFlow is needed only when it is the backend.
    """
    from adder.train.device import BACKEND_EXTRA, choose_backend, missing_for

    chosen = choose_backend(backend)
    missing = missing_for(chosen)
    if missing:
        if chosen == "tensorflow" and backend == "auto":
            typer.echo(EXTRA_HINT, err=True)
        else:
            extra = BACKEND_EXTRA.get(chosen)
            install = f"pip install '.[{extra}]'" if extra else "pip install " + " ".join(missing)
            typer.echo(
                f"error: training with {chosen} needs {' and '.join(missing)}; install them with: {install}", err=True
            )
        raise typer.Exit(1)
    os.environ["KERAS_BACKEND"] = chosen
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return chosen


def parse_terms(text: str) -> tuple[int, int]:
    """'2' -> (2, 2); '2-4' -> (2, 4)."""
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise fail(f"--terms takes a number or a range like 2-4, got {text!r}") from None


@train_app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the trained model (.keras).")] = Path(
        "model.keras"
    ),
    terms: Annotated[str, typer.Option(help="Number of terms per query: N, or a range MIN-MAX.")] = "2",
    smallest: Annotated[int, typer.Option(help="Smallest operand in the domain.")] = 0,
    largest: Annotated[int, typer.Option(help="Largest operand in the domain.")] = 999,
    ops: Annotated[str, typer.Option(help="Operators to learn, any of + - * (e.g. '+-').")] = "+",
    brackets: Annotated[bool, typer.Option(help="Also learn round brackets around any sub-expression.")] = False,
    arch: Annotated[
        str,
        typer.Option(
            help="Layer sizes: 'seed' (the tutorial's 100/50 LSTMs), 'wide' (128/128), or ENCODER/DECODER "
            "LSTM units such as 64/64 (comma-separated for stacked layers: 64,64/64)."
        ),
    ] = "wide",
    epochs: Annotated[int, typer.Option(help="Passes, each over freshly drawn samples.")] = 40,
    samples: Annotated[int, typer.Option(help="Random queries drawn per epoch.")] = 50_000,
    batch_size: Annotated[int, typer.Option(help="Queries per gradient step.")] = 128,
    learning_rate: Annotated[
        float, typer.Option(help="Adam's learning rate (the peak, with --schedule cosine).")
    ] = 1e-3,
    schedule: Annotated[str, typer.Option(help="Learning-rate schedule: 'constant' or 'cosine'.")] = "cosine",
    reverse: Annotated[bool, typer.Option(help="Feed the query to the encoder reversed.")] = True,
    reverse_output: Annotated[
        bool, typer.Option(help="Have the decoder write the answer's last digit first, as carries flow.")
    ] = True,
    encoding: Annotated[str, typer.Option(help="'onehot' vectors, or 'index' with an Embedding layer.")] = "onehot",
    seed: Annotated[int, typer.Option(help="Seed for weights and data; same seed, same machine, same model.")] = 0,
    curriculum: Annotated[
        int,
        typer.Option(
            help="With a range of --terms: epochs spent on each term count before the next is added "
            "(the fewest terms first); 0 draws the whole grammar from the start."
        ),
    ] = 0,
    small_operands: Annotated[
        float,
        typer.Option(
            help="Share of operands drawn with a uniform digit count (so 7 is as likely as 70..99), "
            "which uniform draws starve."
        ),
    ] = 0.25,
    replay_share: Annotated[
        float,
        typer.Option(
            help="Share of each epoch replayed from the queries evaluations found wrong (0 turns replay off)."
        ),
    ] = 0.25,
    check_every: Annotated[
        int,
        typer.Option(
            help="Check every query of the domain every N epochs (refilling the replay pool); "
            "0 checks whenever the probe sample is all right (at most every 4 epochs)."
        ),
    ] = 0,
    term_mix: Annotated[
        str,
        typer.Option(
            help="Draws per term count, fewest first, as weights like '1:9' (with --terms 2-3: 10% two-term "
            "queries); default: every count alike, whatever share of the domain it holds."
        ),
    ] = "",
    check_sample: Annotated[
        int,
        typer.Option(
            help="Make the checks during training (every --check-every epochs, or when the probe is all right) "
            "look at this many queries drawn uniformly over the domain, not all of them; the whole domain is "
            "checked once a sample and every pooled query are right. "
            "0 checks every query. (The first check of an --init model always checks every query.)"
        ),
    ] = 0,
    init: Annotated[
        Path | None,
        typer.Option(help="Start from this trained .keras model (same domain) instead of fresh weights: fine-tuning."),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="Keras backend: auto (one that sees a GPU, JAX first; else TensorFlow if installed; else JAX), "
            "tensorflow, jax or torch."
        ),
    ] = "auto",
    devices: Annotated[
        str,
        typer.Option(
            help="Local devices to train on, data-parallel (keras.distribution.DataParallel, JAX backend): "
            "a number, or 'all'. The batch is split across them."
        ),
    ] = "1",
    evaluate: Annotated[bool, typer.Option(help="Measure exact-match over the domain when training ends.")] = True,
    stop_when_exact: Annotated[
        bool, typer.Option(help="End early once every query of the domain is answered right.")
    ] = True,
) -> None:
    """Train the seq2seq adder and save it (with its config inside) to --out.

    Checkpoints after every epoch beside --out; rerunning the same command after a
    crash resumes from the last completed epoch.
    """
    min_terms, max_terms = parse_terms(terms)
    term_weights = parse_term_mix(term_mix, max_terms - min_terms + 1)
    checks = [
        (check_sample >= 0, f"--check-sample must be 0 or more queries, got {check_sample}"),
        (epochs >= 1, f"--epochs must be at least 1, got {epochs}"),
        (samples >= 1, f"--samples must be at least 1, got {samples}"),
        (batch_size >= 1, f"--batch-size must be at least 1, got {batch_size}"),
        (seed >= 0, f"--seed must be a non-negative integer, got {seed}"),
        (seed <= MAX_SEED, f"--seed must be at most {MAX_SEED:,} (what the random generators take), got {seed:,}"),
        (samples <= MAX_SAMPLES, f"--samples must be at most {MAX_SAMPLES:,} an epoch, got {samples:,}"),
        (check_sample <= MAX_SAMPLES, f"--check-sample must be at most {MAX_SAMPLES:,} queries, got {check_sample:,}"),
        (math.isfinite(learning_rate), f"--learning-rate must be a finite number, got {learning_rate}"),
        (curriculum >= 0, f"--curriculum must be 0 or more epochs, got {curriculum}"),
        (0 <= small_operands <= 1, f"--small-operands must be between 0 and 1, got {small_operands}"),
        (0 <= replay_share < 1, f"--replay-share must be at least 0 and below 1, got {replay_share}"),
        (check_every >= 0, f"--check-every must be 0 or more epochs, got {check_every}"),
        (backend in BACKENDS, f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}"),
        (
            devices == "all" or (devices.isdigit() and int(devices) >= 1),
            f"--devices takes a number or 'all', got {devices!r}",
        ),
        (learning_rate > 0, f"--learning-rate must be positive, got {learning_rate}"),
        (schedule in ("constant", "cosine"), f"--schedule must be 'constant' or 'cosine', got {schedule!r}"),
        (out.suffix == ".keras", f"--out must end in .keras, got {out}"),
        (out.parent.is_dir(), f"--out folder {out.parent} does not exist"),
        (not out.is_dir(), f"--out {out} is a folder; give a file name ending in .keras"),
    ]
    for ok, message in checks:
        if not ok:
            raise fail(message)
    try:
        config = ModelConfig(
            min_terms=min_terms,
            max_terms=max_terms,
            min_operand=smallest,
            max_operand=largest,
            operators=ops,
            brackets=brackets,
            reverse_input=reverse,
            reverse_output=reverse_output,
            encoding=encoding,
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if init is not None and not init.is_file():
        raise fail(f"--init {init}: no such file")
    from adder.train.archive import WriteError, check_writable

    try:
        check_writable(out.parent)  # now, not after the first epoch
    except WriteError as exc:
        raise fail(f"--out: {exc}") from None
    require_training_stack(backend)
    from adder.train.fit import TrainSettings
    from adder.train.model import parse_arch

    try:
        parse_arch(arch)
    except ValueError as exc:
        raise fail(str(exc)) from None
    settings = TrainSettings(
        epochs,
        samples,
        batch_size,
        learning_rate,
        schedule,
        seed,
        curriculum,
        small_operands,
        replay_share,
        check_every,
        term_weights,
        check_sample,
    )
    from adder.train.archive import Busy, exclusive

    try:
        with exclusive(out, "adder-train"):
            device_count = None if devices == "all" else int(devices)
            run_training(config, arch, out, settings, evaluate, stop_when_exact, init, device_count)
    except (Busy, WriteError) as exc:
        raise fail(str(exc)) from None


def parse_term_mix(text: str, counts: int) -> tuple[float, ...]:
    """'1:9' -> (1.0, 9.0): one non-negative weight per term count of --terms, not all zero."""
    if not text:
        return ()
    try:
        weights = tuple(float(part) for part in text.split(":"))
    except ValueError:
        raise fail(f"--term-mix takes weights like '1:9', got {text!r}") from None
    if len(weights) != counts:
        raise fail(f"--term-mix needs {counts} weight(s), one per term count of --terms, got {text!r}")
    if any(not w >= 0 or w == float("inf") for w in weights) or not sum(weights) > 0:
        raise fail(f"--term-mix weights must be finite, non-negative and not all 0, got {text!r}")
    if not math.isfinite(sum(weights)):
        raise fail(f"--term-mix weights must add up to a finite number, got {text!r}; scale them down")
    return weights


def load_init(path: Path, config):
    """The model to fine-tune and what the record says of it; refused unless its domain is ours."""
    from adder.train.archive import ArchiveError, load_keras

    try:
        model, init_config = load_keras(path)
    except (ArchiveError, ConfigError) as exc:
        raise fail(str(exc)) from None
    if init_config != config:
        raise fail(
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
    """A record's layer sizes, or None where a hand-edited record holds anything else
    (the sizes are then read off the model itself)."""
    if not isinstance(layers, dict) or not {"encoder", "decoder"} <= set(layers) <= {"encoder", "decoder", "embedding"}:
        return None
    sizes = (
        [*layers["encoder"], *layers["decoder"]]
        if all(isinstance(layers[k], list) for k in ("encoder", "decoder"))
        else []
    )
    embedding = layers.get("embedding", 0)
    whole = all(isinstance(n, int) and not isinstance(n, bool) for n in [*sizes, embedding])
    if not sizes or not whole or min(sizes) < 1 or embedding < 0:
        return None
    return layers


def layers_of(model) -> dict:
    """LSTM sizes read off a model whose record does not name them."""
    units = [layer.units for layer in model.layers if type(layer).__name__ == "LSTM"]
    return {"encoder": units[:1], "decoder": units[1:], "embedding": 0}


def run_training(config, arch_name, out, settings, evaluate, stop_when_exact, init=None, device_count=1):
    from dataclasses import asdict, replace

    from adder.train.archive import save_keras, write_atomic
    from adder.train.device import describe, use_devices, versions
    from adder.train.fit import Checkpoint, CheckpointError, fit, full_check
    from adder.train.model import Architecture, parse_arch

    try:
        devices = use_devices(device_count)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if settings.batch_size % devices["count"]:
        raise fail(f"--batch-size {settings.batch_size} must split evenly over {devices['count']} devices")
    arch = parse_arch(arch_name)
    init_model, started_from = load_init(init, config) if init is not None else (None, None)
    if init_model is not None:  # the layers are the starting model's, whatever --arch says
        arch_name = started_from.pop("arch")
        arch = Architecture(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in started_from.pop("layers").items()}
        )
    typer.echo(
        f"training with {describe(devices)}: {config.describe()}, arch {arch_name}, "
        f"{settings.epochs} epochs x {settings.samples:,} samples"
        + (f", starting from {init}" if init is not None else "")
    )
    started = time.perf_counter()
    try:
        model, history, result = fit(
            config, arch, settings, out, log=typer.echo, stop_when_exact=stop_when_exact, init=init_model
        )
    except CheckpointError as exc:
        raise fail(str(exc)) from None
    train_seconds = time.perf_counter() - started
    record = {
        "command": shlex.join(["adder-train", *sys.argv[1:]]),
        "arch": arch_name,
        "layers": arch.to_dict(),
        "settings": asdict(settings),
        "device": describe(devices),
        "backend": os.environ["KERAS_BACKEND"],
        "devices": devices,
        "versions": versions(),
        "train_seconds": round(train_seconds, 1),
        "history": history,
    }
    if started_from:
        record["init"] = started_from
    if evaluate:
        result = result or full_check(model, config)
        typer.echo(f"{out}: {result.summary()}")
        for example in result.first_wrong:
            typer.echo(f"  {example['query']} = {example['expected']}, model says {example['got']}")
        record["evaluation"] = result.to_dict()
    final = replace(config, training=record)
    save_keras(model, final, out)
    record_path = out.with_suffix(".json")
    write_atomic(record_path, lambda tmp: tmp.write_text(final.to_json(indent=2) + "\n"))
    from adder.train.plot import draw_curves

    draw_curves(record, out.with_suffix(".png"), title=f"{out.name}: {config.describe()}, arch {arch_name}")
    Checkpoint(out, {}).remove()
    typer.echo(f"wrote {out}, {record_path} and {out.with_suffix('.png')} (trained in {train_seconds:.0f} s)")


@eval_app.command()
def evaluate_models(
    models: Annotated[list[Path], typer.Argument(help="Models to evaluate: .keras (through Keras) or .onnx.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures of the last model to this JSON file.")
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="Show progress on stderr: done, rate, wrong so far, time left.")
    ] = True,
) -> None:
    """Check every query of a model's domain (up to 50,000,000; above that a 1,000,000-query sample
    drawn uniformly over its queries) and print what is wrong, overall and per slice.

    An .onnx model is answered through the runtime's string API on every core, exactly
    as `adder -` answers; a .keras model through Keras.
    """
    check_eval_arguments(models, json_out)
    from adder.train.evaluate import evaluate, write_json

    result = None
    for path in models:
        started = time.perf_counter()
        predict, config = predictor_for(path)
        result = evaluate(predict, config, progress=ProgressBar(path.name) if progress else None)
        seconds = time.perf_counter() - started
        typer.echo(f"{path}: {result.summary()} in {seconds:.1f} s")
        for example in result.first_wrong:
            typer.echo(f"  {example['query']} = {example['expected']}, model says {example['got']}")
        if json_out:
            write_json(result, json_out, {"model": str(path), "config": config.to_dict(), "seconds": seconds})
    if result and result.wrong:
        raise typer.Exit(1)


def check_eval_arguments(models: list[Path], json_out: Path | None) -> None:
    """Everything adder-eval reads or writes, checked before any model is evaluated: an hour's
    evaluation must not end in a refusal to write its figures."""
    for path in models:
        if path.is_dir():
            raise fail(f"{path} is a folder; give a .keras or .onnx model file")
        if not path.is_file():
            raise fail(f"{path}: no such file")
        if path.suffix == ".keras":
            from adder.train.archive import ArchiveError, read_keras_config

            try:
                read_keras_config(path)
            except (ArchiveError, ConfigError) as exc:
                raise fail(str(exc)) from None
    if json_out is None:
        return
    if json_out.is_dir():
        raise fail(f"--json {json_out} is a folder; give a file name such as figures.json")
    if not json_out.parent.is_dir():
        raise fail(f"--json folder {json_out.parent} does not exist")
    from adder.train.archive import WriteError, check_writable

    try:
        check_writable(json_out.parent)
    except WriteError as exc:
        raise fail(f"--json: {exc}") from None


class ProgressBar:
    """One stderr line redrawn at most twice a second: done, rate, wrong so far, time left."""

    def __init__(self, label: str) -> None:
        self.label, self.started, self.shown = label, time.perf_counter(), 0.0

    def __call__(self, done: int, total: int, wrong: int) -> None:
        now = time.perf_counter()
        if now - self.shown < 0.5 and done < total:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        left = (total - done) / rate if rate else 0
        width = 24
        filled = int(width * done / total) if total else width
        line = (
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} "
            f"{rate:,.0f} q/s, {wrong:,} wrong, {int(left) // 60}:{int(left) % 60:02d} left "
        )
        sys.stderr.write(line + ("\n" if done >= total else ""))
        sys.stderr.flush()


def predictor_for(path: Path):
    if path.suffix == ".keras":
        require_training_stack()
        from adder.train.archive import ArchiveError, load_keras

        try:
            model, config = load_keras(path)
        except (ArchiveError, ConfigError) as exc:
            raise fail(str(exc)) from None
        from adder.train.fit import keras_predictor

        return keras_predictor(model, config), config
    from adder import Adder, ModelError

    try:
        adder = Adder(path)
    except ModelError as exc:
        raise fail(str(exc)) from None
    return onnx_predictor(adder), adder.config


def onnx_predictor(adder):
    """A block predictor answering through the public string API and its batch path, as `adder -` does."""
    import numpy as np

    from adder.grammar import shape_text

    def predict(shape, terms):
        template = shape_text(shape)
        results = list(adder.results(template.format(*row) for row in terms.tolist()))
        valid = np.array([isinstance(r, int) for r in results])
        return np.array([r if isinstance(r, int) else 0 for r in results], dtype=adder.codec.answer_dtype), valid

    predict.takes_blocks = True
    return predict


@plot_app.command()
def plot_record(
    record: Annotated[
        Path, typer.Argument(help="A training record: model.json, or a .keras / .onnx model carrying one.")
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="PNG to write (default: beside RECORD).")] = None,
) -> None:
    """Redraw the training curves (loss, probe exact-match, full checks, replay pool) from a record."""
    if importlib.util.find_spec("matplotlib") is None:
        typer.echo(
            "error: drawing curves needs matplotlib; install it with: pip install '.[train]' (or '.[jax]')", err=True
        )
        raise typer.Exit(1)
    target = out or record.with_suffix(".png")
    checks = [
        (not target.is_dir(), f"--out {target} is a folder; give a file name ending in .png"),
        (target.suffix == ".png", f"--out must end in .png, got {target}"),
        (target.parent.is_dir(), f"--out folder {target.parent} does not exist"),
    ]
    for ok, message in checks:
        if not ok:
            raise fail(message)
    from adder.train.archive import WriteError, check_writable
    from adder.train.plot import draw_curves, record_problem

    try:
        config = read_record(record)
        check_writable(target.parent)
    except WriteError as exc:
        raise fail(f"--out: {exc}") from None
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    problem = record_problem(config.training)
    if problem:
        raise fail(f"{record}: {problem}")
    try:
        draw_curves(config.training, target, title=f"{record.name}: {config.describe()}")
    except WriteError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"wrote {target}")


def read_record(path: Path) -> ModelConfig:
    """The config and training record in model.json, a .keras or an .onnx file; at most
    MAX_CONFIG_CHARS of a record are ever read, whatever its size."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give model.json or a .keras / .onnx model")
    if path.suffix == ".keras":
        from adder.train.archive import read_keras_config

        return read_keras_config(path)
    if path.suffix == ".onnx":
        from adder import Adder

        return Adder(path).config
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        text = file.read(MAX_CONFIG_CHARS + 1)
    if len(text) > MAX_CONFIG_CHARS:
        raise ValueError(f"{path}: longer than {MAX_CONFIG_CHARS:,} characters; refused")
    try:
        return ModelConfig.from_json(text)
    except ConfigError as exc:
        raise ValueError(f"{path}: {exc}") from None


def plot_main() -> None:
    plot_app()


def main() -> None:
    train_app()


def eval_main() -> None:
    eval_app()
