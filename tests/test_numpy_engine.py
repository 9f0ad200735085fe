"""The numpy engine: its ONNX reader, its refusals, how it is chosen, and its parity with onnxruntime."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adder import Adder, ModelError
from adder.grammar import shape_text, shape_values
from adder.numpy_engine import NumpySession
from adder.onnx_file import OnnxFormatError, read_model
from adder.session import MODELS_DIR, EngineError, shipped_models

SHIPPED_FILES = sorted(MODELS_DIR.glob("*.onnx"))
TEXT_MODELS = [name for name in shipped_models() if Adder(name).config.layout == "text"]  # long: below
ARITH_STRIDE = 8
BLOCK = 65_536  # rows per comparison: memory stays small, numpy's per-call costs stay negligible
NO_ONNXRUNTIME = "import sys; sys.modules['onnxruntime'] = None  # import onnxruntime now raises ImportError\n"


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ADDER_ENGINE", "ADDER_MODEL")}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=lambda p: p.name)
def test_reader_gives_what_the_onnx_package_gives(path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    proto, mine = onnx.load(path), read_model(path.read_bytes())
    assert mine.opset == next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert mine.metadata == {p.key: p.value for p in proto.metadata_props}
    assert [(n.op_type, n.inputs, n.outputs) for n in mine.nodes] == [
        (n.op_type, tuple(n.input), tuple(n.output)) for n in proto.graph.node
    ]
    for node, theirs in zip(mine.nodes, proto.graph.node):
        for attribute in theirs.attribute:
            value = helper.get_attribute_value(attribute)
            assert node.attributes[attribute.name] == (list(value) if isinstance(value, list) else value)
    assert set(mine.initializers) == {t.name for t in proto.graph.initializer}
    for tensor in proto.graph.initializer:
        expected = numpy_helper.to_array(tensor)
        assert mine.initializers[tensor.name].dtype == expected.dtype
        assert np.array_equal(mine.initializers[tensor.name], expected)
    assert [(i.name, i.shape) for i in mine.inputs] == [
        (i.name, [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim]) for i in proto.graph.input
    ]


@pytest.mark.parametrize(
    "data",
    [b"", b"not a model at all", b"\x08\x07\x3a\xff\xff\xff\xff\x0f", b"\x0a\x80"],
    ids=["empty", "text", "field past the end", "truncated varint"],
)
def test_bytes_that_are_no_model_are_a_format_error(data):
    with pytest.raises(OnnxFormatError):
        NumpySession(data)


def test_truncated_model_file_is_a_one_line_model_error(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes((MODELS_DIR / "default.onnx").read_bytes()[:20_000])
    with pytest.raises(ModelError, match="broken.onnx: not a readable ONNX model") as caught:
        Adder(broken, engine="numpy")  # refused by the file's own walk, before either engine reads it
    assert "\n" not in str(caught.value)


def test_graph_with_an_op_the_engine_lacks_is_refused_when_opened(tmp_path):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(MODELS_DIR / "default.single.onnx")
    next(n for n in proto.graph.node if n.op_type == "Softmax").op_type = "LogSoftmax"
    path = tmp_path / "odd.onnx"
    onnx.save(proto, path)
    with pytest.raises(ModelError, match="'LogSoftmax' is not supported by the numpy engine"):
        Adder(path, engine="numpy")


def test_lstm_options_the_engine_does_not_compute_are_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    proto = onnx.load(MODELS_DIR / "default.single.onnx")
    lstm = next(n for n in proto.graph.node if n.op_type == "LSTM")
    lstm.attribute.append(helper.make_attribute("clip", 3.0))
    data = proto.SerializeToString()
    with pytest.raises(OnnxFormatError, match="LSTM with clip"):
        NumpySession(data)


def test_unknown_engine_is_refused():
    with pytest.raises(EngineError, match="unknown engine 'tvm'"):
        Adder(engine="tvm")


def test_numpy_engine_is_chosen_when_onnxruntime_cannot_be_imported():
    done = run_python(
        NO_ONNXRUNTIME + "from adder import Adder\n"
        "adder = Adder('calc')\n"
        "print(adder.engine, adder('12*34'), adder.batch(['1+2', '(99*99)'] * 8), 'onnx' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["numpy", "408", "[3,", "9801,"] + ["3,", "9801,"] * 6 + ["3,", "9801]", "False"]


def test_command_answers_without_onnxruntime_and_refuses_to_be_told_to_use_it():
    answered = run_python(NO_ONNXRUNTIME + "sys.argv = ['adder', '3+10', '999+999']\nfrom adder.command import run\nrun()")
    assert (answered.returncode, answered.stdout) == (0, "13\n1998\n"), answered.stderr
    refused = run_python(
        NO_ONNXRUNTIME + "sys.argv = ['adder', '--engine', 'onnxruntime', '3+10']\nfrom adder.command import run\nrun()"
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: onnxruntime is not installed here") and refused.stderr.count("\n") == 1


def test_engine_flag_and_environment_choose_numpy(tmp_path):
    adder = shutil.which("adder") or pytest.skip("the adder command is not installed")
    flag = subprocess.run([adder, "--engine", "numpy", "--model", "wide", "9999999999+1"], capture_output=True, text=True)
    assert (flag.returncode, flag.stdout) == (0, "10000000000\n"), flag.stderr
    env = {**os.environ, "ADDER_ENGINE": "numpy"}
    piped = subprocess.run([adder, "--model", "arith", "-"], input="(12-7)+30\n99-99-99\n", capture_output=True, text=True, env=env)
    assert (piped.returncode, piped.stdout) == (0, "35\n-99\n"), piped.stderr
    bad = subprocess.run([adder, "3+10"], capture_output=True, text=True, env={**os.environ, "ADDER_ENGINE": "gpu"})
    assert bad.returncode == 2 and bad.stderr == "error: unknown engine 'gpu'; choose one of: onnxruntime, numpy\n"


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_single_queries_answer_as_onnxruntime(name):
    """Single queries run the one-query graph: a fixed sample of each domain, one call each."""
    from adder.eval.domain import sampled_blocks

    numpy_adder, ort_adder = Adder(name, engine="numpy"), Adder(name, engine="onnxruntime")
    assert numpy_adder.single_path.name.endswith(".single.onnx")
    for shape, terms in sampled_blocks(numpy_adder.config, 300, np.random.default_rng(46)):
        template = shape_text(shape)
        for row, value in zip(terms.tolist(), shape_values(shape, terms).tolist()):
            query = template.format(*row)
            assert numpy_adder(query) == ort_adder(query) == value, query


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_model_without_its_helper_graphs_answers_as_onnxruntime(name, tmp_path):
    """A model file copied alone runs its own (tf2onnx's) graph, shape bookkeeping and all."""
    from adder.eval.domain import sampled_blocks

    alone = tmp_path / f"{name}.onnx"
    shutil.copy(MODELS_DIR / f"{name}.onnx", alone)
    numpy_adder, ort_adder = Adder(alone, engine="numpy"), Adder(alone, engine="onnxruntime")
    assert numpy_adder.single_path == alone
    for shape, terms in sampled_blocks(numpy_adder.config, 2_000, np.random.default_rng(46)):
        x = numpy_adder.codec.encode_shape(shape, terms)
        assert np.array_equal(numpy_adder.predict_tensor(x).argmax(-1), ort_adder.predict_tensor(x).argmax(-1))
    numpy_adder.batch(["1+1"] * 20)
    assert numpy_adder.batch_path == alone


def assert_same_answers(name: str, blocks) -> int:
    """Every block's queries through both engines' batch graphs, as batches are answered: identical
    digits, every answer right. Returns how many queries were compared."""
    numpy_adder, ort_adder = Adder(name, engine="numpy"), Adder(name, engine="onnxruntime")
    codec, compared = numpy_adder.codec, 0
    for shape, terms in blocks:
        for start in range(0, len(terms), BLOCK):
            part = terms[start : start + BLOCK]
            indices = codec.shape_indices(shape, part)
            digits = numpy_adder.answer_symbols(indices)
            differ = np.flatnonzero((digits != ort_adder.answer_symbols(indices)).any(axis=1))
            assert not len(differ), f"{name}: the engines differ on {shape_text(shape).format(*part[differ[0]])}"
            values, valid = codec.decode_answers(digits)
            assert valid.all() and np.array_equal(values, shape_values(shape, part))
            compared += len(part)
    assert numpy_adder.batch_path.name.endswith(".batch.onnx")
    return compared


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "calc"])
def test_every_query_of_an_enumerable_domain_answers_as_onnxruntime(name):
    from adder.eval.domain import domain_blocks

    config = Adder(name).config
    assert assert_same_answers(name, domain_blocks(config, chunk=BLOCK)) == config.domain_size


