"""Every kind of grammar adder-train accepts trains, exports and answers (tiny models, seconds each)."""

import pytest
from typer.testing import CliRunner

from adder import Adder, QueryError
from tests.conftest import needs_training

pytestmark = [needs_training, pytest.mark.slow]


@pytest.mark.parametrize(
    "terms, ops, brackets, query, value, refused, extra",
    [
        ("2-3", "+-", True, "(5-3)+1", 3, "2*3", []),
        ("2", "*", False, "4*5", 20, "(4*5)", []),
        ("3", "-*", True, "5-(2*3)", -1, "5-2", []),
        ("2-4", "+-*", True, "((1+2)*3)-4", 5, "1+2+3+4+5", ["--curriculum", "1", "--epochs", "3"]),
    ],
)
def test_option_combination_trains_exports_and_answers(tmp_path, terms, ops, brackets, query, value, refused, extra):
    from adder.commands.export import app as export_app
    from adder.commands.train import train_app

    keras_path, onnx_path = tmp_path / "m.keras", tmp_path / "m.onnx"
    args = [
        "--terms",
        terms,
        "--ops",
        ops,
        "--largest",
        "5",
        "--epochs",
        "1",
        "--samples",
        "64",
    ]
    args += ["--brackets" if brackets else "--no-brackets", "--out", str(keras_path), *extra]
    runner = CliRunner()
    trained = runner.invoke(train_app, args)
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(export_app, [str(keras_path), "-o", str(onnx_path), "--queries", "200", "--randoms", "50"])
    assert exported.exit_code == 0, exported.output
    adder = Adder(onnx_path)
    assert adder.config.operators == ops and adder.config.brackets == brackets
    assert adder.parse(query).value == value
    (answer,) = adder.results([query])  # an untrained model: any number, or a clear refusal to guess
    assert isinstance(answer, int) or "wrote no valid number" in str(answer)
    with pytest.raises(QueryError):
        adder(refused)


def test_curriculum_adds_one_term_count_every_n_epochs():
    from adder.config import ModelConfig
    from adder.train.recipe import Recipe

    config = ModelConfig(min_terms=2, max_terms=4, max_operand=9)
    assert [Recipe(curriculum=3).terms_at(config, e) for e in range(10)] == [2, 2, 2, 3, 3, 3, 4, 4, 4, 4]
    assert Recipe().terms_at(config, 0) == 4
