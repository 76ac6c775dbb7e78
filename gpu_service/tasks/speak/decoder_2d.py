"""Run a Piper voice's decoder as two-dimensional convolutions of height one: the same numbers, faster on a CPU.

Most of a Piper voice's time is its decoder (VITS's HiFi-GAN: 20 `Conv`s and 3 `ConvTranspose`s over the
audio's samples, with `Add`, `LeakyRelu`, `Div` and `Tanh` between them). Exported from PyTorch, they are
one-dimensional ([batch, channels, samples]), and onnxruntime runs a 1-D convolution on its CPU as
im2col + matrix product. Given the same tensors as [batch, channels, 1, samples], it applies its blocked
NCHWc layout to the whole chain instead (direct convolution kernels, the adds and activations fused into
them): on the bundled voice, one thread, 16 sentences, 13.2-13.4 audio seconds per CPU second as shipped
against 15.6-16.3 lifted, the audio equal within 1e-6 (docs/speech.md).

So `decoder_as_2d` rewrites the graph (protobuf fields, see onnx_graph.py; every other field kept): the
nodes named under the decoder's scope (`/dec/`) get `Unsqueeze(axis 2)` on the tensors that come in, their
convolutions' weights one more dimension ([out, in, k] -> [out, in, 1, k]) and attributes a leading one
(kernel, strides, dilations; pads [a, b] -> [0, a, 0, b]), and the tensors that leave get `Squeeze(axis 2)`.
It answers None, and the voice runs as shipped, when the graph is not what this expects: no decoder scope,
an operator in it that cares about ranks or is not ONNX's own, a weight shared with another node or listed as
a graph input, a subgraph (If, Loop, Scan: it could read a decoder tensor by name), or an opset before 13.
What it cannot see (the rank of a tensor coming in) the engine's check catches: it loads the rewritten graph
and compares its audio with the shipped graph's before using it (engine.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from gpu_service.tasks.speak.onnx_graph import (
    GRAPH_INITIALIZER,
    GRAPH_INPUT,
    GRAPH_NODE,
    GRAPH_OUTPUT,
    GRAPH_VALUE_INFO,
    LENGTH_DELIMITED,
    MODEL_OPSET_IMPORT,
    NODE_ATTRIBUTE,
    NODE_INPUT,
    NODE_NAME,
    NODE_OP_TYPE,
    NODE_OUTPUT,
    VALUE_INFO_NAME,
    Node,
    fields,
    first_string,
    graph_field,
    int64s,
    length_delimited,
    nodes,
    varint_field,
    with_graph,
)

SCOPE = "/dec/"
"""The decoder's nodes, as PyTorch names them when it exports Piper's VITS (`SynthesizerTrn.dec`)."""
CONVS = frozenset({"Conv", "ConvTranspose"})
RANK_FREE = frozenset({"Add", "Sub", "Mul", "Div", "LeakyRelu", "Relu", "Tanh", "Constant"})
"""Operators whose answer does not depend on the rank (elementwise with broadcasting; a Constant of rank 0 or 1)."""
SUBGRAPHS = frozenset({"If", "Loop", "Scan"})
"""Operators with subgraphs, which may read any outer tensor by name (not through their inputs)."""
ONNX_DOMAINS = ("", "ai.onnx")
MIN_OPSET = 13
"""Unsqueeze and Squeeze take their axes as an input from opset 13."""
AXES = "/dec/2d/axes"
"""The new nodes and this constant are named under the decoder's scope, so a graph rewritten once is refused
the second time (`Unsqueeze` cares about ranks)."""
ATTRIBUTE_NAME, ATTRIBUTE_T, ATTRIBUTE_INTS = 1, 5, 8
"""AttributeProto.name, .t, .ints."""
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_NAME, TENSOR_RAW_DATA = 1, 2, 8, 9
"""TensorProto.dims, .data_type, .name, .raw_data."""
INT64 = 7
"""TensorProto.DataType.INT64."""
OPSET_DOMAIN, OPSET_VERSION = 1, 2
"""OperatorSetIdProto.domain, .version."""


@dataclass(frozen=True)
class Plan:
    """What the rewrite changes (found by `plan`, carried out by `rewrite`)."""

    region: frozenset[int]
    """The decoder's nodes, by where their field starts in the graph."""
    weights: frozenset[str]
    """The convolutions' weights (initializers of rank 3)."""
    entries: frozenset[str]
    """Tensors made outside the decoder that it reads: each gets an Unsqueeze."""
    exits: frozenset[str]
    """Tensors the decoder makes that are read outside it (or are graph outputs): each gets a Squeeze."""
    tensors: frozenset[str]
    """Every tensor the decoder makes (their value_info, rank 3 where it is given, is dropped)."""