@pytest.mark.slow
def test_every_eighth_arith_query_answers_as_onnxruntime():
    """arith's 24,040,000 queries take the numpy engine minutes on CI's two cores: every eighth
    query of each shape, in order, is compared (every term count, operator and bracket layout)."""
    from adder.eval.domain import domain_blocks

    config = Adder("arith").config
    blocks = ((shape, terms[::ARITH_STRIDE]) for shape, terms in domain_blocks(config, chunk=BLOCK * ARITH_STRIDE))
    assert assert_same_answers("arith", blocks) == -(-config.domain_size // ARITH_STRIDE)


@pytest.mark.slow
def test_wide_suites_and_hardest_families_answer_as_onnxruntime():
    """Every AdderBoard case, 20,000 evenly spaced cases of each other verification suite and
    2,000 of each adversarial family: ten-digit sums are 10^20 queries, so no engine walks them all."""
    from adder.eval import suites

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from adversarial_families import families

    config = Adder("wide").config
    blocks = []
    for label, (size, suite) in suites.suite_blocks(config).items():
        every = np.concatenate([terms for _shape, terms in suite])
        assert len(every) == size
        keep = every if label.startswith("AdderBoard") else every[np.linspace(0, size - 1, 20_000).astype(np.int64)]
        blocks.append((suites.SUM, keep))
    for a, b in families(config, 2_000, np.random.default_rng(46)).values():
        blocks.append((suites.SUM, np.stack([a, b], axis=1)))
    assert assert_same_answers("wide", blocks) == 10_010 + 4 * 20_000 + 2_000 * len(blocks[5:])


def test_long_answers_as_onnxruntime_and_exactly_at_every_length():
    """The pairs model's one graph, a free step dimension and all: single queries and batches
    of operands from 1 to 1,000 digits, in both engines, against Python's own sums."""
    rng = np.random.default_rng(49)

    def operand(digits: int) -> int:
        return int("".join(map(str, rng.integers(0, 10, digits))))

    pairs = [(operand(d), operand(e)) for d, e in [(1, 1), (10, 3), (100, 100), (999, 1000), (1000, 1000)] * 4]
    pairs += [(10**1000 - 1, 1), (10**500 - 1, 10**500 - 1)]
    queries, want = [f"{a}+{b}" for a, b in pairs], [a + b for a, b in pairs]
    numpy_adder, ort_adder = Adder("long", engine="numpy"), Adder("long", engine="onnxruntime")
    assert numpy_adder.batch(queries) == ort_adder.batch(queries) == want
    assert [numpy_adder(q) for q in queries[:6]] == [ort_adder(q) for q in queries[:6]] == want[:6]
