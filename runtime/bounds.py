"""One way of checking a number that a person or a program hands the runtime.

Every option and argument that is a number goes through ``whole_number`` (or
``real_number``), from the Python API (``Adder(threads=...)``) or from a command line
(``parse_whole_number`` for text), so each is refused the same way: one sentence naming
it, the range it must lie in, and what was given. Nothing here imports anything of ours,
so any command (the training one too) may use it.
"""

from __future__ import annotations

import math
import operator


class NumberError(ValueError):
    """A number outside what it may be; the message names it and its range."""


class NotANumberError(NumberError, TypeError):
    """A value that is not a number of the kind asked for (a TypeError too, as Python's own are)."""


def _range_text(low: float, high: float | None) -> str:
    return f"at least {low:,}" if high is None else f"from {low:,} to {high:,}"


def whole_number(value: object, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``low..high`` (no upper end when ``high`` is None), else a NumberError.

    ``True`` is not 1 here, nor is ``2.0`` 2: a flag or a float given where a count belongs is a
    mistake worth naming. numpy's integers are taken (they are integers).
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise NotANumberError(f"{name} must be a whole number {_range_text(low, high)}, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise NotANumberError(f"{name} must be a whole number {_range_text(low, high)}, got {value!r}") from None
    if number < low:
        raise NumberError(f"{name} must be at least {low:,}, got {number:,}")
    if high is not None and number > high:
        raise NumberError(f"{name} must be at most {high:,}, got {number:,}")
    return number


def real_number(value: object, name: str, low: float, high: float) -> float:
    """``value`` as a finite float in ``low..high``, else a NumberError (NaN and infinities included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NotANumberError(f"{name} must be a number {_range_text(low, high)}, got {value!r}")
    number = float(value) if abs(value) < 1e300 else math.inf
    if not math.isfinite(number) or not low <= number <= high:
        raise NumberError(f"{name} must be a number {_range_text(low, high)}, got {value!r}")
    return number


def parse_whole_number(text: str, name: str, low: int, high: int | None = None) -> int:
    """A command line's text as a whole number (ASCII digits, an optional sign), checked as ``whole_number``."""
    digits = text.strip()
    unsigned = digits[1:] if digits[:1] in "+-" and digits[:1] else digits
    if not unsigned.isascii() or not unsigned.isdigit() or len(unsigned) > 30:
        raise NotANumberError(f"{name} must be a whole number {_range_text(low, high)}, got {text!r}")
    return whole_number(int(digits), name, low, high)
