"""Adder: load a self-describing ONNX model once, answer queries through one session."""

from __future__ import annotations

import math
import os
import stat
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

try:
    import onnxruntime as ort
except ImportError:  # no wheel for this platform (32-bit ARM, say): the numpy engine answers
    ort = None

from .bounds import whole_number
from .config import BATCH_DIM, METADATA_KEY, ConfigError, ModelConfig
from .grammar import Expression, QueryError
from .layout import codec_for, signature

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "default"
CHUNK_SIZE = 1024  # rows per onnxruntime call: measured faster and ~3x leaner in memory than 8192
# Fewer rows than this run one by one through the single-query session; more go to the
# multi-threaded batch session, which costs a few milliseconds to open on first use.
BATCH_ROWS = 8
SPLIT_ROWS = 256  # smallest chunk a known-length batch is split into, to use every core
MAX_THREADS = 1024  # worker threads an Adder may be asked for; each is a real thread
MAX_CHUNK_SIZE = 1_000_000  # rows in one onnxruntime call: a few hundred MB of tensors for the widest model
ENGINES = ("onnxruntime", "numpy")  # what runs the graphs: see adder.numpy_engine for the second


if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor


_LIVE: weakref.WeakSet[Adder] = weakref.WeakSet()


def _rebuild_after_fork() -> None:
    for adder in list(_LIVE):
        adder._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rebuild_after_fork)


def _check_batch_arguments(queries, chunk_size) -> None:
    """Mistakes that would otherwise drop queries or fail far from their cause."""
    if isinstance(queries, (str, bytes)):
        raise TypeError(
            f"batch and results take an iterable of queries, not one {type(queries).__name__} "
            "(it would be read character by character); use adder(query) for a single query, or wrap it in a list"
        )
    if not hasattr(queries, "__iter__"):
        raise TypeError(f"batch and results take an iterable of queries, got {type(queries).__name__}")
    whole_number(chunk_size, "chunk_size", 1, MAX_CHUNK_SIZE)


def _never() -> bool:
    return False


class ModelError(ValueError):
    """A model file that cannot be used: missing, unreadable, or not an adder model."""


class EngineError(ValueError):
    """An engine that is not one of ENGINES, or onnxruntime asked for where it is not installed."""


def default_engine() -> str:
    """onnxruntime where it can be imported; else the numpy engine, which needs nothing more."""
    return "onnxruntime" if ort is not None else "numpy"


def check_engine(engine: str | None) -> str:
    """``engine`` if it can run here (None: ``default_engine()``); else EngineError saying why."""
    if engine is None:
        return default_engine()
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if engine == "onnxruntime" and ort is None:
        raise EngineError("onnxruntime is not installed here (it has no wheel for this platform); use the numpy engine")
    return engine


BATCH_SUFFIX = ".batch.onnx"
SINGLE_SUFFIX = ".single.onnx"


def shipped_models() -> list[str]:
    """Names of the models packaged with the runtime (usable as ``Adder(name)``)."""
    helpers = (BATCH_SUFFIX, SINGLE_SUFFIX)
    return sorted(p.stem for p in MODELS_DIR.glob("*.onnx") if not p.name.endswith(helpers))


def single_graph_path(path: Path) -> Path:
    """Where adder-export saves a model's one-query graph (export/simplify.py): beside it."""
    return path.with_name(path.name.removesuffix(".onnx") + SINGLE_SUFFIX)


def batch_graph_path(path: Path) -> Path:
    """Where adder-export saves a model's batch graph (export/unroll.py): beside it."""
    return path.with_name(path.name.removesuffix(".onnx") + BATCH_SUFFIX)


def resolve_model(model: str | Path | None) -> Path:
    """A shipped model's name, or a path to an ``.onnx`` file."""
    if model is None:
        model = DEFAULT_MODEL
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a shipped model's name or a path to an .onnx file, got {model!r}")
    if isinstance(model, str) and model in shipped_models():
        return MODELS_DIR / f"{model}.onnx"
    return Path(model)


