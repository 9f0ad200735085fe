"""What every training-side command shares: one-line errors, the training stack check, progress."""

from __future__ import annotations

import os
import sys
import time

import typer

from adder.answer import printable

EXTRA_HINT = (
    "error: training needs the train extra; install it with: pip install '.[train]' "
    "(or '.[jax]' to train with JAX and no TensorFlow)"
)


def app() -> typer.Typer:
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown")


def fail(message: str) -> typer.Exit:
    """Print one error line (control characters in a path escaped, see adder.answer.printable); exit 2."""
    typer.echo(f"error: {printable(message)}", err=True)
    return typer.Exit(2)


def require_training_stack(backend: str = "auto") -> str:
    """Point Keras at a backend (before anything imports keras) and check it is installed.

    Returns the backend chosen. TensorFlow is needed only when it is the backend.
    """
    from adder.train.device import BACKEND_EXTRA, choose_backend, missing_for
    from adder.train.quiet import quiet_native_logs

    quiet_native_logs()  # before anything loads TensorFlow's native side
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
    return chosen


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
