"""The aligned-pairs layout and the `long` model it serves: config, codec, answers at every
length, the query limit that follows the model, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from adder import Adder, QueryError
from adder.config import ConfigError, ModelConfig
from adder.layout import PairsCodec

LONG_DIGITS = 1000
PAIRS = {"layout": "pairs", "max_operand": 10**LONG_DIGITS - 1}


@pytest.fixture(scope="module")
def long() -> Adder:
    return Adder("long")


def test_a_pairs_config_reads_one_step_per_column_and_one_more_for_the_carry():
    config = ModelConfig(**PAIRS)
    assert (config.input_length, config.output_length, config.input_features) == (1001, 1001, 20)
    assert config.max_query_chars == 2 * LONG_DIGITS + 1 + 64
    assert config.describe() == "2 terms of up to 1,000 digits, operators +"
    assert ModelConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "change",
    [{"operators": "+-"}, {"max_terms": 3}, {"brackets": True}, {"encoding": "index"}, {"min_operand": 1},
     {"reverse_input": False}, {"max_operand": 10**20}, {"max_operand": 10**4001 - 1}],
)  # fmt: skip
def test_a_pairs_config_outside_what_the_layout_reads_is_refused(change):
    with pytest.raises(ConfigError, match="max_operand|layout 'pairs'"):
        ModelConfig(**{**PAIRS, **change})


def test_text_models_keep_their_config_json_byte_for_byte():
    config = ModelConfig(max_operand=9999999999)
    assert "layout" not in config.to_dict()
    assert config.max_query_chars == 256
    shipped = json.loads(Adder("wide").config.to_json())
    assert "layout" not in shipped


def test_the_codec_writes_aligned_pairs_lowest_first_and_pads_the_shorter_operand():
    codec = PairsCodec(ModelConfig(layout="pairs", max_operand=999))
    assert codec.plain_text("123+45") == "35241000"  # (3,5) (2,4) (1,0) (0,0)
    assert codec.canonical_text(codec.parse(" 123 + 45 ")) == "35241000"
    digits, errors = codec.encode_batch(["123+45", "1+2+3"])
    assert errors[0] is None and isinstance(errors[1], QueryError)
    x = codec.to_model_input(digits)
    assert x.shape == (2, 4, 20)
    assert x[0, 0].nonzero()[0].tolist() == [3, 10 + 5]


def test_a_batch_runs_for_as_many_steps_as_its_longest_query_needs():
    codec = PairsCodec(ModelConfig(**PAIRS))
    digits, _ = codec.encode_batch(["12+3", "999+1"])
    assert codec.to_model_input(digits).shape == (2, 4, 20)  # three columns and the carry


def test_long_adds_two_hundred_digit_numbers(long):
    rng = np.random.default_rng(5)
    a, b = (int("".join(map(str, rng.integers(0, 10, 100))).lstrip("0") or "0") for _ in range(2))
    assert long(f"{a}+{b}") == a + b
    assert long("9" * 100 + "+1") == 10**100


def random_operand(rng, digits: int) -> int:
    return int(str(rng.integers(1, 10)) + "".join(map(str, rng.integers(0, 10, digits - 1))))


def adversarial_pairs(rng, digits: int) -> list[tuple[int, int]]:
    """Carry chains the whole way, sums of all nines, zeros, and one operand far shorter."""
    nines = 10**digits - 1
    a = random_operand(rng, digits)
    return [(nines, 1), (nines, nines), (nines, 0), (a, nines - a), (a, nines - a + 1), (10 ** (digits - 1), 0), (a, 7)]


@pytest.mark.parametrize("digits", [1, 2, 10, 20, 99, 100, 101, 500, 999, 1000])
def test_long_answers_random_and_adversarial_pairs_exactly_at_every_length(long, digits):
    rng = np.random.default_rng(digits)
    pairs = [(random_operand(rng, digits), random_operand(rng, digits)) for _ in range(20)]
    pairs += adversarial_pairs(rng, digits)
    queries = [f"{a}+{b}" for a, b in pairs]
    assert long.batch(queries) == [a + b for a, b in pairs]
    assert [long(q) for q in queries[-7:]] == [a + b for a, b in pairs[-7:]]


def test_long_refuses_an_operand_beyond_its_digits_by_its_digit_count(long):
    with pytest.raises(QueryError, match="operand of 1,001 digits is outside this model's range of up to 1,000 digits"):
        long("1" + "0" * 1000 + "+1")


def test_the_query_length_limit_follows_the_model(long):
    spaced = "1" + " " * 2000 + "+1"
    assert long(spaced) == 2
    with pytest.raises(QueryError, match="at most 2,065|at most 2065"):
        long("1" + " " * 2100 + "+1")
    with pytest.raises(QueryError, match="at most 256"):
        Adder("default")("1" + " " * 300 + "+1")


def adder_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adder", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_adder_answers_thousand_digit_lines_from_stdin_exactly():
    rng = np.random.default_rng(11)
    pairs = [(random_operand(rng, d), random_operand(rng, d)) for d in (1000, 999, 500, 3)]
    pairs += adversarial_pairs(rng, 1000)
    run = adder_cli("--model", "long", "-", stdin="".join(f"{a}+{b}\n" for a, b in pairs))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(a + b) for a, b in pairs]


def test_adder_answers_a_long_query_given_as_an_argument():
    a, b = 10**150 - 1, 12345678901234567890
    run = adder_cli("--model", "long", f"{a}+{b}")
    assert (run.returncode, run.stdout.strip()) == (0, str(a + b))


def test_list_models_says_proven_exactly_where_the_models_record_holds_a_proof_that_passed():
    run = adder_cli("--list-models")
    lines = {line.split(":")[0]: line for line in run.stdout.splitlines()}
    for name, line in lines.items():
        proof = Adder(name).config.training.get("proof")
        passed = isinstance(proof, dict) and proof.get("passed") is True
        assert ("proven for every length up to" in line) == passed, line
        assert ("not proven" in line) == (isinstance(proof, dict) and not passed), line
    assert lines["long"].startswith("long: 2 terms of up to 1,000 digits, operators +; LSTM 8, 1,036 parameters; ")