def decoder_as_2d(model: bytes, scope: str = SCOPE) -> bytes | None:
    """`model` with its decoder lifted to 2-D convolutions (see the module docstring), or None."""
    view = memoryview(model)
    found_graph = graph_field(view)
    if found_graph is None or _opset(view) < MIN_OPSET:
        return None
    graph = view[found_graph.value_start:found_graph.end]
    found = plan(graph, scope)
    return None if found is None else with_graph(view, found_graph, rewrite(graph, found))


def _opset(model: memoryview) -> int:
    """The default domain's opset version (0 when the model names none)."""
    for f in (f for f in fields(model) if f.number == MODEL_OPSET_IMPORT):
        body = model[f.value_start:f.end]
        if first_string(body, OPSET_DOMAIN) in ONNX_DOMAINS:
            return (int64s(body, OPSET_VERSION) or [0])[0]
    return 0


def _ranks(graph: memoryview) -> dict[str, int]:
    """Each initializer's rank, by name."""
    ranks = {}
    for f in (f for f in fields(graph) if f.number == GRAPH_INITIALIZER):
        body = graph[f.value_start:f.end]
        ranks[first_string(body, TENSOR_NAME)] = len(int64s(body, TENSOR_DIMS))
    return ranks


def plan(graph: memoryview, scope: str = SCOPE) -> Plan | None:
    """What to change, or None when the decoder is not one this rewrite is sure of."""
    every = nodes(graph)
    region = [n for n in every if n.name.startswith(scope)]
    if not region or any(n.op_type not in CONVS | RANK_FREE or n.domain not in ONNX_DOMAINS for n in region):
        return None
    if any(n.op_type in SUBGRAPHS for n in every):
        return None
    if any(n.op_type == "Constant" and not _small_constant(graph, n) for n in region):
        return None
    ranks = _ranks(graph)
    made = {o for n in region for o in n.outputs}
    weights = {n.inputs[1] for n in region if n.op_type in CONVS and len(n.inputs) > 1}
    if any(ranks.get(w) != 3 for w in weights) or any(not _lifts(graph, n) for n in region if n.op_type in CONVS):
        return None
    entries = set()
    for n in region:
        for i, name in enumerate(n.inputs):
            if name in weights and not (n.op_type in CONVS and i == 1):
                return None  # a weight also read as an activation
            if name and name not in made and name not in ranks:
                entries.add(name)
            elif name in ranks and name not in weights and ranks[name] > 1:
                return None  # a constant of rank 2 or 3 would broadcast differently against rank 4
    outside = [n for n in every if not n.name.startswith(scope)]
    if any(name in weights for n in outside for name in n.inputs):
        return None
    graph_outputs, graph_inputs = (_value_names(graph, number) for number in (GRAPH_OUTPUT, GRAPH_INPUT))
    if weights & graph_inputs:
        return None  # an old file listing its initializers as inputs too: their declared rank would be 3
    exits = {name for n in outside for name in n.inputs if name in made} | (made & graph_outputs)
    constants = {o for n in region if n.op_type == "Constant" for o in n.outputs}
    taken = {name for n in every for name in (*n.inputs, *n.outputs)} | set(ranks) | graph_inputs
    if not entries or not exits or exits & constants or AXES in taken \
            or any(name + "/2d" in taken for name in entries | exits):
        return None
    return Plan(frozenset(n.field.start for n in region), frozenset(weights), frozenset(entries),
                frozenset(exits), frozenset(made))


def _value_names(graph: memoryview, number: int) -> set[str]:
    """The names of the graph's inputs or outputs (ValueInfoProto fields)."""
    return {first_string(graph[f.value_start:f.end], VALUE_INFO_NAME) for f in fields(graph) if f.number == number}


def _small_constant(graph: memoryview, node: Node) -> bool:
    """A Constant of rank 0 or 1 (it broadcasts the same against rank 3 and rank 4)."""
    body = graph[node.field.value_start:node.field.end]
    for f in (f for f in fields(body) if f.number == NODE_ATTRIBUTE):
        attribute = body[f.value_start:f.end]
        for t in (t for t in fields(attribute) if t.number == ATTRIBUTE_T):
            return len(int64s(attribute[t.value_start:t.end], TENSOR_DIMS)) <= 1
    return False


