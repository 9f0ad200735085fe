import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adder.codec import Codec
from adder.config import ModelConfig
from adder.grammar import MAX_QUERY_CHARS, Expression, QueryError

CONFIG = ModelConfig()
CODEC = Codec(CONFIG)


def test_query_is_zero_padded_and_reversed_for_the_encoder():
    assert CODEC.canonical_text(CODEC.parse("50+11")) == "110+050"
    assert Codec(ModelConfig(reverse_input=False)).canonical_text(CODEC.parse("50+11")) == "050+011"


def test_answer_is_zero_padded_and_optionally_last_digit_first():
    assert Codec(ModelConfig(reverse_output=False)).answer_text(61) == "0061"
    assert Codec(ModelConfig(reverse_output=True)).answer_text(61) == "1600"


def test_one_hot_encoding_has_one_symbol_per_step():
    x = CODEC.encode_queries(["3+10", "999+999"])
    assert x.shape == (2, 7, 12) and x.dtype == np.float32
    assert (x.sum(axis=-1) == 1).all()
    assert "".join(CONFIG.alphabet[i] for i in x[0].argmax(-1)) == "010+300"


def test_index_encoding_gives_int32_symbol_indices():
    config = ModelConfig(encoding="index")
    x = Codec(config).encode_queries(["3+10"])
    assert x.dtype == np.int32 and x.shape == (1, 7)


@pytest.mark.parametrize("reverse_output", [False, True])
def test_answers_round_trip_through_target_encoding(reverse_output):
    config = ModelConfig(reverse_output=reverse_output)
    values = np.array([0, 7, 61, 999, 1998])
    codec = Codec(config)
    decoded, valid = codec.decode_answers(codec.encode_answers(values))
    assert valid.all() and (decoded == values).all()


def test_probabilities_decode_by_argmax():
    targets = CODEC.encode_answers([1234])
    probs = np.eye(len(CONFIG.alphabet))[targets] * 0.9 + 0.01
    decoded, valid = CODEC.decode_answers(probs)
    assert decoded.tolist() == [1234] and valid.tolist() == [True]


def test_a_non_digit_in_the_models_output_is_marked_invalid_not_misread():
    plus, pad = CONFIG.alphabet.index("+"), CONFIG.alphabet.index(" ")
    codec = Codec(ModelConfig(reverse_output=False))
    decoded, valid = codec.decode_answers(np.array([[0, 0, 6, 1], [0, plus, 6, 1], [pad, 0, 0, 1]]))
    assert valid.tolist() == [True, False, False]
    assert decoded[0] == 61


def test_symbols_outside_the_alphabet_are_refused_by_the_table():
    with pytest.raises(ValueError):
        CODEC.texts_to_indices(["12-4"], 4)


@pytest.mark.parametrize(
    "query, terms",
    [("3+10", (3, 10)), (" 3 + 10 ", (3, 10)), ("\t999+0\t", (999, 0)), ("007+3", (7, 3)), ("0+0", (0, 0))],
)
def test_accepted_queries(query, terms):
    assert CODEC.parse(query) == Expression(terms, ("+",))


@pytest.mark.parametrize(
    "query, message",
    [
        ("", "empty query"),
        ("   ", "empty query"),
        ("3", "adds 2 terms; got 1"),
        ("1+2+3", "adds 2 terms; got 3"),
        ("3+", "ends with an operator"),
        ("+3+4", "a sign is not accepted"),
        ("-3+4", "got '-' at position 1"),
        ("3++4", "repeated operator"),
        ("3 4+1", "missing operator before '4' at position 3"),
        ("1000+1", "outside this model's range 0..999"),
        ("1+1000", "outside this model's range 0..999"),
        ("3.5+1", "unexpected '.' at position 2"),
        ("1e3+1", "unexpected 'e' at position 2"),
        ("1_000+1", "unexpected '_' at position 2"),
        ("0x1+2", "unexpected character 'x' at position 2"),
        ("3-4", "supports only +; got '-'"),
        ("3*4", "supports only +; got '*'"),
        ("\u0663+4", "unsupported digit"),  # Arabic-Indic three: int() would accept it
        ("\uff13+4", "unsupported digit"),  # full-width three
        ("3+4\udcff", "invalid UTF-8 byte at position 4"),
        ("1" * (MAX_QUERY_CHARS + 1), "characters long"),
        ("3+4\n5", "unexpected character '\\n'"),
    ],
)
def test_refused_queries_say_what_is_wrong(query, message):
    with pytest.raises(QueryError, match=re.escape(message)):
        CODEC.parse(query)


