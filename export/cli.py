"""`adder-export`: Keras -> validated, self-describing ONNX, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from train.cli import fail, require_training_stack

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="Trained model written by adder-train (.keras).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write the ONNX model (default: MODEL with .onnx).")
    ] = None,
    atol: Annotated[float, typer.Option(help="Largest probability difference allowed between Keras and ONNX.")] = 1e-5,
    queries: Annotated[int, typer.Option(help="Domain queries compared between Keras and ONNX.")] = 4000,
    randoms: Annotated[int, typer.Option(help="Random symbol sequences compared between Keras and ONNX.")] = 1000,
) -> None:
    """Convert a trained model to ONNX, embed its config, and prove the result matches Keras.

    The file at --output is replaced only once validation has passed.
    """
    output = output or model.with_suffix(".onnx")
    if output.suffix != ".onnx":
        raise fail(f"--output must end in .onnx, got {output}")
    if not output.parent.is_dir():
        raise fail(f"--output folder {output.parent} does not exist")
    if not model.is_file():
        raise fail(f"{model}: no such file")
    require_training_stack()
    # tf2onnx converts TensorFlow graphs, whatever backend the model was trained with.
    os.environ["KERAS_BACKEND"] = "tensorflow"

    from export.convert import fused_lstm_count, keras_to_onnx
    from export.validate import ValidationError, validate_export
    from runtime import Adder, ModelError
    from runtime.config import ConfigError
    from train.archive import ArchiveError, atomic_path, load_keras

    try:
        keras_model, config = load_keras(model)
    except (ArchiveError, ConfigError) as exc:
        raise fail(str(exc)) from None
    proto = keras_to_onnx(keras_model, config)
    with atomic_path(output) as tmp:
        tmp.write_bytes(proto.SerializeToString())
        try:
            report = validate_export(keras_model, Adder(tmp), config, queries, randoms, atol)
        except (ValidationError, ModelError) as exc:
            raise fail(f"{output} not written: {exc}") from None
    typer.echo(
        f"wrote {output} ({output.stat().st_size:,} bytes, {fused_lstm_count(proto)} fused LSTM ops); "
        f"matches Keras on {report.domain_queries:,} queries and {report.random_inputs:,} random inputs "
        f"(max probability difference {report.max_abs_diff:.2g}, tolerance {atol:g})"
    )


def main() -> None:
    app()
