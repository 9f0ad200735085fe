"""ModelConfig: everything needed to turn a query into a tensor and back.

A config travels inside every model file (ONNX ``metadata_props`` and the
``.keras`` archive), so a model can never be separated from the description of
its inputs. Lengths and the alphabet are derived here, in one place, from the
grammar the model was trained on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .grammar import DIGITS, MAX_QUERY_CHARS, bracket_layouts

# Version 2 (2026-11-24): brackets sit in fixed columns around each operand and answers
# are stored shifted by the smallest answer (see adder.codec). Version 1 encoded both
# differently, so it is still read only where neither applies (no '-', no brackets):
# there the two versions write identical tensors, which keeps early two-term models valid.
FORMAT_VERSION = 2
METADATA_KEY = "adder.config"
BATCH_DIM = "batch"  # name of every model's first (batch) dimension; the runtime pins it to 1 for single queries
PAD = " "
SUPPORTED_OPERATORS = "+-*"
ENCODINGS = ("onehot", "index", "ordinal")
# "text": the query's symbols one per step (adder.codec); "pairs": two operands' aligned digit
# pairs one per step, lowest first, and one answer digit per step (adder.layout).
LAYOUTS = ("text", "pairs")
MAX_PAIR_DIGITS = 4000  # below Python's 4,300-digit limit on converting an int to text
QUERY_SLACK = 64  # characters beyond a model's longest bare query: spaces, leading zeros


# Far beyond any model one could train here, and small enough that every derived size
# (bracket layouts, input and output lengths) stays cheap to compute for a crafted file.
MAX_TERMS = 8
MAX_OPERAND = 10**10 - 1  # ten digits: the field's benchmark for tiny adders (AdderBoard)
MAX_CONFIG_CHARS = 4_000_000  # the metadata string; a long training record is ~100 kB
INT64_DIGITS = 18  # any number of this many digits is below 2**63


class ConfigError(ValueError):
    """A model configuration that is missing, malformed or inconsistent."""


def _shorten(value: Any) -> str:
    text = (
        repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"<a {len(str(abs(value)))}-digit number>"
    )
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class ModelConfig:
    """The domain a model was trained on and how its queries are encoded."""

    min_terms: int = 2
    max_terms: int = 2
    min_operand: int = 0
    max_operand: int = 999
    operators: str = "+"
    brackets: bool = False
    reverse_input: bool = True
    reverse_output: bool = True
    encoding: str = "onehot"
    format_version: int = FORMAT_VERSION
    layout: str = "text"
    # Free-form record of how the model was made; never affects encoding.
    training: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        problems = self._type_problems()  # first: range checks on a wrong type would raise anything
        if not problems:
            problems = self._problems()
        if problems:
            raise ConfigError("invalid model config: " + "; ".join(problems))

    def _type_problems(self) -> list[str]:
        """Every field of the right JSON type: a crafted model file must not reach arithmetic on a
        string, nor read "false" as true."""
        found = []
        for f in fields(self):
            value, want = getattr(self, f.name), _FIELD_TYPES[f.name]
            if isinstance(value, bool) and want is not bool or not isinstance(value, want):
                found.append(f"{f.name} must be {_TYPE_WORDS[want]}, got {type(value).__name__} {_shorten(value)}")
        return found

    def _problems(self) -> list[str]:
        found = []
        if self.layout not in LAYOUTS:
            found.append(f"layout must be one of {LAYOUTS}, got {_shorten(self.layout)}")
        if self.max_terms > MAX_TERMS:
            found.append(f"max_terms must be at most {MAX_TERMS}, got {_shorten(self.max_terms)}")
        widest = 10**MAX_PAIR_DIGITS - 1 if self.layout == "pairs" else MAX_OPERAND
        if self.max_operand > widest:
            most = f"{MAX_PAIR_DIGITS:,} digits" if self.layout == "pairs" else f"{MAX_OPERAND:,}"
            found.append(f"max_operand must be at most {most}, got {_shorten(self.max_operand)}")
        if found:  # derived sizes below would be astronomical
            return found
        if self.format_version == 1 and ("-" in self.operators or self.brackets):
            found.append(
                "format_version 1 models with '-' or brackets encode answers and brackets differently; "
                "retrain with this version of adder-train"
            )
        elif self.format_version not in (1, FORMAT_VERSION):
            found.append(
                f"format_version {self.format_version} is not supported (this runtime reads version {FORMAT_VERSION})"
            )
        if not 2 <= self.min_terms <= self.max_terms:
            found.append(f"terms must satisfy 2 <= min_terms <= max_terms, got {self.min_terms}..{self.max_terms}")
        if not 0 <= self.min_operand < self.max_operand:
            found.append(
                f"operands must satisfy 0 <= min_operand < max_operand, got {self.min_operand}..{self.max_operand}"
            )
        if (
            not self.operators
            or any(op not in SUPPORTED_OPERATORS for op in self.operators)
            or len(set(self.operators)) != len(self.operators)
        ):
            found.append(f"operators must be drawn from {SUPPORTED_OPERATORS!r}, got {_shorten(self.operators)}")
        if self.encoding not in ENCODINGS:
            found.append(f"encoding must be one of {ENCODINGS}, got {_shorten(self.encoding)}")
        if self.layout == "pairs" and not found:
            found += self._pairs_problems()
        return found

    def _pairs_problems(self) -> list[str]:
        """The pairs layout reads two operands' digits side by side, lowest first, whole columns."""
        wanted = {
            "min_terms": 2, "max_terms": 2, "operators": "+", "brackets": False, "min_operand": 0,
            "reverse_input": True, "reverse_output": True, "encoding": "onehot",
        }  # fmt: skip
        wrong = [(k, v) for k, v in wanted.items() if getattr(self, k) != v]
        found = [f"layout 'pairs' needs {k} {v!r}, got {getattr(self, k)!r}" for k, v in wrong]
        if self.max_operand != 10**self.operand_width - 1:
            found.append(f"layout 'pairs' needs max_operand of all nines (10**N - 1), got {_shorten(self.max_operand)}")
        return found

    @property
    def alphabet(self) -> str:
        """Symbols the model reads and writes; a symbol's index is its one-hot position."""
        return DIGITS + self.operators + ("()" if self.brackets else "") + PAD

    @property
    def input_features(self) -> int:
        """Numbers per input time step: a one-hot vector, one ordinal number, or (index) none
        (a single int32 per step, not a feature axis)."""
        if self.layout == "pairs":
            return 2 * len(DIGITS)  # a's digit one-hot, then b's
        return {"onehot": len(self.alphabet), "ordinal": 1}.get(self.encoding, 0)

    @property
    def operand_width(self) -> int:
        return len(str(self.max_operand))

    @property
    def bracket_slots(self) -> tuple[tuple[int, int], ...]:
        """Columns for '(' before and ')' after each operand.

        A pair encloses two or more terms, so at most ``max_terms - 1 - i`` pairs open
        before term i and at most ``i`` close after it. Giving every operand that many
        columns, padded when unused, keeps each digit in the same column whatever the
        brackets: the alignment that zero-padding gives bracket-free queries.
        """
        if not self.brackets:
            return ((0, 0),) * self.max_terms
        return tuple((self.max_terms - 1 - i, i) for i in range(self.max_terms))

    @property
    def input_length(self) -> int:
        """Time steps of the input; for the pairs layout the most (a model reads any number up to it)."""
        if self.layout == "pairs":
            return self.operand_width + 1  # the last step reads (0, 0) and writes the final carry
        slots = sum(opens + closes for opens, closes in self.bracket_slots)
        return self.max_terms * self.operand_width + (self.max_terms - 1) + slots

    @property
    def largest_answer(self) -> int:
        """An upper bound on any answer in the domain."""
        n, m = self.max_terms, self.max_operand
        return max(m**n, n * m) if "*" in self.operators else n * m

    @property
    def smallest_answer(self) -> int:
        """A lower bound on any answer in the domain (negative only when '-' is allowed)."""
        if "-" not in self.operators:
            return 0
        n, m = self.max_terms, self.max_operand
        return -(max(m ** (n - 1), m) if "*" in self.operators else (n - 1) * m)

    @property
    def output_length(self) -> int:
        """Digits of the widest answer as the model writes it: shifted to start at zero."""
        return len(str(self.largest_answer - self.smallest_answer))

    @property
    def max_query_chars(self) -> int:
        """Longest query text accepted: 256 characters, or the longest bare query and room for spaces."""
        longest = self.max_terms * (self.operand_width + 1) - 1
        return max(MAX_QUERY_CHARS, longest + QUERY_SLACK)

    @property
    def domain_size(self) -> int:
        """Number of distinct queries: term counts x operands x operators x bracket layouts."""
        values = self.max_operand - self.min_operand + 1
        ops = len(self.operators)
        return sum(
            values**n * ops ** (n - 1) * (len(bracket_layouts(n)) if self.brackets else 1)
            for n in range(self.min_terms, self.max_terms + 1)
        )

    def describe(self) -> str:
        terms = str(self.min_terms) if self.min_terms == self.max_terms else f"{self.min_terms}-{self.max_terms}"
        brackets = ", brackets" if self.brackets else ""
        if self.operand_width > INT64_DIGITS:  # a 1,000-digit bound says less than its digit count
            return f"{terms} terms of up to {self.operand_width:,} digits, operators {self.operators}{brackets}"
        return f"{terms} terms in {self.min_operand}..{self.max_operand}, operators {self.operators}{brackets}"

    def to_dict(self) -> dict[str, Any]:
        """All fields plus the derived shape, so a reader needs no code of ours."""
        data = asdict(self)
        if self.layout == "text":  # the layout every model had before pairs: their files stay as they were
            del data["layout"]
        data["alphabet"] = self.alphabet
        data["input_length"] = self.input_length
        data["output_length"] = self.output_length
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config and check that any derived values stored with it still hold."""
        if not isinstance(data, dict):
            raise ConfigError("model config must be a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            config = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ConfigError(f"invalid model config: {exc}") from None
        for derived in ("alphabet", "input_length", "output_length"):
            if derived in data and data[derived] != getattr(config, derived):
                raise ConfigError(
                    f"model config is inconsistent: stored {derived} {_shorten(data[derived])} "
                    f"but the grammar gives {getattr(config, derived)!r}"
                )
        return config

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        if not isinstance(text, str):
            raise ConfigError("model config must be JSON text")
        if len(text) > MAX_CONFIG_CHARS:
            raise ConfigError(f"model config is {len(text):,} characters long; at most {MAX_CONFIG_CHARS:,} are read")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model config is not valid JSON: {exc}") from None
        except RecursionError:
            raise ConfigError("model config is not valid JSON: nested too deeply") from None
        except ValueError as exc:  # e.g. an integer longer than Python converts
            raise ConfigError(f"model config is not valid JSON: {str(exc)[:120]}") from None
        return cls.from_dict(data)


_FIELD_TYPES = {
    "min_terms": int,
    "max_terms": int,
    "min_operand": int,
    "max_operand": int,
    "operators": str,
    "brackets": bool,
    "reverse_input": bool,
    "reverse_output": bool,
    "encoding": str,
    "format_version": int,
    "layout": str,
    "training": dict,
}
_TYPE_WORDS = {int: "a whole number", str: "text", bool: "true or false", dict: "a JSON object"}