def test_non_text_is_refused():
    with pytest.raises(QueryError, match="must be text"):
        CODEC.parse(12)  # type: ignore[arg-type]


def test_encode_queries_names_the_first_bad_query():
    with pytest.raises(QueryError, match="query 2: "):
        CODEC.encode_queries(["1+1", "1+"])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 999), st.integers(0, 999), st.sampled_from(["", " ", "  ", "\t"]), st.integers(0, 2))
def test_every_spelling_of_an_in_domain_query_parses_to_its_terms(a, b, space, zeros):
    query = f"{space}{'0' * zeros}{a}{space}+{space}{b}{space}"
    parsed = CODEC.parse(query)
    assert parsed.terms == (a, b) and parsed.value == a + b
    x = CODEC.encode_queries([query])
    text = "".join(CONFIG.alphabet[i] for i in x[0].argmax(-1))
    assert text[::-1] == f"{a:03d}+{b:03d}"


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_is_answered_or_refused_with_query_error_only(text):
    try:
        parsed = CODEC.parse(text)
    except QueryError:
        return
    assert len(parsed.terms) == 2 and all(0 <= t <= 999 for t in parsed.terms)
    assert text.strip(" \t").replace(" ", "").replace("\t", "").count("+") == 1


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 999), st.integers(0, 999), st.integers(0, 6), st.characters(codec="utf-8"))
def test_a_mutated_query_is_refused_or_still_means_what_it_says(a, b, position, char):
    query = f"{a}+{b}"
    mutated = query[:position] + char + query[position:]
    try:
        parsed = CODEC.parse(mutated)
    except QueryError:
        return
    digits = mutated.replace(" ", "").replace("\t", "").split("+")
    assert parsed.terms == tuple(int(d) for d in digits)


@pytest.mark.parametrize("reverse_output", [False, True])
def test_single_query_paths_match_the_batch_paths(reverse_output):
    codec = Codec(ModelConfig(reverse_output=reverse_output))
    expressions = [codec.parse(q) for q in ("0+0", "3+10", "999+999", "500+77")]
    batch = codec.encode_expressions(expressions)
    for row, expression in zip(batch, expressions):
        assert (codec.encode_one(expression)[0] == row).all()
    outputs = np.concatenate([codec.encode_answers([0, 13, 1998, 577]), [[10, 0, 0, 1]]])
    values, valid = codec.decode_answers(outputs)
    assert [codec.decode_one(row) for row in outputs] == [v if ok else None for v, ok in zip(values, valid)]


VECTOR_CONFIGS = [
    ModelConfig(),
    ModelConfig(min_terms=2, max_terms=4, operators="+-*", max_operand=99),
    ModelConfig(min_operand=1, max_operand=10, reverse_input=False),
]
query_like = st.lists(
    st.one_of(st.text("0123456789+-*", max_size=12), st.text("0123456789+-* \t\x00(é", max_size=8)), max_size=30
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VECTOR_CONFIGS), query_like)
def test_batch_encoding_accepts_and_encodes_exactly_what_parse_does(config, queries):
    """The numpy path for plain queries is an optimisation: never a second grammar."""
    codec = Codec(config)
    indices, errors = codec.encode_batch(queries)
    for query, row, error in zip(queries, indices, errors):
        try:
            expected = codec.texts_to_indices([codec.canonical_text(codec.parse(query))], config.input_length)[0]
        except QueryError as exc:
            assert error is not None and str(error) == str(exc)
            continue
        assert error is None and (row == expected).all(), query


def test_plain_queries_take_the_vectorised_path():
    queries = ["3+10", "999+999", "0007+5", "0+0"]
    out = np.zeros((len(queries), CONFIG.input_length), dtype=np.int64)
    assert CODEC._encode_plain(queries, out).all()
    refused = ["3 + 10", "1000+1", "3+", "+3", "3++4", "3+4\x00", "", "3+4+5"]
    out = np.zeros((len(refused), CONFIG.input_length), dtype=np.int64)
    assert not CODEC._encode_plain(refused, out).any()


# Text a hostile caller might send: every symbol of the grammars, the space and tab the parser
# skips, newlines (the batch path joins queries with them), NUL, non-ASCII digits, lone surrogates.
HOSTILE_SYMBOLS = "0123456789+-*() \t\n\r\x00é٣\udc80"
PLAIN_CONFIGS = [
    *VECTOR_CONFIGS,
    ModelConfig(min_terms=2, max_terms=3, operators="-", min_operand=3, max_operand=5),
    ModelConfig(max_terms=3, operators="+-", max_operand=99, brackets=True),
    ModelConfig(max_terms=4, operators="+-*", max_operand=9, brackets=True, reverse_input=False),
]


