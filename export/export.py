"""``export_model()``: a trained .keras model to ONNX files the runtime loads, each validated
against Keras before it is written (as optimum's exporter does), atomically.

It writes MODEL.onnx (fused LSTMs, the runtime's general graph), MODEL.batch.onnx (the
whole model written out from symbols to symbols, export/written.py: the fastest on
batches) and MODEL.single.onnx (rebuilt for exactly one query), or with
``quantize="int8"`` one int8 file judged over the domain.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from adder.export.validate import ATOL, ATOL_RANDOM, ValidationError


class ExportError(ValueError):
    """A model that was not exported; the message names the file and says why, in one line."""


def export_model(
    model: Path,
    output: Path,
    *,
    atol: float = ATOL,
    atol_random: float = ATOL_RANDOM,
    queries: int = 4000,
    randoms: int = 1000,
    quantize: str = "none",
    log=print,
) -> None:
    """Convert ``model`` and write ``output`` (and its batch and single graphs) once each matches Keras."""
    from adder import Adder, ModelError
    from adder.config import ConfigError
    from adder.eval.files import WriteError, atomic_path, temp_prefix
    from adder.export.convert import fused_lstm_count, keras_to_onnx, quantize_int8
    from adder.export.validate import validate_export
    from adder.train.archive import ArchiveError, load_keras

    try:
        keras_model, config = load_keras(model)
    except (ArchiveError, ConfigError) as exc:
        raise ExportError(str(exc)) from None
    if config.layout == "pairs":  # one graph, proven rather than sampled (export/pairs.py)
        from adder.export.pairs import GraphError, export_pairs

        try:
            export_pairs(keras_model, config, output, log)
        except (GraphError, WriteError) as exc:
            raise ExportError(f"{output} not written: {exc}") from None
        return
    proto = keras_to_onnx(keras_model, config)

    def write_validated(path: Path, graph=proto, label: str = "float32 export", target: Path = output) -> None:
        path.write_bytes(graph.SerializeToString())
        try:
            report = validate_export(keras_model, Adder(path), config, queries, randoms, atol, atol_random)
        except (ValidationError, ModelError) as exc:
            raise ExportError(f"{target} not written: {exc}") from None
        log(
            f"{label}: {path.stat().st_size:,} bytes, {fused_lstm_count(graph)} fused LSTM ops; "
            f"matches Keras: max probability difference {report.domain_max_diff:.2g} on {report.domain_queries:,} "
            f"domain queries (tolerance {atol:g}), {report.random_max_diff:.2g} on {report.random_inputs:,} "
            f"random inputs (tolerance {atol_random:g}); all decoded answers identical"
        )

    try:
        with atomic_path(output) as tmp:
            if quantize == "int8":
                # Named like atomic_path's temp files, so a killed run's folder is cleaned up by the next.
                with tempfile.TemporaryDirectory(
                    prefix=temp_prefix(output), suffix=".tmp", dir=output.parent
                ) as folder:
                    float32 = Path(folder) / "float32.onnx"
                    write_validated(float32)
                    quantize_int8(float32, tmp)
                stamp_int8(tmp, config, describe_int8(tmp, config, log))
            else:
                write_validated(tmp)
        log(f"wrote {output} ({output.stat().st_size:,} bytes)")
        if quantize == "none":
            # The runtime answers batches with this graph and single queries with the fused one.
            write_batch_graph(proto, keras_model, config, output, queries, randoms, atol_random, log, write_validated)
            write_single_graph(proto, keras_model, config, output, queries, randoms, atol, atol_random, log)
    except WriteError as exc:
        raise ExportError(str(exc)) from None


def write_batch_graph(proto, keras_model, config, output: Path, queries, randoms, atol_random, log, write_validated):
    """OUTPUT.batch.onnx: written out from symbols to symbols (export/written.py), compared with
    Keras on every query of the domain where it can be enumerated; a model of another shape
    gets tf2onnx's graph with its decoder written out (export/unroll.py), validated like the model."""
    import numpy as np
    import onnxruntime as ort

    from adder.eval.files import atomic_path
    from adder.export.simplify import SimplifyError, model_weights
    from adder.export.unroll import unroll_decoder
    from adder.export.validate import ValidationError, validate_symbols
    from adder.export.written import SYMBOLS_IN, written_graph
    from adder.session import batch_graph_path

    target = batch_graph_path(output)
    try:
        graph = written_graph(model_weights(proto, config), config, proto)
    except SimplifyError as exc:
        log(f"batch graph from tf2onnx's, its decoder written out ({exc})")
        with atomic_path(target) as tmp:
            write_validated(tmp, unroll_decoder(proto, config.output_length), "batch graph", target)
        log(f"wrote {target} ({target.stat().st_size:,} bytes)")
        return
    with atomic_path(target) as tmp:
        tmp.write_bytes(graph.SerializeToString())
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])

        def answer_symbols(indices):
            rows = [indices[start : start + 65536] for start in range(0, len(indices), 65536)]
            return np.concatenate([session.run(None, {SYMBOLS_IN: r.astype(np.int64)})[0] for r in rows])

        try:
            report = validate_symbols(keras_model, answer_symbols, config, queries, randoms, atol_random)
        except ValidationError as exc:
            raise ExportError(f"{target} not written: {exc}") from None
    where = (
        f" and on every one of its {config.domain_size:,} domain queries"
        if report.whole_domain
        else f" (its {config.domain_size:,} domain queries are too many to enumerate here: adder-eval judges them)"
    )
    log(
        f"wrote {target} ({target.stat().st_size:,} bytes, {len(graph.graph.node)} nodes, symbols in and out): "
        f"the same answers as Keras on {report.domain_queries:,} validation queries{where}; and on "
        f"{report.random_compared:,} of {report.random_inputs:,} random inputs with a clear best symbol"
    )


