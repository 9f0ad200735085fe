"""Read an ONNX model file without the ``onnx`` package: a small protobuf reader.

An ONNX file is one protobuf message (``ModelProto``, defined in onnx/onnx.proto). This
reads the few fields the numpy engine needs, by field number: the graph's nodes with
their attributes, its initializers as numpy arrays, its inputs and outputs with their
types and shapes, the opset, and ``metadata_props`` (where an adder model keeps its
config). Every other field is skipped. Anything malformed raises ``OnnxFormatError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class OnnxFormatError(ValueError):
    """Bytes that are not an ONNX model this reader can use (the message says why)."""


# TensorProto.DataType values this reader turns into numpy arrays.
DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}
TYPE_NAMES = {1: "tensor(float)", 6: "tensor(int32)", 7: "tensor(int64)", 9: "tensor(bool)", 11: "tensor(double)"}
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class Node:
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict = field(default_factory=dict)
    domain: str = ""


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output: its name, element type (``tensor(float)``) and shape
    (a number per fixed dimension, a name per free one)."""

    name: str
    type: str
    shape: list


@dataclass(frozen=True)
class OnnxModel:
    nodes: list[Node]
    initializers: dict[str, np.ndarray]
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    metadata: dict[str, str]
    opset: int


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise OnnxFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxFormatError("varint longer than 10 bytes")


def message_fields(data: memoryview):
    """(field number, wire type, value) for each field of one message: an int for varints and
    fixed-width fields, a memoryview of the bytes for length-delimited ones."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = _varint(data, pos)
        elif wire == FIXED64:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == FIXED32:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        elif wire == LENGTH:
            size, pos = _varint(data, pos)
            if pos + size > end:
                raise OnnxFormatError("a field runs past the end of its message")
            value, pos = data[pos : pos + size], pos + size
        else:
            raise OnnxFormatError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise OnnxFormatError("truncated field")
        yield number, wire, value


def _signed(value: int) -> int:
    """An int64 field's value (protobuf writes negative numbers as 10-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(wire: int, value) -> list[int]:
    """A repeated int64 field's values, packed (one length-delimited field) or not."""
    if wire == VARINT:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        number, pos = _varint(value, pos)
        out.append(_signed(number))
    return out


def _bytes(value) -> bytes:
    if not isinstance(value, memoryview):
        raise OnnxFormatError("a number where bytes were expected")
    return bytes(value)


def _text(value) -> str:
    try:
        return _bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise OnnxFormatError("a name is not UTF-8 text") from None


def _tensor(data: memoryview) -> tuple[str, np.ndarray]:
    """A TensorProto: (name, array). Data from raw_data or the typed repeated fields."""
    dims: list[int] = []
    dtype_code, name, raw = 0, "", None
    typed: list = []
    for number, wire, value in message_fields(data):
        if number == 1:
            dims += _ints(wire, value)
        elif number == 2:
            dtype_code = value
        elif number == 8:
            name = _text(value)
        elif number == 9:
            raw = _bytes(value)
        elif number == 4:  # float_data, packed fixed32 or one value
            typed.append(np.frombuffer(value, "<f4") if wire == LENGTH else np.array([value], "<u4").view("<f4"))
        elif number in (5, 7):  # int32_data, int64_data (varints)
            typed.append(np.array(_ints(wire, value), dtype=np.int64))
        elif number == 10:  # double_data
            typed.append(np.frombuffer(value, "<f8") if wire == LENGTH else np.array([value], "<u8").view("<f8"))
        elif number == 14 and value == 1:
            raise OnnxFormatError(f"initializer {name or '?'} keeps its data in an external file")
    if dtype_code not in DTYPES:
        raise OnnxFormatError(f"initializer {name or '?'} has an unsupported data type {dtype_code}")
    dtype = np.dtype(DTYPES[dtype_code])
    if any(d < 0 for d in dims):
        raise OnnxFormatError(f"initializer {name} has a negative dimension")
    if raw is not None:
        array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    elif typed:
        array = np.concatenate(typed).astype(dtype)
    else:
        array = np.zeros(0, dtype=dtype)
    size = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if array.size != size:
        raise OnnxFormatError(f"initializer {name} holds {array.size} values for shape {dims}")
    return name, array.reshape(dims)


