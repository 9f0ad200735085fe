"""Reading a setting's value from text, TOML or JSON, and writing it back: the one way a
number or a yes/no is read for a recipe (adder.train.recipe)."""

from __future__ import annotations

import math
import re


def parse_number(text: str, kind: type, what: str) -> int | float:
    """The one way a number is read from text: ASCII digits only (``int`` takes other scripts'
    digits and ``str.isdigit`` superscripts, which ``int`` then refuses), finite for floats."""
    text = text.strip().replace("_", "")
    if kind is int:
        if not re.fullmatch(r"[+-]?[0-9]{1,30}", text):
            raise ValueError(f"{what} takes a whole number, got {text!r}")
        return int(text)
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?", text):
        raise ValueError(f"{what} takes a number, got {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{what} takes a finite number, got {text!r}")
    return value


BOOLEAN_WORDS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def typed(f, value, source: str):
    """``value`` (text from the command line, or a TOML/JSON value) as field ``f``'s type."""
    kind = type(f.default)
    what = f"{source}: {f.name}"
    if isinstance(value, str) and kind is not str:
        if kind is bool:
            if value.strip().lower() not in BOOLEAN_WORDS:
                raise ValueError(f"{what} takes true or false, got {value!r}")
            return BOOLEAN_WORDS[value.strip().lower()]
        return parse_number(value, kind, what)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{what} takes a finite number, got {value}")
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise ValueError(f"{what} takes a {kind.__name__}, got {value!r}")


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
