"""Model files that survive crashes and carry their config.

A ``.keras`` file is a zip archive; we add ``adder.json`` (the ModelConfig) to it,
so the Keras source of a model is as self-describing as its ONNX export.
Every file is written to a temp file in the target folder, then ``os.replace``d:
after a crash the target holds either the old complete file or the new one.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from adder.config import ModelConfig

CONFIG_MEMBER = "adder.json"


class ArchiveError(ValueError):
    """A .keras file that cannot be used as an adder model."""


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; move it into place only if the block succeeds."""
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make shipped models private
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    with atomic_path(target) as tmp:
        write(tmp)


def save_keras(model, config: ModelConfig, target: Path) -> None:
    """Save a Keras model with its config embedded, atomically."""

    def write(tmp: Path) -> None:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(CONFIG_MEMBER, config.to_json(indent=2))

    write_atomic(target, write)


def read_keras_config(path: Path) -> ModelConfig:
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read(CONFIG_MEMBER).decode("utf-8")
    except zipfile.BadZipFile:
        raise ArchiveError(f"{path}: not a .keras archive") from None
    except KeyError:
        raise ArchiveError(f"{path}: not an adder model (no {CONFIG_MEMBER} inside)") from None
    return ModelConfig.from_json(text)


def load_keras(path: Path):
    """Load a model and its config; safe_mode refuses archives that would run arbitrary code."""
    import keras

    config = read_keras_config(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise ArchiveError(f"{path}: Keras could not load it ({str(exc).splitlines()[0][:200]})") from None
    return model, config
