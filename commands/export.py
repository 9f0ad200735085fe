"""`adder-export`: a thin typer layer over adder.export.export.export_model."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated

import typer

from adder.commands.common import fail, require_training_stack
from adder.export.validate import ATOL, ATOL_RANDOM

MAX_COMPARED = 1_000_000  # inputs compared between Keras and ONNX, each held in memory as a tensor

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown")


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="Trained model written by adder-train (.keras).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write the ONNX model (default: MODEL with .onnx).")
    ] = None,
    atol: Annotated[
        float, typer.Option(help="Largest probability difference allowed between Keras and ONNX on domain queries.")
    ] = ATOL,
    atol_random: Annotated[
        float, typer.Option(help="The same on random symbol sequences, far outside the training data.")
    ] = ATOL_RANDOM,
    queries: Annotated[int, typer.Option(help="Domain queries compared between Keras and ONNX.")] = 4000,
    randoms: Annotated[int, typer.Option(help="Random symbol sequences compared between Keras and ONNX.")] = 1000,
    quantize: Annotated[
        str,
        typer.Option(help="'none' (float32), or 'int8': dynamic quantization, judged by exact-match over the domain."),
    ] = "none",
) -> None:
    """Convert a trained model to ONNX, embed its config, and prove the result matches Keras.

    Beside a float32 model it also writes OUTPUT.batch.onnx, the same model with its
    decoder written out step by step (faster on batches), validated the same way.

    The file at --output is replaced only once validation has passed.
    """
    if quantize not in ("none", "int8"):
        raise fail(f"--quantize must be 'none' or 'int8', got {quantize!r}")
    output = output or model.with_suffix(".int8.onnx" if quantize == "int8" else ".onnx")
    if output.suffix != ".onnx":
        raise fail(f"--output must end in .onnx, got {output}")
    if not output.parent.is_dir():
        raise fail(f"--output folder {output.parent} does not exist")
    if output.is_dir():
        raise fail(f"--output {output} is a folder; give a file name ending in .onnx")
    if not model.is_file():
        raise fail(f"{model}: no such file")
    if not (1 <= queries <= MAX_COMPARED and 1 <= randoms <= MAX_COMPARED):
        raise fail(f"--queries and --randoms must be from 1 to {MAX_COMPARED:,}, got {queries:,} and {randoms:,}")
    if not (atol >= 0 and atol_random >= 0):
        raise fail(f"--atol and --atol-random must be 0 or more, got {atol} and {atol_random}")
    from adder.config import ConfigError
    from adder.eval.files import WriteError, check_writable
    from adder.train.archive import ArchiveError, read_keras_config

    try:
        read_keras_config(model)  # a model that is no adder model is refused before TensorFlow loads
    except (ArchiveError, ConfigError) as exc:
        raise fail(str(exc)) from None

    try:
        check_writable(output.parent)  # before the conversion, not after it
    except WriteError as exc:
        raise fail(f"--output: {exc}") from None
    require_training_stack("tensorflow")
    if importlib.util.find_spec("tf2onnx") is None:
        typer.echo("error: export needs tf2onnx; install it with: pip install '.[train]'", err=True)
        raise typer.Exit(1)
    # tf2onnx converts TensorFlow graphs, whatever backend the model was trained with.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    # Trace on the CPU whatever the machine: where TensorFlow sees a GPU, Keras's LSTM traces
    # to CudnnRNNV3, which tf2onnx cannot convert (keras-team/keras#21799).
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"

    from adder.export.export import ExportError, export_model

    try:
        export_model(
            model, output, atol=atol, atol_random=atol_random, queries=queries, randoms=randoms,
            quantize=quantize, log=typer.echo,
        )  # fmt: skip
    except ExportError as exc:
        raise fail(str(exc)) from None


def main() -> None:
    app()
