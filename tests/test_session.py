"""The Python API (adder.Adder) on the shipped default model, and refusal of unusable model files."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adder import Adder, ModelError, QueryError
from adder.config import METADATA_KEY, ModelConfig
from adder.session import MODELS_DIR, shipped_models
from tests.test_codec import hostile_queries

DEFAULT = MODELS_DIR / "default.onnx"


@pytest.fixture(scope="module")
def adder() -> Adder:
    return Adder()


def test_default_model_is_shipped_and_describes_its_domain(adder):
    assert "default" in shipped_models()
    assert adder.config.max_operand == 999 and adder.config.min_terms == adder.config.max_terms == 2
    assert adder.config.training["command"].startswith("adder-train")


def test_single_query_returns_an_int(adder):
    answer = adder("3+10")
    assert isinstance(answer, int) and answer == 13


def test_batch_matches_single_calls_in_order(adder):
    rng = np.random.default_rng(0)
    queries = [f"{a}+{b}" for a, b in rng.integers(0, 1000, size=(300, 2))]
    assert adder.batch(queries, chunk_size=64) == [adder(q) for q in queries]


def test_batch_of_nothing_is_empty(adder):
    assert adder.batch([]) == []


def test_bad_query_raises_query_error_which_is_a_value_error(adder):
    with pytest.raises(ValueError, match="outside this model's range"):
        adder("1000+1")
    with pytest.raises(QueryError, match="query 2: "):
        adder.batch(["1+1", "x"])


def test_results_yield_errors_in_place_and_keep_going(adder):
    results = list(adder.results(["1+1", "", "2+2"]))
    assert results[0] == adder("1+1") and results[2] == adder("2+2")
    assert isinstance(results[1], QueryError)


def test_one_adder_answers_many_threads_at_once(adder):
    queries = [f"{a}+{b}" for a in range(0, 1000, 7) for b in range(0, 1000, 97)]
    expected = adder.batch(queries)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(adder, queries))
    assert answers == expected


def test_shipped_model_can_be_named(adder):
    assert Adder("default").config == adder.config


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.onnx", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "random.onnx", np.random.default_rng(0).bytes(4096)), "not a readable ONNX model"),
        (lambda d: _write(d / "cut.onnx", DEFAULT.read_bytes()[:5000]), "not a readable ONNX model"),
        (lambda d: _write(d / "empty.onnx", b""), "not a readable ONNX model"),
    ],
)
def test_unusable_model_files_are_refused_with_the_file_named(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ModelError, match=message) as info:
        Adder(path)
    assert str(path) in str(info.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _rewrite_metadata(tmp_path: Path, value: str | None) -> Path:
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(DEFAULT)
    del proto.metadata_props[:]
    if value is not None:
        onnx.helper.set_model_props(proto, {METADATA_KEY: value})
    path = tmp_path / "edited.onnx"
    onnx.save(proto, path)
    return path


def test_onnx_without_adder_metadata_is_not_an_adder_model(tmp_path):
    with pytest.raises(ModelError, match="not an adder model"):
        Adder(_rewrite_metadata(tmp_path, None))


def test_metadata_that_disagrees_with_the_input_shape_is_refused(tmp_path):
    with pytest.raises(ModelError, match="metadata implies"):
        Adder(_rewrite_metadata(tmp_path, ModelConfig(max_operand=99).to_json()))


def test_malformed_metadata_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not valid JSON"):
        Adder(_rewrite_metadata(tmp_path, "{oops"))


def test_runtime_never_imports_the_training_stack():
    import subprocess
    import sys

    code = (
        "import sys, adder, adder.cli; from adder import Adder; Adder()('3+10');"
        "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_multi_threaded_batches_give_the_same_answers_as_one_thread():
    queries = [f"{a}+{b}" for a in range(0, 1000, 31) for b in range(0, 1000, 53)]
    assert Adder(threads=2).batch(queries) == Adder(threads=1).batch(queries)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_chunks_answered_in_parallel_come_back_in_order(threads):
    """Many small chunks over a worker pool: every result in its query's place, errors included."""
    rng = np.random.default_rng(threads)
    terms = rng.integers(0, 1000, size=(2000, 2)).tolist()
    queries = [f"{a}+{b}" if i % 97 else f"{a}+{b}+1" for i, (a, b) in enumerate(terms)]
    results = list(Adder(threads=threads).results(queries, chunk_size=37))
    for i, ((a, b), result) in enumerate(zip(terms, results)):
        if i % 97:
            assert result == a + b
        else:
            assert isinstance(result, QueryError) and "got 3" in str(result)
    assert len(results) == len(queries)
    x = Adder().codec.encode_queries([q for i, q in enumerate(queries) if i % 97])
    np.testing.assert_allclose(Adder(threads=threads).predict_tensor(x), Adder(threads=1).predict_tensor(x), atol=1e-6)


_SHARED = Adder()


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 999), st.integers(0, 999), st.sampled_from(["", " ", "\t", "  "]), st.integers(0, 2))
def test_every_accepted_spelling_is_answered_with_the_true_sum(a, b, space, zeros):
    assert _SHARED(f"{space}{'0' * zeros}{a}{space}+{space}{b}{space}") == a + b