MAX_MODEL_BYTES = 2**31 - 1  # protobuf refuses a message over 2 GiB, so onnxruntime cannot open a larger file
# A one-query or batch graph beside a model holds the same weights in another graph: a few times
# the model's size at most (the shipped ones are within 6% of it).
HELPER_SIZE_FACTOR = 4
HELPER_SLACK_BYTES = 16 * 2**20


def _read_bounded(path: Path, limit: int, what: str = "an ONNX model file") -> bytes:
    """A regular file's bytes, refused with a ModelError naming it when it is not one, or is over
    ``limit`` bytes, before anything is read. Opened without blocking, so a FIFO cannot hang us."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        names = ", ".join(shipped_models())
        raise ModelError(f"{path}: no such file (shipped models: {names})") from None
    except ValueError as exc:  # an embedded NUL byte
        raise ModelError(f"{path!r}: not a usable file name ({exc})") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot be opened ({exc.strerror or type(exc).__name__})") from None
    try:
        mode = os.fstat(descriptor)
        if stat.S_ISDIR(mode.st_mode):
            raise ModelError(f"{path}: is a directory, not {what}")
        if not stat.S_ISREG(mode.st_mode):
            raise ModelError(f"{path}: is not a regular file (a pipe or device?); give {what}")
        if mode.st_size > limit:
            raise ModelError(f"{path}: is {mode.st_size:,} bytes, over the {limit:,} bytes {what} may be")
        problem = _model_structure_problem(descriptor, mode.st_size)
        if problem is not None:
            raise ModelError(f"{path}: {problem}")
        with os.fdopen(descriptor, "rb", buffering=0, closefd=False) as file:
            data = file.read(limit + 1)  # a file growing while read is refused as one too large
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise ModelError(f"{path}: is over the {limit:,} bytes {what} may be")
    return data


MODEL_METADATA_FIELD = 14  # ModelProto.metadata_props in onnx.proto; its entries: 1 key, 2 value


def _model_structure_problem(descriptor: int, size: int) -> str | None:
    """What makes these bytes no adder model, found by walking the ModelProto's top-level fields
    over a read-only map of the file (adder.onnx_file's reader; the graph is skipped, never read),
    or None. A file of any size that is not protobuf, or holds no adder config, is refused in
    microseconds instead of after reading it whole."""
    import mmap

    from .onnx_file import OnnxFormatError, message_fields

    if size == 0:
        return "not a readable ONNX model (the file is empty)"
    key = METADATA_KEY.encode()
    with mmap.mmap(descriptor, size, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            found_config = False
            for number, wire, value in message_fields(view):
                if number == 0:
                    return "not a readable ONNX model (no protobuf field where one should start)"
                if wire == 2 and number == MODEL_METADATA_FIELD:  # an entry's key comes first
                    found_config |= key in bytes(value[: len(key) + 8])
                del value
        except OnnxFormatError as exc:
            return f"not a readable ONNX model ({exc})"
        finally:
            view.release()
    if not found_config:
        return f"not an adder model (no '{METADATA_KEY}' in its metadata)"
    return None


def _read_model(path: Path) -> bytes:
    """A model file's bytes. An Adder opens every session from bytes read when it was made, so
    files replaced or removed under a running Adder change nothing it answers."""
    return _read_bounded(path, MAX_MODEL_BYTES)


def _read_helper(path: Path, model: Path, model_size: int) -> bytes | None:
    """A graph adder-export saved beside ``model``, or None when there is none it would be sane to read."""
    if path == model:
        return None
    limit = min(MAX_MODEL_BYTES, HELPER_SIZE_FACTOR * model_size + HELPER_SLACK_BYTES)
    try:
        return _read_bounded(path, limit, "a graph beside a model")
    except ModelError:  # absent, a folder, a FIFO, too large: the model's own graph answers the same
        return None


def _open_session(
    data: bytes, path: Path, threads: int, single: bool = False, optimize: bool = True, engine: str = "onnxruntime"
) -> ort.InferenceSession:
    """A session on a model's bytes (``path`` names it in errors)."""
    if engine == "numpy":
        return _open_numpy_session(data, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning threads burn the cores between calls; measured no faster here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    if not optimize:  # opened only to read its metadata and signature: half the opening time
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if single:
        # A fixed batch of 1 lets onnxruntime fold the graph's shape arithmetic away; its few
        # small buffers come faster from malloc than from the arena (16.7 -> 15.6 us a run on the
        # 16/16 default's one-query graph, 5 interleaved rounds).
        options.add_free_dimension_override_by_name(BATCH_DIM, 1)
        options.enable_cpu_mem_arena = False
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for unreadable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a readable ONNX model ({reason[:200]})") from None


def _run_failed(path: Path, exc: Exception) -> ModelError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelError(f"{path}: the model failed to run ({reason[:200]})")


def _open_numpy_session(data: bytes, path: Path):
    """The numpy engine's session: the same interface as onnxruntime's, the same graph."""
    from .numpy_engine import NumpySession
    from .onnx_file import OnnxFormatError

    try:
        return NumpySession(data)
    except OnnxFormatError as exc:
        raise ModelError(f"{path}: not an ONNX model the numpy engine can run ({str(exc)[:200]})") from None


def _read_config(session: ort.InferenceSession, path: Path) -> ModelConfig:
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if text is None:
        raise ModelError(f"{path}: not an adder model (no '{METADATA_KEY}' in its metadata)")
    try:
        return ModelConfig.from_json(text)
    except ConfigError as exc:
        raise ModelError(f"{path}: {exc}") from None


PROBABILITIES = "probabilities"  # the model's own form: its encoding in, one probability per symbol and step out
SYMBOLS = "symbols"  # a batch graph from symbol indices to symbol indices (export/written.py)


def _check_signature(session: ort.InferenceSession, config: ModelConfig, path: Path, forms=(PROBABILITIES,)) -> str:
    """Which of ``forms`` the model's tensors have; a ModelError when they match none of them,
    or not what its metadata promises. ``symbols``: int64 [N, input_length] symbol indices in,
    int64 [N, output_length] symbol indices out."""
    vocab = len(config.alphabet)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
    if SYMBOLS in forms and outputs[0].type == "tensor(int64)":
        form, want_in, want_type = SYMBOLS, [config.input_length], "tensor(int64)"
        want_out, want_out_type = [config.output_length], "tensor(int64)"
    else:
        form, want_out, want_out_type = PROBABILITIES, [config.output_length, vocab], "tensor(float)"
        if config.encoding == "index":
            want_in, want_type = [config.input_length], "tensor(int32)"
        else:
            want_in, want_type = [config.input_length, config.input_features], "tensor(float)"
        if config.layout == "pairs":  # any number of steps (adder.layout)
            want_in, want_out = signature(config)
    checks = [
        ("input", inputs[0].shape[1:], want_in, inputs[0].type, want_type),
        ("output", outputs[0].shape[1:], want_out, outputs[0].type, want_out_type),
    ]
    for name, shape, want, dtype, want_dtype in checks:
        if list(shape) != want or dtype != want_dtype:
            raise ModelError(
                f"{path}: {name} is {dtype} {['N', *shape]} but its metadata implies {want_dtype} {['N', *want]}"
            )
    return form


class _QueryBuffers:
    """One thread's input and output tensors for single queries, bound once to the one-query session.

    Binding both ends skips what ``run`` does per call to wrap numpy arrays and to allocate and
    convert its output: measured about 14.5 -> 12 us a run on the 16/16 default's one-query graph.
    A query's tensor is written into the bound input's bytes; the answer is read from the output.
    """

    def __init__(self, session: ort.InferenceSession, config: ModelConfig) -> None:
        floats = config.encoding != "index"
        shape = (1, config.input_length, config.input_features) if floats else (1, config.input_length)
        self.input = np.zeros(shape, dtype=np.float32 if floats else np.int32)
        self.input_bytes = memoryview(self.input).cast("B")
        self.output = np.zeros((1, config.output_length, len(config.alphabet)), dtype=np.float32)
        self.input_name = session.get_inputs()[0].name
        self.binding = None
        if ort is None or not isinstance(session, ort.InferenceSession):  # the numpy engine: run() copies
            return
        self._value = ort.OrtValue.ortvalue_from_numpy(self.input)  # shares self.input's memory
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(session.get_inputs()[0].name, self._value)
        self.binding.bind_output(
            session.get_outputs()[0].name, "cpu", 0, np.float32, list(self.output.shape), self.output.ctypes.data
        )

    def run(self, session) -> None:
        """The session's answer to ``self.input``, in ``self.output``."""
        if self.binding is None:
            self.output[...] = session.run(None, {self.input_name: self.input})[0]
        else:
            session.run_with_iobinding(self.binding)


class Adder:
    """Answers arithmetic queries with a trained seq2seq model.

    One onnxruntime session is created per Adder and reused for every call;
    ``InferenceSession.run`` is thread-safe, so one Adder may serve many threads.
    Single queries run on one thread (no pool overhead); batches of BATCH_ROWS or
    more go to a second, one-thread session on the batch graph, opened on first use,
    and larger inputs are cut into chunks that ``threads`` workers (default: every
    core) run side by side. Chunks in parallel measured as fast as onnxruntime's own
    threads inside one call, and they let one chunk's parsing overlap another's run.
    """

    def __init__(
        self, model: str | Path | None = None, *, threads: int | None = None, engine: str | None = None
    ) -> None:
        self.engine = check_engine(engine)  # "onnxruntime", or "numpy" where it is missing or asked for
        self.path = resolve_model(model)
        self._threads = (os.cpu_count() or 1) if threads is None else whole_number(threads, "threads", 1, MAX_THREADS)
        self._batch_session: ort.InferenceSession | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batch_path: Path | None = None  # the graph batches run on, once the first batch has run
        self._batch_form = PROBABILITIES
        self._probability_session: ort.InferenceSession | None = None  # for predict_tensor, when batches run on symbols
        self._lock = threading.Lock()
        # With a one-query graph beside it, the model's own graph is opened only to read its
        # config and check its signature, unoptimised; single queries run on the other one.
        self._model_bytes = _read_model(self.path)
        helper = single_graph_path(self.path)
        single_bytes = _read_helper(helper, self.path, len(self._model_bytes))
        # Read now, opened on the first batch: what a later export writes is not this model.
        self._batch_bytes = _read_helper(batch_graph_path(self.path), self.path, len(self._model_bytes))
        model_session = _open_session(
            self._model_bytes, self.path, 1, single=True, optimize=single_bytes is None, engine=self.engine
        )
        self.config = _read_config(model_session, self.path)
        _check_signature(model_session, self.config, self.path)
        single_session = self._open_helper(single_bytes, helper, single=True)  # about a third faster per query
        self.single_path = helper if single_session is not None else self.path  # the graph single queries run on
        self._single_bytes = single_bytes if single_session is not None else self._model_bytes
        if single_session is None and single_bytes is not None:  # unusable helper: the model's own graph, optimised
            model_session = _open_session(self._model_bytes, self.path, 1, single=True, engine=self.engine)
        self._session = model_session if single_session is None else single_session
        _LIVE.add(self)  # so a forked child rebuilds what threads it relies on (_after_fork)
        self.codec = codec_for(self.config)
        self._stepwise = self.config.layout == "pairs"  # a graph that runs as many steps as it is fed
        self._local = threading.local()  # each thread's _QueryBuffers, bound to self._session
        self._input_name = self._session.get_inputs()[0].name
        self._input_names = {self._session: self._input_name}  # each open session's input, read once
        self._outputs = [self._session.get_outputs()[0].name]

    def parse(self, query: str) -> Expression:
        return self.codec.parse(query)

    def __call__(self, query: str) -> int:
        """Answer one query, e.g. ``adder("3+10") == 13``; raises QueryError if it is invalid."""
        if self._stepwise:  # as many steps as the query needs, not the model's most
            (result,), _clean = self._answer_chunk([query])
            if isinstance(result, QueryError):
                raise result
            return result
        codec = self.codec
        text = codec.plain_text(query)  # "50+11" without the parser; anything else goes through it
        if text is None:
            text = codec.canonical_text(self.parse(query))
        try:
            buffers = self._local.buffers
        except AttributeError:
            buffers = self._local.buffers = _QueryBuffers(self._session, self.config)
        buffers.input_bytes[:] = codec.text_bytes(text)
        try:
            buffers.run(self._session)
        except ModelError:
            raise
        except Exception as exc:  # the engine's own types: an output of another shape, a failing node
            raise _run_failed(self.single_path, exc) from None
        if not math.isfinite(buffers.output.sum()):  # one reduction: NaN or an infinity anywhere shows
            raise ModelError(
                f"{self.single_path}: the model wrote a value that is not a finite number (NaN or infinity)"
            )
        answer = codec.decode_one(buffers.output[0])
        if answer is None:
            raise QueryError(f"the model wrote no valid number for {query!r}")
        return answer

    def results(self, queries: Iterable[str], chunk_size: int = CHUNK_SIZE) -> Iterator[int | QueryError]:
        """One result per query, in order: the answer, or the QueryError explaining why not.

        Streams in chunks (one onnxruntime call each), so memory stays flat for any input
        size. With more than one thread, chunks are answered by a pool of that many
        workers, at most one chunk more than workers in flight: one chunk's parsing and
        decoding in Python overlaps another's onnxruntime call.
        """
        _check_batch_arguments(queries, chunk_size)
        return self._results(queries, chunk_size)

    def _results(self, queries: Iterable[str], chunk_size: int) -> Iterator[int | QueryError]:
        for results, _clean in self._chunk_results(queries, chunk_size):
            yield from results

    def answer_chunks(
        self, chunks: Iterable[list[str]], idle: Callable[[], bool] | None = None
    ) -> Iterator[tuple[list[str], list[int | QueryError]]]:
        """Each chunk of queries with its results (answers or QueryErrors), in order.

        Chunks are answered as ``results`` answers them, several in flight on the worker
        pool. ``idle``, when given, says whether the next chunk would have to wait for
        input (a person typing, a program waiting for one answer before it writes the next
        query): then every chunk in flight is answered before the next is asked for, so
        no query already read is held back.
        """
        for chunk, (results, _clean) in self._pipeline(chunks, idle or _never):
            yield chunk, results

    def _chunk_results(self, queries: Iterable[str], chunk_size: int) -> Iterator[tuple[list, bool]]:
        """Each chunk's results in order, with whether all of them are answers (no QueryError)."""
        if hasattr(queries, "__len__") and self._threads > 1:
            # A known, small input (say 1,024 queries) is cut into one chunk per core, so it
            # runs on every core too, not in one chunk on one; never below SPLIT_ROWS a chunk.
            share = -(-len(queries) // self._threads)
            if share >= SPLIT_ROWS:
                chunk_size = min(chunk_size, share)
        iterator = iter(queries)
        chunks = iter(lambda: list(islice(iterator, chunk_size)), [])
        for _chunk, answered in self._pipeline(chunks, _never):
            yield answered

    def _pipeline(self, chunks: Iterable[list[str]], idle: Callable[[], bool]) -> Iterator[tuple[list[str], tuple]]:
        """Each chunk with ``_answer_chunk``'s result, in order, at most one chunk more than
        workers in flight. The first chunk is answered here, without the pool, unless a second
        follows at once (a few queries from the command line, or one line typed at a terminal)."""
        pending: deque = deque()
        held: list[str] | None = None  # the first chunk, kept until a second shows the pool is worth it
        for chunk in chunks:
            if self._threads == 1 or (held is None and not pending and idle()):
                yield chunk, self._answer_chunk(chunk)
                continue
            if held is None and not pending:
                held = chunk
                continue
            pool = self._pool()
            if held is not None:
                pending.append((held, pool.submit(self._answer_chunk, held)))
                held = None
            pending.append((chunk, pool.submit(self._answer_chunk, chunk)))
            while pending and (len(pending) > self._threads or idle()):
                done, future = pending.popleft()
                yield done, future.result()
        if held is not None:
            yield held, self._answer_chunk(held)
        while pending:
            done, future = pending.popleft()
            yield done, future.result()

    def _answer_chunk(self, chunk: list[str]) -> tuple[list[int | QueryError], bool]:
        codec = self.codec
        indices, errors = codec.encode_batch(chunk)
        clean = not any(errors)
        rows = range(len(chunk)) if clean else [i for i, error in enumerate(errors) if error is None]
        results: list[int | QueryError | None] = list(errors)
        if rows:
            subset = indices if clean else indices[rows]
            values, valid = codec.decode_answers(self.answer_symbols(subset))
            if len(rows) == len(chunk) and valid.all():  # nearly every chunk: no Python work per query
                return values.tolist(), True
            for row, value, ok in zip(rows, values.tolist(), valid.tolist()):
                results[row] = value if ok else QueryError(f"the model wrote no valid number for {chunk[row]!r}")
        return results, False  # type: ignore[return-value]

    def batch(self, queries: Iterable[str], chunk_size: int = CHUNK_SIZE) -> list[int]:
        """Answer many queries; raises QueryError naming the first bad one (1-based)."""
        _check_batch_arguments(queries, chunk_size)
        answers: list[int] = []
        for results, clean in self._chunk_results(queries, chunk_size):
            if not clean:
                for number, result in enumerate(results, start=len(answers) + 1):
                    if isinstance(result, QueryError):
                        raise QueryError(f"query {number}: {result}")
            answers += results
        return answers

    def predict_tensor(self, x: np.ndarray) -> np.ndarray:
        """Raw probabilities for an encoded batch (used by export validation and benchmarks)."""
        if self._threads > 1 and len(x) > CHUNK_SIZE:
            parts = [x[start : start + CHUNK_SIZE] for start in range(0, len(x), CHUNK_SIZE)]
            return np.concatenate(list(self._pool().map(self._run, parts)))
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """The model's probabilities for ``x``, checked against what was asked of it (see _checked_output)."""
        if len(x) == 0:
            return np.zeros((0, self.config.output_length, len(self.config.alphabet)), dtype=np.float32)
        if len(x) >= BATCH_ROWS:
            session, path, rows = self._batch(), self.batch_path or self.path, [x]
            if self._batch_form != PROBABILITIES:  # the batch graph answers in symbols: the model's own graph
                session, path = self._probabilities(), self.path
        else:
            session, path, rows = self._session, self.single_path, list(x[:, np.newaxis])
        try:
            name = self._input_names[session]
            outputs = [session.run(None, {name: row})[0] for row in rows]
        except Exception as exc:  # onnxruntime's own types: a failing node, a shape it cannot compute
            raise _run_failed(path, exc) from None
        steps = x.shape[1] if self._stepwise else None  # a pairs graph writes a step per step read
        return self._checked_output(outputs[0] if len(outputs) == 1 else np.concatenate(outputs), len(x), path, steps)

    def answer_symbols(self, indices: np.ndarray) -> np.ndarray:
        """The symbol index the model writes at each answer step ([N, output_length]) for queries
        given as symbol indices (``codec.encode_batch``, ``codec.shape_indices``): what ``batch``
        and ``results`` decode, through the graph they run on (the batch graph from 8 rows)."""
        if len(indices) >= BATCH_ROWS:
            session = self._batch()
            if self._batch_form == SYMBOLS:
                path = self.batch_path or self.path
                try:
                    feed = {self._input_names[session]: indices.astype(np.int64, copy=False)}
                    output = session.run(None, feed)[0]
                except Exception as exc:  # onnxruntime's own types: a failing node, a shape it cannot compute
                    raise _run_failed(path, exc) from None
                return self._checked_symbols(output, len(indices), path)
        return self._run(self.codec.to_model_input(indices)).argmax(axis=-1)

    def _checked_symbols(self, output: object, rows: int, path: Path) -> np.ndarray:
        """A symbols graph's ``output`` when it is one symbol of the alphabet per row and step; the
        graph marks a step whose scores were not all finite by adding the alphabet's size to it."""
        vocab = len(self.config.alphabet)
        want = (rows, self.config.output_length)
        if not isinstance(output, np.ndarray) or output.shape != want or output.dtype != np.int64:
            shape = list(output.shape) if isinstance(output, np.ndarray) else type(output).__name__
            kind = output.dtype if isinstance(output, np.ndarray) else ""
            asked = f"{rows:,} {'query' if rows == 1 else 'queries'}"
            raise ModelError(f"{path}: the model returned {kind} {shape} for {asked}, not int64 {list(want)}")
        if output.size and int(output.view(np.uint64).max()) >= vocab:  # negatives wrap above too: one pass
            if ((output >= vocab) & (output < 2 * vocab)).any():
                raise ModelError(f"{path}: the model wrote a value that is not a finite number (NaN or infinity)")
            raise ModelError(f"{path}: the model wrote a symbol index outside its alphabet of {vocab}")
        return output

    def _checked_output(self, output: object, rows: int, path: Path, steps: int | None = None) -> np.ndarray:
        """``output`` when it is what the model's config promises for ``rows`` queries: one row
        each, ``output_length`` steps (a pairs model: as many as it was fed, ``steps``) of one
        score per symbol, every value finite. Anything else is a ModelError: a row short would
        shift every answer after it, and a NaN would read as the symbol at index 0."""
        want = (rows, steps or self.config.output_length, len(self.config.alphabet))
        if not isinstance(output, np.ndarray) or output.shape != want or output.dtype != np.float32:
            shape = list(output.shape) if isinstance(output, np.ndarray) else type(output).__name__
            kind = output.dtype if isinstance(output, np.ndarray) else ""
            asked = f"{rows:,} {'query' if rows == 1 else 'queries'}"
            raise ModelError(f"{path}: the model returned {kind} {shape} for {asked}, not float32 {list(want)}")
        if not np.isfinite(output).all():
            raise ModelError(f"{path}: the model wrote a value that is not a finite number (NaN or infinity)")
        return output

    def _open_helper(self, data: bytes | None, path: Path, single: bool, forms=(PROBABILITIES,)):
        """A graph adder-export saved beside the model (its one-query or batch graph), when it is
        the same model: same embedded config, training record included, and the signature that
        config implies. None when absent or unusable: the model's own graph answers the same.
        With several ``forms`` allowed, (session, form)."""
        if data is None:
            return None
        try:
            session = _open_session(data, path, 1, single=single, engine=self.engine)
            if _read_config(session, path).to_json() != self.config.to_json():
                return None
            form = _check_signature(session, self.config, path, forms)
        except ModelError:
            return None
        return session if len(forms) == 1 else (session, form)

    def _after_fork(self) -> None:
        """In a forked child: the parent's worker threads and any lock they held did not come along.

        Without this the child's first large batch waits forever on a pool whose threads
        exist only in the parent. The sessions are reopened too: onnxruntime makes no
        promise about a session used across fork.
        """
        self._lock = threading.Lock()
        self._executor = None
        self._batch_session = None
        self._probability_session = None
        self._session = _open_session(self._single_bytes, self.single_path, 1, single=True, engine=self.engine)
        self._input_names = {self._session: self._session.get_inputs()[0].name}
        self._local = threading.local()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor  # only once a second chunk exists

                self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="adder")
            return self._executor

    def _batch(self) -> ort.InferenceSession:
        with self._lock:
            if self._batch_session is None:
                self._batch_session = self._open_batch_session()
            return self._batch_session

    def _open_batch_session(self) -> ort.InferenceSession:
        """The batch graph saved beside the model (see _open_helper), else the model's own graph;
        the batch dimension is left free."""
        opened = self._open_helper(self._batch_bytes, batch_graph_path(self.path), False, (PROBABILITIES, SYMBOLS))
        if opened is None:
            self.batch_path = self.path
            session = _open_session(self._model_bytes, self.path, 1, engine=self.engine)
            self._input_names[session] = session.get_inputs()[0].name
            return session
        self.batch_path = batch_graph_path(self.path)
        session, self._batch_form = opened
        self._input_names[session] = session.get_inputs()[0].name
        return session

    def _probabilities(self) -> ort.InferenceSession:
        """The model's own graph with a free batch, for predict_tensor when batches answer in symbols."""
        with self._lock:
            if self._probability_session is None:
                session = _open_session(self._model_bytes, self.path, 1, engine=self.engine)
                self._input_names[session] = session.get_inputs()[0].name
                self._probability_session = session
            return self._probability_session
