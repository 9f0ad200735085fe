""".keras files that carry their config, written atomically (adder.eval.files).

A ``.keras`` file is a zip archive; we add ``adder.json`` (the ModelConfig) to it,
so the Keras source of a model is as self-describing as its ONNX export.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from adder.config import MAX_CONFIG_CHARS, ModelConfig
from adder.eval.files import write_atomic

CONFIG_MEMBER = "adder.json"
MAX_MEMBER_BYTES = 1 << 30  # any other member, the weights included: a wide model's are about 1 MB


class ArchiveError(ValueError):
    """A .keras file that cannot be used as an adder model."""


def save_keras(model, config: ModelConfig, target: Path) -> None:
    """Save a Keras model with its config embedded, atomically."""

    def write(tmp: Path) -> None:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(CONFIG_MEMBER, config.to_json(indent=2))

    write_atomic(target, write)


def read_keras_config(path: Path) -> ModelConfig:
    """The config inside a .keras archive, read without trusting the archive.

    A crafted zip can inflate a small member to gigabytes; at most MAX_CONFIG_CHARS + 1
    bytes of it are ever inflated, so it is refused before it can fill memory.
    """
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive, archive.open(CONFIG_MEMBER) as member:
            raw = member.read(MAX_CONFIG_CHARS + 1)
    except KeyError:
        raise ArchiveError(f"{path}: not an adder model (no {CONFIG_MEMBER} inside)") from None
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{path}: not a .keras archive ({str(exc)[:200]})") from None
    except (zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ArchiveError(f"{path}: not a readable .keras archive ({reason})") from None
    if len(raw) > MAX_CONFIG_CHARS:
        raise ArchiveError(f"{path}: {CONFIG_MEMBER} is larger than {MAX_CONFIG_CHARS:,} bytes; refused")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"{path}: {CONFIG_MEMBER} is not UTF-8 text") from None
    return ModelConfig.from_json(text)


def check_archive_sizes(path: Path) -> None:
    """Refuse an archive whose members would inflate past what any adder model holds, before
    Keras unpacks it (zipfile never inflates a member past the size its header declares)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"{path}: not a .keras archive ({str(exc)[:200]})") from None
    for info in members:
        limit = MAX_CONFIG_CHARS if info.filename.endswith(".json") else MAX_MEMBER_BYTES
        if info.file_size > limit:
            raise ArchiveError(
                f"{path}: {info.filename!r} inflates to {info.file_size:,} bytes (at most {limit:,} are read); refused"
            )


def load_keras(path: Path):
    """Load a model and its config; safe_mode refuses archives that would run arbitrary code.

    The config and the members' sizes are checked first, before Keras (and TensorFlow)
    is even imported.
    """
    config = read_keras_config(path)
    check_archive_sizes(path)
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged archive
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ArchiveError(f"{path}: Keras could not load it ({reason})") from None
    return model, config