def test_the_shipped_arith_model_records_its_whole_domain_accuracy():
    """The record carries an exhaustive count over all 24,040,000 queries, made through
    onnxruntime when training stopped, and that count is 0."""
    record = Adder("arith").config.training
    evaluation = record["evaluation"]
    assert evaluation["method"] == "exhaustive" and evaluation["total"] == 24_040_000
    assert evaluation["wrong"] == 0 and evaluation["first_wrong"] == []
    assert evaluation["groups"]["3 terms"] == {"total": 24_000_000, "wrong": 0}
    assert "init" not in record and record["command"] == "adder-train --recipe arith --out arith.keras"
    assert record["settings"]["term_weights"] == [1.0, 9.0] and record["parameters"] <= 30_000


def test_the_first_queries_a_person_types_are_right_on_arith():
    """A near-exact arith model (25,501 wrong of 24,040,000) answers the first three -79, 61 and -88."""
    arith = Adder("arith")
    queries = ["0+0+0", "10+20+30", "0+0+1", "70+90+71", "0+0+2", "(0+0)+0", "0-(0-0)", "99-99-99", "(99+99)+99"]
    assert [arith(q) for q in queries] == [eval(q) for q in queries]
    assert arith.batch(queries) == [eval(q) for q in queries]


def test_the_arith_model_is_exact_on_two_term_queries():
    """Measured exhaustively when it was trained (all 40,000); here a seeded sample, brackets included."""
    from adder.eval.draws import sample_expressions

    arith = Adder("arith")
    two_terms = ModelConfig(min_terms=2, max_terms=2, operators="+-", brackets=True, max_operand=99)
    expressions = sample_expressions(two_terms, 2000, np.random.default_rng(3))
    assert arith.batch([e.text() for e in expressions]) == [e.value for e in expressions]


def test_single_queries_run_on_the_one_query_graph_and_agree_with_the_model_graph(tmp_path):
    import shutil

    import numpy as np

    adder = Adder()
    assert adder.single_path.name == "default.single.onnx"
    rng = np.random.default_rng(1)
    queries = [f"{a}+{b}" for a, b in rng.integers(0, 1000, size=(3000, 2)).tolist()]
    assert [adder(q) for q in queries] == [a + b for a, b in (map(int, q.split("+")) for q in queries)]
    # Without the file beside it (or with another model's), the model's own graph answers.
    alone = tmp_path / "default.onnx"
    shutil.copy(adder.path, alone)
    assert Adder(alone).single_path == alone and Adder(alone)("50+11") == 61
    shutil.copy(adder.path.with_name("arith.single.onnx"), tmp_path / "default.single.onnx")
    assert Adder(alone).single_path == alone and Adder(alone)("50+11") == 61


def strict_answer(adder: Adder, query: str) -> int | str:
    """What adder(query) must give, by the one strict parser and a plain session.run: the answer,
    or the QueryError's message."""
    codec = adder.codec
    try:
        x = codec.encode_one(codec.parse(query))
    except QueryError as exc:
        return str(exc)
    answer = codec.decode_one(adder._session.run(None, {adder._input_name: x})[0][0])
    return f"the model wrote no valid number for {query!r}" if answer is None else answer


@pytest.fixture(scope="module", params=shipped_models())
def every_model(request) -> Adder:
    return Adder(request.param)


@settings(max_examples=300, deadline=None)
@given(query=hostile_queries())
def test_a_single_query_gets_the_strict_parsers_answer_or_error_word_for_word(every_model, query):
    try:
        got: int | str = every_model(query)
    except QueryError as exc:
        got = str(exc)
    assert got == strict_answer(every_model, query)


def test_single_queries_from_many_threads_each_use_their_own_buffers(adder):
    queries = [f"{a}+{b}" for a in range(0, 1000, 13) for b in range(0, 1000, 131)]
    expected = [strict_answer(adder, q) for q in queries]
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(3):
            assert list(pool.map(adder, queries)) == expected


def index_model(path: Path) -> tuple[Path, ModelConfig]:
    """A hand-made model taking int32 indices (encoding 'index') that writes 0042 for any query:
    its one-query buffers are int32, not one-hot floats."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from adder.config import BATCH_DIM

    config = ModelConfig(encoding="index", reverse_output=False)
    steps, vocab = config.output_length, len(config.alphabet)
    answer = np.zeros((1, steps, vocab), np.float32)
    answer[0, np.arange(steps), [0, 0, 4, 2]] = 1
    nodes = [
        helper.make_node("Cast", ["query"], ["floats"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["floats", "axes"], ["total"], keepdims=1),  # [N, 1]
        helper.make_node("Unsqueeze", ["total", "axes"], ["column"]),  # [N, 1, 1]
        helper.make_node("Mul", ["column", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "answer"], ["probs"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        numpy_helper.from_array(answer, "answer"),
    ]
    graph = helper.make_graph(
        nodes,
        "index",
        [helper.make_tensor_value_info("query", TensorProto.INT32, [BATCH_DIM, config.input_length])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [BATCH_DIM, steps, vocab])],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    helper.set_model_props(proto, {METADATA_KEY: config.to_json()})
    onnx.save(proto, path)
    return path, config


def test_a_model_reading_indices_answers_single_queries_through_its_int32_buffers(tmp_path):
    path, _config = index_model(tmp_path / "index.onnx")
    adder = Adder(path)
    assert adder("3+10") == 42 and adder("999+999") == 42
    assert adder._local.buffers.input.dtype == np.int32
    assert adder.batch(["1+1"] * 20) == [42] * 20
    with pytest.raises(QueryError, match="outside this model's range"):
        adder("1000+1")
