"""`adder-export`: Keras -> validated, self-describing ONNX, written atomically."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from adder.export.validate import ATOL, ATOL_RANDOM
from adder.train.cli import fail, require_training_stack

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
    from adder.train.archive import ArchiveError, WriteError, check_writable, read_keras_config

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

    from adder import Adder, ModelError
    from adder.config import ConfigError
    from adder.export.convert import fused_lstm_count, keras_to_onnx, quantize_int8
    from adder.export.unroll import unroll_decoder
    from adder.export.validate import ValidationError, validate_export
    from adder.session import batch_graph_path
    from adder.train.archive import ArchiveError, atomic_path, load_keras, temp_prefix

    try:
        keras_model, config = load_keras(model)
    except (ArchiveError, ConfigError) as exc:
        raise fail(str(exc)) from None
    proto = keras_to_onnx(keras_model, config)

    def write_validated(path: Path, graph=proto, label: str = "float32 export", target: Path = output) -> None:
        path.write_bytes(graph.SerializeToString())
        try:
            report = validate_export(keras_model, Adder(path), config, queries, randoms, atol, atol_random)
        except (ValidationError, ModelError) as exc:
            raise fail(f"{target} not written: {exc}") from None
        typer.echo(
            f"{label}: {path.stat().st_size:,} bytes, {fused_lstm_count(graph)} fused LSTM ops; "
            f"matches Keras: max probability difference {report.domain_max_diff:.2g} on {report.domain_queries:,} "
            f"domain queries (tolerance {atol:g}), {report.random_max_diff:.2g} on {report.random_inputs:,} "
            f"random inputs (tolerance {atol_random:g}); all decoded answers identical"
        )

    try:
        with atomic_path(output) as tmp:
            if quantize == "int8":
                # Named like atomic_path's temp files, so a killed run's folder is cleaned up by the next.
                with tempfile.TemporaryDirectory(
                    prefix=temp_prefix(output), suffix=".tmp", dir=output.parent
                ) as folder:
                    float32 = Path(folder) / "float32.onnx"
                    write_validated(float32)
                    quantize_int8(float32, tmp)
                stamp_int8(tmp, config, describe_int8(tmp, config))
            else:
                write_validated(tmp)
        typer.echo(f"wrote {output} ({output.stat().st_size:,} bytes)")
        if quantize == "none":
            # The runtime answers batches with this graph and single queries with the fused one.
            batch_output = batch_graph_path(output)
            with atomic_path(batch_output) as tmp:
                write_validated(tmp, unroll_decoder(proto, config.output_length), "batch graph", batch_output)
            typer.echo(f"wrote {batch_output} ({batch_output.stat().st_size:,} bytes)")
            write_single_graph(proto, keras_model, config, output, queries, randoms, atol, atol_random)
    except WriteError as exc:
        raise fail(str(exc)) from None


def write_single_graph(proto, keras_model, config, output: Path, queries, randoms, atol, atol_random) -> None:
    """OUTPUT.single.onnx: the same weights rebuilt for exactly one query (export/simplify.py),
    validated against Keras query by query; Adder answers single queries with it."""
    import onnxruntime as ort

    from adder.codec import Codec
    from adder.export.simplify import SimplifyError, simplify
    from adder.export.validate import ValidationError, validate_export
    from adder.session import single_graph_path
    from adder.train.archive import atomic_path

    try:
        graph = simplify(proto, config, single=True)
    except SimplifyError as exc:
        typer.echo(f"no single-query graph: {exc}")
        return
    target = single_graph_path(output)

    class OneByOne:  # the single graph takes one query per call
        codec = Codec(config)

        def __init__(self, path: Path) -> None:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def predict_tensor(self, x):
            import numpy as np

            return np.concatenate([self.session.run(None, {"query": row[None]})[0] for row in x])

    with atomic_path(target) as tmp:
        tmp.write_bytes(graph.SerializeToString())
        try:
            report = validate_export(keras_model, OneByOne(tmp), config, queries, randoms, atol, atol_random)
        except ValidationError as exc:
            raise fail(f"{target} not written: {exc}") from None
    typer.echo(
        f"wrote {target} ({target.stat().st_size:,} bytes, {len(graph.graph.node)} nodes, batch fixed at 1): "
        f"max probability difference {report.domain_max_diff:.2g} on {report.domain_queries:,} domain queries, "
        f"{report.random_max_diff:.2g} on {report.random_inputs:,} random inputs; all decoded answers identical"
    )


def stamp_int8(path: Path, config, result) -> None:
    """The int8 file's own record: its evaluation, not the float32 model's it was made from."""
    import dataclasses

    import onnx

    from adder.config import METADATA_KEY

    training = {
        **config.training,
        "evaluation": result.to_dict(),
        "quantization": "int8 weights, per channel; activations quantized at run time (adder-export --quantize int8)",
    }
    proto = onnx.load(path)
    onnx.helper.set_model_props(proto, {METADATA_KEY: dataclasses.replace(config, training=training).to_json()})
    onnx.save(proto, path)


def describe_int8(path: Path, config):
    """An int8 model cannot match float32 probabilities to 1e-5; report what it gets right instead."""
    from adder import Adder
    from adder.train.cli import onnx_predictor
    from adder.train.evaluate import evaluate

    result = evaluate(onnx_predictor(Adder(path)), config)
    typer.echo(f"int8 export: {path.stat().st_size:,} bytes; {result.summary()}")
    for example in result.first_wrong[:5]:
        typer.echo(f"  {example['query']} = {example['expected']}, int8 model says {example['got']}")
    return result


def main() -> None:
    app()