def _lifts(graph: memoryview, node: Node) -> bool:
    """A convolution whose attributes are all ones this rewrite knows (one spatial axis)."""
    body = graph[node.field.value_start:node.field.end]
    for f in (f for f in fields(body) if f.number == NODE_ATTRIBUTE):
        attribute = body[f.value_start:f.end]
        name = first_string(attribute, ATTRIBUTE_NAME)
        expected = {"kernel_shape": 1, "strides": 1, "dilations": 1, "output_padding": 1, "pads": 2}.get(name)
        if expected is None and name not in ("group", "auto_pad"):
            return False  # output_shape, or an attribute of a later opset
        if expected is not None and len(int64s(attribute, ATTRIBUTE_INTS)) != expected:
            return False
    return True


def rewrite(graph: memoryview, found: Plan) -> bytes:
    """The graph with `found` carried out: the new nodes beside the ones they feed, the decoder's value_info
    (shapes of rank 3) left out, the axes constant last; every other field where it was."""
    renamed = {name: name + "/2d" for name in found.entries | found.exits}
    region = {node.field.start: node for node in nodes(graph) if node.field.start in found.region}
    out = bytearray()
    unsqueezed: set[str] = set()
    for f in fields(graph):
        body = graph[f.value_start:f.end]
        if f.number == GRAPH_NODE and f.start in region:
            node = region[f.start]
            for name in node.inputs:
                if name in found.entries and name not in unsqueezed:
                    out += _new_node("Unsqueeze", (name, AXES), renamed[name])
                    unsqueezed.add(name)
            out += length_delimited(GRAPH_NODE, _node_body(body, node, renamed))
            for name in (o for o in node.outputs if o in found.exits):
                out += _new_node("Squeeze", (renamed[name], AXES), name)
        elif f.number == GRAPH_INITIALIZER and first_string(body, TENSOR_NAME) in found.weights:
            out += length_delimited(GRAPH_INITIALIZER, _lifted_weight(body))
        elif f.number == GRAPH_VALUE_INFO and first_string(body, VALUE_INFO_NAME) in found.tensors:
            continue
        else:
            out += graph[f.start:f.end]
    axes = (varint_field(TENSOR_DIMS, 1) + varint_field(TENSOR_DATA_TYPE, INT64)
            + length_delimited(TENSOR_NAME, AXES.encode()) + length_delimited(TENSOR_RAW_DATA, struct.pack("<q", 2)))
    return bytes(out + length_delimited(GRAPH_INITIALIZER, axes))


def _new_node(op_type: str, inputs: Iterable[str], output: str) -> bytes:
    body = b"".join(length_delimited(NODE_INPUT, name.encode()) for name in inputs)
    body += length_delimited(NODE_OUTPUT, output.encode())
    body += length_delimited(NODE_NAME, f"/dec/2d/{op_type}/{output}".encode())
    body += length_delimited(NODE_OP_TYPE, op_type.encode())
    return length_delimited(GRAPH_NODE, body)


def _node_body(body: memoryview, node: Node, renamed: dict[str, str]) -> bytes:
    """A decoder node: its tensors renamed where they cross the border, a convolution's attributes lifted."""
    out = bytearray()
    for f in fields(body):
        if f.number in (NODE_INPUT, NODE_OUTPUT) and f.wire_type == LENGTH_DELIMITED:
            name = bytes(body[f.value_start:f.end]).decode()
            out += length_delimited(f.number, renamed.get(name, name).encode())
        elif f.number == NODE_ATTRIBUTE and node.op_type in CONVS:
            out += length_delimited(NODE_ATTRIBUTE, _lifted_attribute(body[f.value_start:f.end]))
        else:
            out += body[f.start:f.end]
    return bytes(out)


def _lifted_attribute(attribute: memoryview) -> bytes:
    """kernel_shape, strides, dilations: a leading 1 (output_padding: 0); pads [a, b] -> [0, a, 0, b]."""
    name = first_string(attribute, ATTRIBUTE_NAME)
    values = int64s(attribute, ATTRIBUTE_INTS)
    if name in ("kernel_shape", "strides", "dilations"):
        values = [1, *values]
    elif name == "output_padding":
        values = [0, *values]
    elif name == "pads":
        values = [0, values[0], 0, values[1]]
    else:
        return bytes(attribute)
    kept = b"".join(attribute[f.start:f.end] for f in fields(attribute) if f.number != ATTRIBUTE_INTS)
    return kept + b"".join(varint_field(ATTRIBUTE_INTS, v) for v in values)


def _lifted_weight(tensor: memoryview) -> bytes:
    """[out, in, k] -> [out, in, 1, k]: the dims only; the data, row-major, is the same bytes."""
    dims = int64s(tensor, TENSOR_DIMS)
    kept = b"".join(tensor[f.start:f.end] for f in fields(tensor) if f.number != TENSOR_DIMS)
    return b"".join(varint_field(TENSOR_DIMS, d) for d in (*dims[:2], 1, dims[2])) + kept
