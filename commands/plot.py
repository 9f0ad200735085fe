"""`adder-plot`: redraw a record's training curves."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from adder.commands.common import app, fail
from adder.config import MAX_CONFIG_CHARS, ConfigError, ModelConfig

plot_app = app()


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
    from adder.eval.files import WriteError, check_writable
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


def main() -> None:
    plot_app()