def hostile_queries() -> st.SearchStrategy[str]:
    valid = st.lists(st.integers(0, 1200), min_size=1, max_size=4).flatmap(
        lambda terms: st.lists(st.sampled_from("+-*"), min_size=len(terms) - 1, max_size=len(terms) - 1).map(
            lambda ops: str(terms[0]) + "".join(op + str(term) for op, term in zip(ops, terms[1:]))
        )
    )
    mutated = st.builds(lambda q, i, c: q[:i] + c + q[i:], valid, st.integers(0, 12), st.sampled_from(HOSTILE_SYMBOLS))
    zeros = st.builds(lambda q, k: "0" * k + q, valid, st.sampled_from([1, 2, 5, MAX_QUERY_CHARS]))
    return st.one_of(valid, mutated, zeros, st.text(HOSTILE_SYMBOLS, max_size=12), st.text(max_size=10))


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(PLAIN_CONFIGS), hostile_queries())
def test_the_single_query_fast_path_accepts_only_what_parse_accepts_and_writes_the_same_text(config, query):
    """plain_text is an optimisation of canonical_text(parse(query)): never a second grammar."""
    codec = Codec(config)
    fast = codec.plain_text(query)
    try:
        strict = codec.canonical_text(codec.parse(query))
    except QueryError:
        assert fast is None, query
        return
    assert fast is None or fast == strict, query


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PLAIN_CONFIGS), st.lists(hostile_queries(), max_size=40))
def test_batch_encoding_of_hostile_text_matches_parse_row_by_row(config, queries):
    codec = Codec(config)
    indices, errors = codec.encode_batch(queries)
    for query, row, error in zip(queries, indices, errors):
        try:
            expected = codec.texts_to_indices([codec.canonical_text(codec.parse(query))], config.input_length)[0]
        except QueryError as exc:
            assert error is not None and str(error) == str(exc), query
            continue
        assert error is None and (row == expected).all(), query


def test_plain_queries_of_every_term_count_are_encoded_by_numpy_in_one_batch():
    config = ModelConfig(min_terms=2, max_terms=4, operators="+-", max_operand=99)
    codec = Codec(config)
    queries = ["7+1", "12-3", "99+0-45", "5+5+6-1", "0099-1"]
    out = np.zeros((len(queries), config.input_length), dtype=np.int64)
    assert codec._encode_plain(queries, out).all()
    expected = codec.texts_to_indices([codec.canonical_text(codec.parse(q)) for q in queries], config.input_length)
    assert (out == expected).all()


def test_a_query_holding_a_newline_leaves_the_whole_batch_to_parse():
    out = np.zeros((3, CONFIG.input_length), dtype=np.int64)
    assert not CODEC._encode_plain(["1+2", "3+4\n5+6", "7+8"], out).any()
    indices, errors = CODEC.encode_batch(["1+2", "3+4\n5+6", "7+8"])
    assert errors[0] is None and errors[2] is None and "position 4" in str(errors[1])


def test_the_single_query_fast_path_takes_plain_queries_and_leaves_the_rest():
    assert CODEC.plain_text("50+11") == CODEC.canonical_text(CODEC.parse("50+11"))
    for query in ["50 + 11", "0050+11", "1000+1", "3+", "+3", "3", "3+4+5", "٣+4", b"3+4", "3+4\n"]:
        assert CODEC.plain_text(query) is None, query
    bracketed = Codec(ModelConfig(brackets=True, operators="+-", max_operand=99, max_terms=3))
    for query in ["1+2", "12-3+99", "0+0-0"]:
        assert bracketed.plain_text(query) == bracketed.canonical_text(bracketed.parse(query)), query
    assert bracketed.plain_text("(1+2)-3") is None


@pytest.mark.parametrize("reverse_input", [True, False])
def test_bracket_free_queries_to_a_bracket_model_are_encoded_by_numpy_too(reverse_input):
    config = ModelConfig(max_terms=3, operators="+-", max_operand=99, brackets=True, reverse_input=reverse_input)
    codec = Codec(config)
    queries = ["7+1", "12-3", "99+0-45", "5-5+6", "0099-1"]
    out = np.zeros((len(queries), config.input_length), dtype=np.int64)
    assert codec._encode_plain(queries, out).all()
    expected = codec.texts_to_indices([codec.canonical_text(codec.parse(q)) for q in queries], config.input_length)
    assert (out == expected).all()
    assert not codec._encode_plain(["(1+2)-3"], out[:1]).any()