def _attribute(data: memoryview) -> tuple[str, object]:
    name, single, many = "", None, []
    for number, wire, value in message_fields(data):
        if number == 1:
            name = _text(value)
        elif number == 2:
            single = float(np.array([value], "<u4").view("<f4")[0])
        elif number == 3:
            single = _signed(value)
        elif number == 4:
            single = _bytes(value)
        elif number == 5:
            single = _tensor(value)[1]
        elif number == 7:
            many += np.frombuffer(value, "<f4").tolist() if wire == LENGTH else [value]
        elif number == 8:
            many += _ints(wire, value)
        elif number == 9:
            many.append(_bytes(value))
    return name, single if single is not None else many


def _node(data: memoryview) -> Node:
    inputs, outputs, attributes, op_type, domain = [], [], {}, "", ""
    for number, _wire, value in message_fields(data):
        if number == 1:
            inputs.append(_text(value))
        elif number == 2:
            outputs.append(_text(value))
        elif number == 4:
            op_type = _text(value)
        elif number == 5:
            key, attribute = _attribute(value)
            attributes[key] = attribute
        elif number == 7:
            domain = _text(value)
    return Node(op_type, tuple(inputs), tuple(outputs), attributes, domain)


def _value_info(data: memoryview) -> ValueInfo:
    """ValueInfoProto -> TypeProto.tensor_type -> elem_type and TensorShapeProto's dims."""
    name, elem, shape = "", 0, []
    for number, _wire, value in message_fields(data):
        if number == 1:
            name = _text(value)
        elif number == 2:
            for tnumber, _w, tensor_type in message_fields(value):
                if tnumber != 1:
                    continue
                for inner, _w2, part in message_fields(tensor_type):
                    if inner == 1:
                        elem = part
                    elif inner == 2:
                        for dnumber, _w3, dim in message_fields(part):
                            if dnumber == 1:
                                shape.append(_dimension(dim))
    return ValueInfo(name, TYPE_NAMES.get(elem, f"tensor(type {elem})"), shape)


def _dimension(data: memoryview):
    for number, _wire, value in message_fields(data):
        if number == 1:
            return _signed(value)
        if number == 2:
            return _text(value)
    return None


def _graph(data: memoryview) -> tuple[list[Node], dict[str, np.ndarray], list[ValueInfo], list[ValueInfo]]:
    nodes, initializers, inputs, outputs = [], {}, [], []
    for number, _wire, value in message_fields(data):
        if number == 1:
            nodes.append(_node(value))
        elif number == 5:
            name, array = _tensor(value)
            initializers[name] = array
        elif number == 11:
            inputs.append(_value_info(value))
        elif number == 12:
            outputs.append(_value_info(value))
    # Older files list initializers among the inputs too; they are not fed.
    inputs = [info for info in inputs if info.name not in initializers]
    return nodes, initializers, inputs, outputs


def read_model(data: bytes) -> OnnxModel:
    """Parse an ONNX file's bytes; raises OnnxFormatError if they are not a usable model."""
    view = memoryview(data)
    graph, metadata, opset = None, {}, None
    try:
        for number, _wire, value in message_fields(view):
            if number == 7:
                graph = _graph(value)
            elif number == 8:  # opset_import: OperatorSetIdProto (domain 1, version 2)
                domain, version = "", 0
                for inner, _w, part in message_fields(value):
                    if inner == 1:
                        domain = _text(part)
                    elif inner == 2:
                        version = part
                if domain in ("", "ai.onnx"):
                    opset = version
            elif number == 14:  # metadata_props: StringStringEntryProto (key 1, value 2)
                entry = {inner: _text(part) for inner, _w, part in message_fields(value)}
                metadata[entry.get(1, "")] = entry.get(2, "")
    except (TypeError, ValueError) as exc:  # wrong wire types where a message was expected, say
        if isinstance(exc, OnnxFormatError):
            raise
        raise OnnxFormatError(f"malformed protobuf ({exc})") from None
    if graph is None:
        raise OnnxFormatError("no graph in the file")
    nodes, initializers, inputs, outputs = graph
    if not nodes:
        raise OnnxFormatError("the graph has no nodes")
    return OnnxModel(nodes, initializers, inputs, outputs, metadata, opset or 0)