def write_single_graph(proto, keras_model, config, output: Path, queries, randoms, atol, atol_random, log) -> None:
    """OUTPUT.single.onnx: the same weights rebuilt for exactly one query (export/simplify.py),
    validated against Keras query by query; Adder answers single queries with it."""
    import onnxruntime as ort

    from adder.codec import Codec
    from adder.eval.files import atomic_path
    from adder.export.simplify import SimplifyError, simplify
    from adder.export.validate import validate_export
    from adder.session import single_graph_path

    try:
        graph = simplify(proto, config, single=True)
    except SimplifyError as exc:
        log(f"no single-query graph: {exc}")
        return
    target = single_graph_path(output)

    class OneByOne:  # the single graph takes one query per call
        codec = Codec(config)

        def __init__(self, path: Path) -> None:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def predict_tensor(self, x):
            import numpy as np

            return np.concatenate([self.session.run(None, {"query": row[None]})[0] for row in x])

    with atomic_path(target) as tmp:
        tmp.write_bytes(graph.SerializeToString())
        try:
            report = validate_export(keras_model, OneByOne(tmp), config, queries, randoms, atol, atol_random)
        except ValidationError as exc:
            raise ExportError(f"{target} not written: {exc}") from None
    log(
        f"wrote {target} ({target.stat().st_size:,} bytes, {len(graph.graph.node)} nodes, batch fixed at 1): "
        f"max probability difference {report.domain_max_diff:.2g} on {report.domain_queries:,} domain queries, "
        f"{report.random_max_diff:.2g} on {report.random_inputs:,} random inputs; all decoded answers identical"
    )


def stamp_int8(path: Path, config, result) -> None:
    """The int8 file's own record: its evaluation, not the float32 model's it was made from."""
    import dataclasses

    import onnx

    from adder.config import METADATA_KEY

    training = {
        **config.training,
        "evaluation": result.to_dict(),
        "quantization": "int8 weights, per channel; activations quantized at run time (adder-export --quantize int8)",
    }
    proto = onnx.load(path)
    onnx.helper.set_model_props(proto, {METADATA_KEY: dataclasses.replace(config, training=training).to_json()})
    onnx.save(proto, path)


def describe_int8(path: Path, config, log):
    """An int8 model cannot match float32 probabilities to 1e-5; report what it gets right instead."""
    from adder import Adder
    from adder.eval.evaluate import evaluate
    from adder.eval.predictors import onnx_predictor

    result = evaluate(onnx_predictor(Adder(path)), config)
    log(f"int8 export: {path.stat().st_size:,} bytes; {result.summary()}")
    for example in result.first_wrong[:5]:
        log(f"  {example['query']} = {example['expected']}, int8 model says {example['got']}")
    return result
