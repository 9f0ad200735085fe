"""The grammar of the seed's extensions: more terms, - and *, brackets."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adder.codec import Codec
from adder.config import ConfigError, ModelConfig
from adder.eval.domain import all_expressions
from adder.eval.draws import sample_expressions
from adder.grammar import Expression, QueryError, bracket_layouts
from adder.train.data import epoch_data

ARITH = ModelConfig(min_terms=2, max_terms=3, operators="+-", brackets=True, max_operand=99)


def test_bracket_layouts_are_nested_or_disjoint_pairs_around_operations():
    assert bracket_layouts(2) == ((), ((0, 1),))
    assert len(bracket_layouts(3)) == 6  # none, (ab)c, a(bc), (abc), ((ab)c), (a(bc))
    assert all(len(layout) <= n - 1 for n in (2, 3, 4) for layout in bracket_layouts(n))


def test_lengths_come_from_the_grammar():
    assert ARITH.alphabet == "0123456789+-() "
    assert ARITH.input_length == len("((99- 99)-99))")  # bracket columns: 2+1 before, 1+2 after the operands
    assert (ARITH.largest_answer, ARITH.smallest_answer, ARITH.output_length) == (297, -198, 3)  # 297 - -198 = 495
    assert ModelConfig(operators="+*", max_operand=9, max_terms=3).output_length == len(str(9**3))


def test_domain_size_counts_every_expression():
    small = ModelConfig(min_terms=2, max_terms=3, operators="-*", brackets=True, max_operand=2)
    assert sum(len(chunk) for chunk in all_expressions(small)) == small.domain_size == 9 * 2 * 2 + 27 * 4 * 6


@pytest.mark.parametrize(
    "query, value",
    [("(12-7)+30", 35), ("99-99-99", -99), ("12-(7+30)", -25), ("((1+2)+3)", 6), ("(1+2)", 3), (" ( 5 - 9 ) ", -4)],
)
def test_expressions_are_evaluated_with_brackets(query, value):
    assert Codec(ARITH).parse(query).value == value


def test_multiplication_binds_tighter_than_addition():
    codec = Codec(ModelConfig(max_terms=3, operators="+-*", brackets=True, max_operand=9))
    assert codec.parse("2+3*4").value == 14
    assert codec.parse("(2+3)*4").value == 20
    assert codec.parse("9-2*3").value == 3


@pytest.mark.parametrize(
    "query, message",
    [
        ("1+2+3+4", "adds 2 to 3 terms; got 4"),
        ("2*3", "supports only + -; got '*'"),
        ("(5)+1", "enclose a single number"),
        ("((1+2))", "redundant brackets"),
        ("(1+2", "never closed"),
        ("1+2)", "unmatched ')' at position 4"),
        ("()", "expected a number at position 2"),
        ("(1+2)(3+4)", "missing operator before '('"),
        ("-3+4", "a sign is not accepted"),
        ("100-1", "outside this model's range 0..99"),
    ],
)
def test_refusals_name_what_this_model_supports(query, message):
    with pytest.raises(QueryError, match=re.escape(message)):
        Codec(ARITH).parse(query)


def test_a_model_without_brackets_says_so():
    with pytest.raises(QueryError, match="not trained on brackets"):
        Codec(ModelConfig()).parse("(1+2)")


@pytest.mark.parametrize("value", [-198, -5, 0, 7, 297])
def test_negative_answers_round_trip_shifted_by_the_smallest_answer(value):
    codec = Codec(ARITH)
    assert codec.answer_text(value)[::-1] == f"{value + 198:03d}"  # written last digit first
    target = codec.encode_answers([value])
    assert codec.decode_one(target[0]) == value
    assert codec.decode_answers(target)[0].tolist() == [value]


def test_any_symbol_but_a_digit_in_an_answer_is_no_number():
    codec = Codec(ModelConfig(operators="+-", reverse_output=False, max_operand=99))
    minus = codec.config.alphabet.index("-")
    assert codec.decode_one(np.array([1, minus, 2])) is None
    assert codec.decode_answers(np.array([[1, minus, 2]]))[1].tolist() == [False]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_brackets_never_move_a_digit(seed):
    """Each operand's digits sit in the same columns whatever the brackets and term count."""
    config = ModelConfig(min_terms=2, max_terms=4, operators="+-*", brackets=True, max_operand=99, reverse_input=False)
    codec = Codec(config)
    digit_columns = None
    for expression in sample_expressions(config, 30, np.random.default_rng(seed)):
        text = codec.canonical_text(expression)
        assert len(text) == config.input_length
        columns = [m.start() for m in re.finditer(r"[0-9]{2}", text)]
        digit_columns = digit_columns or {}
        for i, column in enumerate(columns):
            assert digit_columns.setdefault(i, column) == column


