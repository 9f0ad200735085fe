"""`adder-verify`: prove a pairs-layout model exact at every length, from its ONNX file alone.

A thin typer layer over adder.export.pairs.prove_graph (the proof itself: adder.eval.proof).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from adder.commands.common import fail

MAX_MODEL_BYTES = 64 * 1024 * 1024  # a pairs model is a few kB; anything this large is refused unread

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown")


@app.command()
def verify(
    model: Annotated[str, typer.Argument(help="A shipped model's name (long) or a path to an .onnx file.")],
) -> None:
    """Prove that MODEL answers every two-term sum of any length right, or print the first case that fails.

    The proof reads the weights off the ONNX graph, finds the two regions of the state that
    follow a carry of 0 and of 1, and checks with outward-rounded interval arithmetic, over
    every piece of each region, that every digit pair leads into the region of the right carry
    and writes the right digit (docs/proof.md). Exit 0 when it passes, 1 when it fails, 2 for a
    file it cannot read. Needs the onnx package (pip install onnx, or the train extra).
    """
    from adder.session import resolve_model

    path = resolve_model(model)
    proto, config = read_pairs_model(path)
    from adder.export.pairs import GraphError, prove_graph

    try:
        proof, difference = prove_graph(proto)
    except GraphError as exc:
        raise fail(f"{path}: {exc}") from None
    typer.echo(f"{path}: {config.describe()}; graph within {difference:.2g} of the float64 model of its weights")
    for line in proof.summary():
        typer.echo(line)
    stored = config.training.get("proof", {})
    if isinstance(stored, dict) and "passed" in stored:
        agrees = stored.get("passed") == proof.passed
        typer.echo(
            f"its record says the proof {'passed' if stored['passed'] else 'failed'}"
            + ("" if agrees else ": it does not agree")
        )
    if not proof.passed:
        raise typer.Exit(1)


def read_pairs_model(path: Path):
    """The ONNX proto and config of a pairs-layout model, or a one-line error."""
    try:
        import onnx
    except ImportError:
        raise fail(
            "adder-verify reads the graph with the onnx package: pip install onnx (or the train extra)"
        ) from None

    from adder.config import METADATA_KEY, ConfigError, ModelConfig

    if not path.is_file():
        raise fail(f"{path}: no such file")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise fail(f"{path}: larger than {MAX_MODEL_BYTES:,} bytes; not a pairs model")
    try:
        proto = onnx.load_from_string(path.read_bytes())
    except Exception as exc:  # protobuf raises several unrelated types for a file that is not ONNX
        raise fail(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    text = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)
    if text is None:
        raise fail(f"{path}: not an adder model (no '{METADATA_KEY}' in its metadata)")
    try:
        config = ModelConfig.from_json(text)
    except ConfigError as exc:
        raise fail(f"{path}: {exc}") from None
    if config.layout != "pairs":
        raise fail(
            f"{path}: layout {config.layout!r}; the proof covers pairs-layout models (one LSTM over digit pairs)"
        )
    return proto, config


def main() -> None:
    app()


if __name__ == "__main__":
    main()
