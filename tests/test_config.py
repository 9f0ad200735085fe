import json

import pytest

from adder.config import ConfigError, ModelConfig


def test_default_config_describes_two_terms_up_to_999():
    config = ModelConfig()
    assert (config.input_length, config.output_length) == (7, 4)  # "999+999" and "1998"
    assert config.domain_size == 1_000_000


def test_json_round_trip_keeps_every_field_and_the_training_record():
    config = ModelConfig(max_operand=50, reverse_output=True, training={"seed": 7})
    again = ModelConfig.from_json(config.to_json())
    assert again == config
    assert again.training == {"seed": 7}


def test_derived_lengths_are_written_for_readers_without_our_code():
    data = json.loads(ModelConfig(max_operand=99).to_json())
    assert data["input_length"] == 5 and data["output_length"] == 3 and data["alphabet"] == "0123456789+ "


def test_stored_shape_that_disagrees_with_the_grammar_is_refused():
    data = ModelConfig().to_dict() | {"input_length": 9}
    with pytest.raises(ConfigError, match="inconsistent"):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"min_terms": 1}, "terms"),
        ({"max_operand": 0}, "operands"),
        ({"operators": "/"}, "operators"),
        ({"encoding": "bits"}, "encoding"),
        ({"format_version": 99}, "format_version"),
    ],
)
def test_invalid_configs_are_refused_with_the_field_named(fields, problem):
    with pytest.raises(ConfigError, match=problem):
        ModelConfig(**fields)


def test_unparseable_json_is_a_config_error():
    with pytest.raises(ConfigError):
        ModelConfig.from_json("{not json")
    with pytest.raises(ConfigError):
        ModelConfig.from_json("[1, 2]")
