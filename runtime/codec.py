"""The one definition of how a query becomes a tensor and a tensor becomes a number.

Training, export and the runtime all import this module; nothing else in the
project knows the alphabet, the padding or the order of symbols.

A query ``"50+11"`` is parsed strictly into terms (``grammar``), then written in canonical form:
every operand zero-padded to the width of the largest operand (``"050+011"``),
right-padded to the model's input length and optionally reversed. Zero-padding
puts each digit in a fixed column, which is what lets a small LSTM learn carries.
A model with brackets reads its operands first, each in fixed columns, then the
structure: the operators and fixed columns for brackets around each operand
(``ModelConfig.bracket_slots``). ``"(12-7)+30"`` is written ``"120730 (- )+  "`` for
two to three terms (before reversal), so brackets never shift a digit and, read
reversed, the operators and brackets come before the digits they give a sign to.

Answers are written as ``value - smallest_answer``, zero-padded to the output length
and optionally reversed. The shift makes every target a non-negative number, so a
model with ``-`` learns borrows the way it learns carries, instead of a sign that
depends on comparing whole operands; for ``+`` alone the shift is zero.

Answers are numbers of ``answer_dtype``: int64 when every shifted answer fits in
INT64_DIGITS digits (every shipped model), Python ints (numpy ``object`` arrays)
beyond, so a config the validator accepts is decoded exactly whatever its width.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .config import PAD, ModelConfig
from .grammar import DIGITS, MAX_QUERY_CHARS, Expression, Grammar, QueryError, Shape, group_by_shape

INT64_DIGITS = 18  # any number of this many digits is below 2**63


class Codec:
    """Parsing, encoding and decoding for one model's config; tables are built once here."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.parse = Grammar(config).parse  # the grammar's, so both accept exactly the same queries
        self._symbol_index = np.full(256, -1, dtype=np.int64)
        for index, symbol in enumerate(config.alphabet):
            self._symbol_index[ord(symbol)] = index
        self._one_hot = np.eye(len(config.alphabet), dtype=np.float32)
        self._digit_value = np.full(len(config.alphabet), -1, dtype=np.int64)
        self._digit_value[: len(DIGITS)] = np.arange(len(DIGITS))
        self._offset = -config.smallest_answer
        self._operand_format = f"0{config.operand_width}d"
        # int64 decodes fast in numpy; wider answers would wrap silently in it.
        self.answer_dtype = np.int64 if config.output_length <= INT64_DIGITS else object
        self._powers = np.array([10**k for k in range(config.output_length - 1, -1, -1)], dtype=self.answer_dtype)
        self._operand_powers = 10 ** np.arange(config.operand_width - 1, -1, -1, dtype=np.int64)
        self._brackets = config.brackets
        self._input_length = config.input_length
        self._reverse_input = config.reverse_input
        # Per symbol byte: its encoded time step as raw bytes (for encode_one).
        per_symbol = self.to_model_input(np.arange(len(config.alphabet)))
        self._symbol_bytes = [b""] * 256
        for index, symbol in enumerate(config.alphabet):
            self._symbol_bytes[ord(symbol)] = per_symbol[index].tobytes()
        self._input_dtype = per_symbol.dtype
        self._one_shape = (1, config.input_length) + per_symbol.shape[1:]
        self._is_operator = np.zeros(256, dtype=bool)
        self._is_operator[[ord(op) for op in config.operators]] = True
        self._shape_rows: dict[Shape, tuple[np.ndarray, np.ndarray]] = {}

    def canonical_text(self, expression: Expression) -> str:
        """The exact string the model reads for an expression, one symbol per time step."""
        if self._brackets:
            text = self._bracketed_text(expression)
        else:  # the common case: plain concatenation is fastest
            terms, spec = expression.terms, self._operand_format
            text = format(terms[0], spec)
            for op, term in zip(expression.operators, terms[1:]):
                text += op + format(term, spec)
        text = text.ljust(self._input_length, PAD)
        return text[::-1] if self._reverse_input else text

    def _bracketed_text(self, expression: Expression) -> str:
        """Operands first, then the structure (operators and bracket columns) in fixed slots.

        Read reversed, the encoder meets the operators and brackets before any digit, so it
        knows each operand's sign (``a-(b-c)``: c counts positively) while the digits arrive.
        """
        config = self.config
        digits = "".join(format(term, self._operand_format) for term in expression.terms)
        structure = []
        for i, (open_slots, close_slots) in enumerate(config.bracket_slots):
            op_slot = 1 if i else 0
            if i >= len(expression.terms):
                structure.append(PAD * (op_slot + open_slots + close_slots))
                continue
            opens = sum(1 for first, _ in expression.brackets if first == i)
            closes = sum(1 for _, last in expression.brackets if last == i)
            structure.append(
                (expression.operators[i - 1] if i else "")
                + PAD * (open_slots - opens)
                + "(" * opens
                + ")" * closes
                + PAD * (close_slots - closes)
            )
        return digits.ljust(config.max_terms * config.operand_width, PAD) + "".join(structure)

    def answer_text(self, value: int) -> str:
        """The exact string the model writes for an answer."""
        text = f"{value + self._offset:0{self.config.output_length}d}"
        return text[::-1] if self.config.reverse_output else text

    def texts_to_indices(self, texts: Sequence[str], length: int) -> np.ndarray:
        """Map equal-length ASCII texts to alphabet indices, vectorised through one byte buffer."""
        if not texts:
            return np.zeros((0, length), dtype=np.int64)
        raw = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8).reshape(len(texts), length)
        indices = self._symbol_index[raw]
        if (indices < 0).any():
            raise ValueError("text contains a symbol outside the model's alphabet")
        return indices

    def to_model_input(self, indices: np.ndarray) -> np.ndarray:
        """Indices -> the tensor the model takes: one-hot float32 or int32 indices."""
        if self.config.encoding == "index":
            return indices.astype(np.int32)
        return self._one_hot[indices]

    def encode_expressions(self, expressions: Iterable[Expression]) -> np.ndarray:
        """``canonical_text`` of every expression as a tensor, built per shape.

        Expressions of one shape differ only in their zero-padded digits, which sit in
        fixed columns; each shape's row is therefore written once (``_shape_row``) and
        numpy fills in the digits of all its expressions at once.
        """
        expressions = list(expressions)
        indices = np.empty((len(expressions), self._input_length), dtype=np.int64)
        for shape, rows in group_by_shape(expressions).items():
            terms = np.array([expressions[row].terms for row in rows], dtype=np.int64)
            indices[rows] = self.shape_indices(shape, terms)
        return self.to_model_input(indices)

    def encode_shape(self, shape: Shape, terms: np.ndarray) -> np.ndarray:
        """The model input for every query of one shape, its terms given as rows of an array."""
        return self.to_model_input(self.shape_indices(shape, terms))

    def shape_indices(self, shape: Shape, terms: np.ndarray) -> np.ndarray:
        template, columns = self._shape_row(shape)
        if len(terms) and (terms.min() < 0 or terms.max() >= 10**self.config.operand_width):
            raise ValueError("a term does not fit the model's operand width")
        digits = (terms[:, :, np.newaxis] // self._operand_powers) % 10
        block = np.repeat(template[np.newaxis], len(terms), axis=0)
        block[:, columns] = self._symbol_index[ord("0") + digits.reshape(len(terms), -1)]
        return block

    def _shape_row(self, shape: Shape) -> tuple[np.ndarray, np.ndarray]:
        """A shape's encoded row with every term 0, and the column of each term's each digit.

        Found from ``canonical_text`` itself (setting one digit at a time to 1), so this
        fast path cannot drift from the one definition of the layout.
        """
        if shape not in self._shape_rows:
            n, operators, brackets = shape
            length = self._input_length

            def row(terms: tuple[int, ...]) -> np.ndarray:
                return self.texts_to_indices([self.canonical_text(Expression(terms, operators, brackets))], length)[0]

            template = row((0,) * n)
            columns = []
            for term in range(n):
                for power in self._operand_powers.tolist():
                    (changed,) = np.flatnonzero(row(tuple(power if i == term else 0 for i in range(n))) != template)
                    columns.append(int(changed))
            self._shape_rows[shape] = (template, np.array(columns))
        return self._shape_rows[shape]

    def encode_batch(self, queries: Sequence[str]) -> tuple[np.ndarray, list[QueryError | None]]:
        """Parse and encode many queries at once: (indices, errors), one row and one entry per query.

        A bad query's row is padding and its entry the QueryError; good entries are None.
        Bracket-free queries written without spaces, which is nearly every query a
        program sends, are checked and encoded by numpy over the whole batch
        (``_encode_plain``); the rest go through ``parse`` one by one, so both paths
        accept exactly the same queries.
        """
        config = self.config
        indices = np.full((len(queries), config.input_length), len(config.alphabet) - 1, dtype=np.int64)
        errors: list[QueryError | None] = [None] * len(queries)
        done = self._encode_plain(queries, indices) if not config.brackets else np.zeros(len(queries), dtype=bool)
        rest = np.flatnonzero(~done).tolist()
        texts = []
        for row in rest:
            try:
                texts.append(self.canonical_text(self.parse(queries[row])))
            except QueryError as exc:
                errors[row] = exc
                texts.append(PAD * config.input_length)
        if rest:
            indices[rest] = self.texts_to_indices(texts, config.input_length)
        return indices, errors

    def _encode_plain(self, queries: Sequence[str], out: np.ndarray) -> np.ndarray:
        """Vectorised parse of queries like ``"50+11"``: writes their rows of ``out``.

        Returns which rows it wrote. Any row it is unsure of (spaces, other symbols,
        wrong term count, an operand out of range, non-ASCII text) is left for
        ``parse``, which gives the precise error.
        """
        n, config = len(queries), self.config
        done = np.zeros(n, dtype=bool)
        if n == 0 or not all(type(q) is str for q in queries):
            return done
        lengths = np.fromiter(map(len, queries), dtype=np.int64, count=n)
        try:
            raw = np.array(queries, dtype=bytes)  # fixed width; padding is NUL
        except UnicodeEncodeError:
            return done
        width = raw.dtype.itemsize
        if width == 0 or width > MAX_QUERY_CHARS:
            return done
        chars = raw.view(np.uint8).reshape(n, width)
        is_digit = (chars >= 48) & (chars <= 57)
        is_op = self._is_operator[chars]
        column = np.arange(width)
        is_pad = column >= lengths[:, None]  # NULs that numpy added, never a NUL in the text
        # A plain query: digits, then any number of (operator, digits), then padding.
        good = (is_digit | is_op | is_pad).all(axis=1) & is_digit[:, 0]
        after = np.concatenate([is_digit[:, 1:], np.zeros((n, 1), dtype=bool)], axis=1)
        good &= ~(is_op & ~after).any(axis=1)  # every operator is followed by a digit
        term = np.cumsum(is_op, axis=1)  # which term each character belongs to
        operators = term[:, -1]
        good &= (operators >= config.min_terms - 1) & (operators <= config.max_terms - 1)
        # Digits after this one in the same term: its power of ten.
        boundary = np.where(is_op | is_pad, column, width)
        term_end = np.minimum.accumulate(boundary[:, ::-1], axis=1)[:, ::-1]
        power = term_end - 1 - column
        digit = np.where(is_digit, chars.astype(np.int64) - 48, 0)
        operand_width = config.operand_width
        good &= ~((digit > 0) & (power >= operand_width)).any(axis=1)  # too many digits for this model
        rows = np.flatnonzero(good)
        if len(rows) == 0:
            return done
        digit, power, term, is_digit, is_op = digit[rows], power[rows], term[rows], is_digit[rows], is_op[rows]
        # Right-align each operand's digits in its own slot of the canonical text.
        slot = operand_width + 1
        canonical = np.full((len(rows), config.max_terms * slot), len(config.alphabet) - 1, dtype=np.int64)
        r, c = np.nonzero(is_digit & (power < operand_width))
        canonical[r, term[r, c] * slot + operand_width - 1 - power[r, c]] = digit[r, c]
        r, c = np.nonzero(is_op)
        canonical[r, term[r, c] * slot - 1] = self._symbol_index[chars[rows][r, c]]
        # Zero-fill each present operand's unused leading columns; absent terms stay padding.
        present = np.arange(config.max_terms) < (term[:, -1] + 1)[:, None]
        blocks = canonical[:, : config.max_terms * slot].reshape(len(rows), config.max_terms, slot)
        digits_view = blocks[:, :, :operand_width]
        digits_view[present[:, :, None] & (digits_view == len(config.alphabet) - 1)] = 0
        values = (digits_view * self._operand_powers).sum(axis=2)
        in_range = ((values >= config.min_operand) & (values <= config.max_operand)) | ~present
        ok = in_range.all(axis=1)
        canonical = blocks.reshape(len(rows), -1)[:, : config.input_length]
        if config.reverse_input:
            canonical = canonical[:, ::-1]
        out[rows[ok]] = canonical[ok]
        done[rows[ok]] = True
        return done

    def encode_queries(self, queries: Iterable[str]) -> np.ndarray:
        """Parse and encode queries; the first bad one raises QueryError naming its position."""
        expressions = []
        for number, query in enumerate(queries, start=1):
            try:
                expressions.append(self.parse(query))
            except QueryError as exc:
                raise QueryError(f"query {number}: {exc}") from None
        return self.encode_expressions(expressions)

    def encode_answers(self, values: Iterable[int]) -> np.ndarray:
        """Answers -> target indices, shape (n, output_length): ``answer_text`` done by numpy."""
        if self.answer_dtype is object:
            shifted = np.array([int(value) for value in values], dtype=object) + self._offset
        else:
            shifted = np.fromiter(values, dtype=np.int64) + self._offset
        if len(shifted) and (shifted.min() < 0 or shifted.max() >= 10**self.config.output_length):
            raise ValueError("an answer does not fit the model's output length")
        digits = ((shifted[:, np.newaxis] // self._powers) % 10).astype(np.int64)
        if self.config.reverse_output:
            digits = digits[:, ::-1]
        return self._symbol_index[ord("0") + digits]

    def encode_one(self, expression: Expression) -> np.ndarray:
        """encode_expressions for a single query, without the batch path's per-call overheads.

        The tensor's bytes are joined from one precomputed row per symbol: a single numpy
        call instead of several fancy-indexing passes (measured 17 us -> a few us).
        """
        rows = self._symbol_bytes
        data = b"".join([rows[symbol] for symbol in self.canonical_text(expression).encode("ascii")])
        return np.frombuffer(data, dtype=self._input_dtype).reshape(self._one_shape)

    def decode_one(self, output: np.ndarray) -> int | None:
        """decode_answers for a single row of output, in plain Python (a few microseconds less
        per query); None where the model wrote no number. Exact at any width, as decode_answers is."""
        indices = output.argmax(axis=-1) if output.ndim == 2 else output
        digits = self._digit_value[indices].tolist()
        if self.config.reverse_output:
            digits.reverse()
        value = 0
        for digit in digits:
            if digit < 0:
                return None
            value = value * 10 + digit
        return value - self._offset

    def decode_answers(self, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model output (probabilities or indices) -> (values, valid).

        ``valid`` is False where the model wrote anything but digits; such a row has
        no answer and its value is 0. Values are of ``answer_dtype``. Vectorised: no
        Python loop over rows.
        """
        indices = output.argmax(axis=-1) if output.ndim == 3 else output
        if self.config.reverse_output:
            indices = indices[:, ::-1]
        digits = self._digit_value[indices]
        valid = (digits >= 0).all(axis=1)
        shifted = (np.maximum(digits, 0).astype(self.answer_dtype, copy=False) * self._powers).sum(axis=1)
        return np.where(valid, shifted - self._offset, 0), valid