def test_version_1_models_are_read_only_where_version_2_encodes_the_same():
    assert ModelConfig(format_version=1).input_length == 7
    with pytest.raises(ConfigError, match="retrain"):
        ModelConfig(format_version=1, operators="+-")
    with pytest.raises(ConfigError, match="retrain"):
        ModelConfig(format_version=1, brackets=True)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_every_generated_expression_parses_back_and_has_its_python_value(seed):
    config = ModelConfig(min_terms=2, max_terms=4, operators="+-*", brackets=True, max_operand=99)
    codec = Codec(config)
    for expression in sample_expressions(config, 20, np.random.default_rng(seed)):
        text = expression.text()
        assert codec.parse(text) == expression
        assert expression.value == eval(text)  # the grammar is a subset of Python's integer arithmetic


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 20), st.sampled_from(list("()+-*0 x")), st.booleans())
def test_a_mutated_expression_is_refused_or_parses_to_what_it_says(seed, position, char, replace):
    codec = Codec(ARITH)
    (expression,) = sample_expressions(ARITH, 1, np.random.default_rng(seed))
    text = expression.text()
    mutated = text[:position] + char + text[position + replace :]
    try:
        parsed = codec.parse(mutated)
    except QueryError:
        return
    without_leading_zeros = re.sub(r"[0-9]+", lambda m: str(int(m.group())), mutated)
    assert isinstance(parsed, Expression) and parsed.value == eval(without_leading_zeros)


def test_a_curriculum_epoch_draws_fewer_terms_in_the_full_encoding():
    x, y = epoch_data(ARITH, 300, seed=0, epoch=0, max_terms=2)
    assert x.shape == (300, ARITH.input_length, len(ARITH.alphabet)) and y.shape == (300, ARITH.output_length)
    texts = ["".join(ARITH.alphabet[i] for i in row) for row in x.argmax(-1)]
    assert all(sum(ch.isdigit() for ch in text) == 4 for text in texts)  # two operands of two digits
    full, _ = epoch_data(ARITH, 300, seed=0, epoch=0)
    assert {sum(ARITH.alphabet[i].isdigit() for i in row) for row in full.argmax(-1)} == {4, 6}


FAST_PATH_CONFIGS = [
    ModelConfig(),
    ModelConfig(reverse_input=False, reverse_output=False, max_operand=10, min_operand=1),
    ARITH,
    ModelConfig(min_terms=2, max_terms=4, operators="+-*", brackets=True, max_operand=9),
    ModelConfig(operators="-", max_operand=99, encoding="index"),
]


@pytest.mark.parametrize("config", FAST_PATH_CONFIGS, ids=lambda c: f"{c.max_terms}{c.operators}{c.brackets}")
def test_batch_encoding_and_values_match_the_one_at_a_time_definitions(config):
    """encode_expressions, values_of and encode_answers work per shape with numpy; they must
    give exactly what canonical_text, Expression.value and answer_text give one by one."""
    from adder.grammar import values_of

    codec = Codec(config)
    expressions = sample_expressions(config, 3000, np.random.default_rng(11))
    texts = [codec.canonical_text(e) for e in expressions]
    one_by_one = codec.to_model_input(codec.texts_to_indices(texts, config.input_length))
    assert np.array_equal(codec.encode_expressions(expressions), one_by_one)
    values = [e.value for e in expressions]
    assert values_of(expressions).tolist() == values
    answers = codec.texts_to_indices([codec.answer_text(v) for v in values], config.output_length)
    assert np.array_equal(codec.encode_answers(values), answers)


def test_encoding_refuses_what_does_not_fit_instead_of_writing_it_wrong():
    codec = Codec(ARITH)
    with pytest.raises(ValueError, match="operand width"):
        codec.encode_expressions([Expression((100, 1), ("+",))])
    with pytest.raises(ValueError, match="output length"):
        codec.encode_answers([ARITH.smallest_answer - 1])
