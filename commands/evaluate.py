"""`adder-eval`: exact-match over every query of a model's domain, or its fixed suites."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from adder.commands.common import ProgressBar, app, fail, require_training_stack
from adder.config import ConfigError

eval_app = app()


@eval_app.command()
def evaluate_models(
    models: Annotated[list[Path], typer.Argument(help="Models to evaluate: .keras (through Keras) or .onnx.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures of the last model to this JSON file.")
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="Show progress on stderr: done, rate, wrong so far, time left.")
    ] = True,
    uniform: Annotated[
        int,
        typer.Option(
            help="With the verification suites: pairs in the uniform suite (drawn with --uniform-seed).",
            min=0,
            max=100_000_000,
        ),
    ] = 10_000_000,
    uniform_seed: Annotated[
        int,
        typer.Option(
            help="With the verification suites: numpy seed of the uniform suite. Training's own checks use "
            "2026 and replay what they find wrong, so another seed gives pairs no run has seen.",
            min=0,
        ),
    ] = 2026,
    runs: Annotated[
        int,
        typer.Option(
            help="With the verification suites: also this many pairs summing to 9 over a run of digits with "
            "no carry into it (drawn with --uniform-seed), which uniform pairs almost never hold.",
            min=0,
            max=100_000_000,
        ),
    ] = 0,
    nines: Annotated[
        int,
        typer.Option(
            help="With the verification suites: also this many pairs whose every digit is 9 with probability "
            "1/2 (drawn with --uniform-seed): digit pairs summing to 18 and 9 side by side.",
            min=0,
            max=100_000_000,
        ),
    ] = 0,
) -> None:
    """Check every query of a model's domain (up to 50,000,000) and print what is wrong, overall
    and per slice.

    A two-term sum too large to enumerate (ten-digit operands: 10^20 queries) is checked
    on fixed suites instead: AdderBoard's 10,010 cases, --uniform pairs, every carry
    chain, every pair of repdigits, every pair with at most two nonzero digits each.
    Any other larger domain gets a 1,000,000-query sample drawn uniformly over its queries.
    An .onnx model is answered through the runtime's string API on every core, exactly
    as `adder -` answers; a .keras model through Keras.
    """
    check_eval_arguments(models, json_out)
    from adder.eval import suites
    from adder.eval.evaluate import EXHAUSTIVE_LIMIT, evaluate, write_json

    result = None
    for path in models:
        started = time.perf_counter()
        predict, config = predictor_for(path)
        if config.layout == "pairs":  # no fixed suites reach a thousand digits; the proof covers them
            raise fail(
                f"{path}: a pairs-layout model is proven, not sampled: run adder-verify {path} "
                "(and python benchmarks/long_checks.py for the ordinary suites)"
            )
        if config.domain_size > EXHAUSTIVE_LIMIT and suites.applies(config):
            each = suites.evaluate_suites(
                predict, config, uniform, uniform_seed, progress=(lambda name: ProgressBar(name)) if progress else None
            )
            result = suites.combined(each)
            if runs:
                result = suites.confirmed_drawn(result, predict, config, uniform_seed, runs)
            if nines:
                result = suites.confirmed_drawn(result, predict, config, uniform_seed, nines, family="nines")
        else:
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
    from adder.eval.files import WriteError, check_writable

    try:
        check_writable(json_out.parent)
    except WriteError as exc:
        raise fail(f"--json: {exc}") from None


def predictor_for(path: Path):
    if path.suffix == ".keras":
        require_training_stack()
        from adder.train.archive import ArchiveError, load_keras

        try:
            model, config = load_keras(path)
        except (ArchiveError, ConfigError) as exc:
            raise fail(str(exc)) from None
        from adder.train.checks import keras_predictor

        return keras_predictor(model, config), config
    from adder import Adder, ModelError

    try:
        adder = Adder(path)
    except ModelError as exc:
        raise fail(str(exc)) from None
    from adder.eval.predictors import onnx_predictor

    return onnx_predictor(adder), adder.config


def main() -> None:
    eval_app()
