"""Expose a Piper voice's phoneme durations as a second output of its ONNX graph, without the `onnx` package.

A Piper (VITS) voice answers a batch with one padded array: every sentence's audio is as long as the
longest. How long each one really is follows from the duration predictor: the graph's `Ceil` node gives
the frames each phoneme id lasts, and a sentence's audio is its frames times the decoder's hop (256
samples for Piper). That tensor is inside the graph; marking it as a graph output lets onnxruntime return
it beside the audio, so a batch can be cut back into sentences exactly.

The model file is a protobuf `ModelProto`. Adding an output is appending one `ValueInfoProto` (just a
name) to the `GraphProto`'s `output` field, so this module reads the few fields it needs (wire format:
https://protobuf.dev/programming-guides/encoding/) and re-frames the graph; every other byte is kept.
Its field reader and writers (`fields`, `strings`, `int64s`, `nodes`, `length_delimited`, `varint_field`,
`with_graph`) serve decoder_2d.py's rewrite too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

MODEL_GRAPH, MODEL_OPSET_IMPORT = 7, 8
"""ModelProto.graph, ModelProto.opset_import (onnx.proto)."""
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_VALUE_INFO = 1, 5, 11, 12, 13
"""GraphProto.node, .initializer, .input, .output, .value_info."""
NODE_INPUT, NODE_OUTPUT, NODE_NAME, NODE_OP_TYPE, NODE_ATTRIBUTE, NODE_DOMAIN = 1, 2, 3, 4, 5, 7
"""NodeProto.input, .output, .name, .op_type, .attribute, .domain."""
VALUE_INFO_NAME = 1
"""ValueInfoProto.name."""
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


class NotAProtobuf(ValueError):
    """The bytes are not a protobuf message this module can read."""


@dataclass(frozen=True)
class Field:
    number: int
    wire_type: int
    start: int
    """Where the field's tag begins."""
    value_start: int
    """Where its payload begins (after the length prefix, for length-delimited fields)."""
    end: int


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise NotAProtobuf("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def fields(data: bytes | memoryview) -> Iterator[Field]:
    """The top-level fields of one message, in file order."""
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = read_varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == VARINT:
            _, end = read_varint(data, pos)
            value_start = pos
        elif wire_type == LENGTH_DELIMITED:
            length, value_start = read_varint(data, pos)
            end = value_start + length
        elif wire_type in (FIXED64, FIXED32):
            value_start, end = pos, pos + (8 if wire_type == FIXED64 else 4)
        else:
            raise NotAProtobuf(f"wire type {wire_type} (groups are not used by ONNX)")
        if end > len(data):
            raise NotAProtobuf("a field runs past the end of its message")
        pos = end
        yield Field(number, wire_type, start, value_start, end)


def strings(data: memoryview, number: int) -> list[str]:
    return [bytes(data[f.value_start:f.end]).decode() for f in fields(data)
            if f.number == number and f.wire_type == LENGTH_DELIMITED]


def int64s(data: memoryview, number: int) -> list[int]:
    """A repeated int64 field's values, written packed or one per tag (proto2 writes them one per tag)."""
    values: list[int] = []
    for f in fields(data):
        if f.number != number:
            continue
        if f.wire_type == VARINT:
            values.append(_signed(read_varint(data, f.value_start)[0]))
        elif f.wire_type == LENGTH_DELIMITED:
            pos = f.value_start
            while pos < f.end:
                value, pos = read_varint(data, pos)
                values.append(_signed(value))
    return values


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def varint_field(number: int, value: int) -> bytes:
    """One varint field (int64: a negative value as its 64-bit two's complement)."""
    return encode_varint(number << 3 | VARINT) + encode_varint(value & ((1 << 64) - 1))


def length_delimited(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | LENGTH_DELIMITED) + encode_varint(len(payload)) + payload


@dataclass(frozen=True)
class Node:
    """One NodeProto's names (its field, to read or rewrite the rest)."""

    field: Field
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    domain: str


def first_string(message: memoryview, number: int) -> str:
    """A string field's value ("" when absent)."""
    return (strings(message, number) or [""])[0]


def nodes(graph: memoryview) -> list[Node]:
    """The graph's nodes, in file order."""
    found = []
    for f in (f for f in fields(graph) if f.number == GRAPH_NODE):
        body = graph[f.value_start:f.end]
        found.append(Node(f, first_string(body, NODE_NAME), first_string(body, NODE_OP_TYPE),
                          tuple(strings(body, NODE_INPUT)), tuple(strings(body, NODE_OUTPUT)),
                          first_string(body, NODE_DOMAIN)))
    return found


def graph_field(model: memoryview) -> Field | None:
    """The ModelProto's graph field (None when there is none)."""
    return next((f for f in fields(model) if f.number == MODEL_GRAPH), None)


def with_graph(model: memoryview, graph: Field, new_graph: bytes) -> bytes:
    """`model` with its graph field (`graph`) replaced by `new_graph`; every other byte kept."""
    return b"".join((model[:graph.start], length_delimited(MODEL_GRAPH, new_graph), model[graph.end:]))


def outputs_of(graph: memoryview, op_type: str) -> list[str]:
    """The output tensor names of the graph's nodes of `op_type` (e.g. `Ceil`)."""
    return [name for node in nodes(graph) if node.op_type == op_type for name in node.outputs]


def with_extra_output(model: bytes, op_type: str = "Ceil") -> tuple[bytes, str] | None:
    """`model` with the output of its only `op_type` node added to the graph's outputs, and that output's
    name; None when the graph has no such node or several (then which one is meant is unknown)."""
    view = memoryview(model)
    found = graph_field(view)
    if found is None:
        return None
    graph = view[found.value_start:found.end]
    candidates = outputs_of(graph, op_type)
    if len(candidates) != 1:
        return None
    (name,) = candidates
    value_info = length_delimited(VALUE_INFO_NAME, name.encode())
    return with_graph(view, found, bytes(graph) + length_delimited(GRAPH_OUTPUT, value_info)), name
