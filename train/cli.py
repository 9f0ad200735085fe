"""`adder-train` and `adder-eval`: thin typer layers over train.fit and train.evaluate.

Nothing heavy is imported at module level, so `--help` and the message asking for
the `train` extra work without TensorFlow installed.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from adder.config import ConfigError, ModelConfig

EXTRA_HINT = "error: training needs the train extra; install it with: pip install '.[train]'"

train_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
eval_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def require_training_stack() -> None:
    if any(importlib.util.find_spec(name) is None for name in ("keras", "tensorflow")):
        typer.echo(EXTRA_HINT, err=True)
        raise typer.Exit(1)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_terms(text: str) -> tuple[int, int]:
    """'2' -> (2, 2); '2-4' -> (2, 4)."""
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise fail(f"--terms takes a number or a range like 2-4, got {text!r}") from None


def versions() -> dict[str, str]:
    import keras
    import numpy

    found = {"python": platform.python_version(), "keras": keras.__version__, "numpy": numpy.__version__}
    if keras.backend.backend() == "tensorflow":
        import tensorflow

        found["tensorflow"] = tensorflow.__version__
    return found


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
    arch: Annotated[str, typer.Option(help="Layer sizes: 'seed' (the tutorial's 100/50 LSTMs) or 'wide'.")] = "wide",
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
    checks = [
        (epochs >= 1, f"--epochs must be at least 1, got {epochs}"),
        (samples >= 1, f"--samples must be at least 1, got {samples}"),
        (batch_size >= 1, f"--batch-size must be at least 1, got {batch_size}"),
        (seed >= 0, f"--seed must be a non-negative integer, got {seed}"),
        (curriculum >= 0, f"--curriculum must be 0 or more epochs, got {curriculum}"),
        (learning_rate > 0, f"--learning-rate must be positive, got {learning_rate}"),
        (schedule in ("constant", "cosine"), f"--schedule must be 'constant' or 'cosine', got {schedule!r}"),
        (out.suffix == ".keras", f"--out must end in .keras, got {out}"),
        (out.parent.is_dir(), f"--out folder {out.parent} does not exist"),
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
    require_training_stack()
    from adder.train.model import ARCHITECTURES

    if arch not in ARCHITECTURES:
        raise fail(f"--arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    from adder.train.fit import TrainSettings

    settings = TrainSettings(epochs, samples, batch_size, learning_rate, schedule, seed, curriculum)
    run_training(config, arch, out, settings, evaluate, stop_when_exact)


def run_training(config, arch_name, out, settings, evaluate, stop_when_exact):
    from dataclasses import asdict, replace

    from adder.train.archive import save_keras, write_atomic
    from adder.train.device import describe_device
    from adder.train.evaluate import evaluate as run_evaluation
    from adder.train.fit import Checkpoint, fit, keras_predictor
    from adder.train.model import ARCHITECTURES

    arch = ARCHITECTURES[arch_name]
    typer.echo(
        f"training on {describe_device()}: {config.describe()}, arch {arch_name}, "
        f"{settings.epochs} epochs x {settings.samples:,} samples"
    )
    started = time.perf_counter()
    model, history, result = fit(config, arch, settings, out, log=typer.echo, stop_when_exact=stop_when_exact)
    train_seconds = time.perf_counter() - started
    record = {
        "command": shlex.join(["adder-train", *sys.argv[1:]]),
        "arch": arch_name,
        "layers": arch.to_dict(),
        "settings": asdict(settings),
        "device": describe_device(),
        "versions": versions(),
        "train_seconds": round(train_seconds, 1),
        "history": history,
    }
    if evaluate:
        result = result or run_evaluation(keras_predictor(model, config), config)
        typer.echo(f"{out}: {result.summary()}")
        for example in result.first_wrong:
            typer.echo(f"  {example['query']} = {example['expected']}, model says {example['got']}")
        record["evaluation"] = result.to_dict()
    final = replace(config, training=record)
    save_keras(model, final, out)
    record_path = out.with_suffix(".json")
    write_atomic(record_path, lambda tmp: tmp.write_text(final.to_json(indent=2) + "\n"))
    Checkpoint(out, {}).remove()
    typer.echo(f"wrote {out} and {record_path} (trained in {train_seconds:.0f} s)")


@eval_app.command()
def evaluate_models(
    models: Annotated[list[Path], typer.Argument(help="Models to evaluate: .keras (through Keras) or .onnx.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures of the last model to this JSON file.")
    ] = None,
) -> None:
    """Measure exact-match over a model's whole domain (a seeded 1,000,000-query sample if larger)."""
    from adder.train.evaluate import evaluate, write_json

    result = None
    for path in models:
        started = time.perf_counter()
        predict, config = predictor_for(path)
        result = evaluate(predict, config)
        seconds = time.perf_counter() - started
        typer.echo(f"{path}: {result.summary()} in {seconds:.1f} s")
        for example in result.first_wrong:
            typer.echo(f"  {example['query']} = {example['expected']}, model says {example['got']}")
        if json_out:
            write_json(result, json_out, {"model": str(path), "config": config.to_dict(), "seconds": seconds})
    if result and result.wrong:
        raise typer.Exit(1)


def predictor_for(path: Path):
    if path.suffix == ".keras":
        require_training_stack()
        from adder.train.archive import ArchiveError, load_keras
        from adder.train.fit import keras_predictor

        try:
            model, config = load_keras(path)
        except (ArchiveError, ConfigError) as exc:
            raise fail(str(exc)) from None
        return keras_predictor(model, config), config
    from adder import Adder, ModelError

    try:
        adder = Adder(path)
    except ModelError as exc:
        raise fail(str(exc)) from None
    return onnx_predictor(adder), adder.config


def onnx_predictor(adder):
    """Answers through the public string API, exactly as `adder -` does."""
    import numpy as np

    from adder.train.evaluate import query_text

    def predict(expressions):
        results = list(adder.results(query_text(e) for e in expressions))
        valid = np.array([isinstance(r, int) for r in results])
        return np.array([r if isinstance(r, int) else 0 for r in results], dtype=np.int64), valid

    return predict


def main() -> None:
    train_app()


def eval_main() -> None:
    eval_app()
