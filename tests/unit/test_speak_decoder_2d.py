"""The decoder lifted to 2-D convolutions (decoder_2d.py): the bundled voice's real graph, rewritten without
the `onnx` package, answers the audio the shipped graph answers; graphs it is not sure of are left alone; and
an engine whose lifted graph fails or answers other audio runs the voice as shipped."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime
import pytest

from gpu_service.tasks.speak import engine as engine_module
from gpu_service.tasks.speak.decoder_2d import decoder_as_2d
from gpu_service.tasks.speak.engine import Noise, PiperEngine, Utterance, model_feeds
from gpu_service.tasks.speak.onnx_graph import (
    GRAPH_INITIALIZER,
    GRAPH_INPUT,
    GRAPH_NODE,
    NODE_DOMAIN,
    NODE_NAME,
    NODE_OP_TYPE,
    NotAProtobuf,
    fields,
    graph_field,
    length_delimited,
    with_extra_output,
    with_graph,
)
from gpu_service.tasks.speak.voices import VoiceFiles, load_config
from tests.support.piper_voice import FOX, HELLO


@pytest.fixture(scope="module")
def shipped(voice: VoiceFiles) -> bytes:
    patched = with_extra_output(voice.model.read_bytes())  # as the engine loads it: durations exposed
    assert patched is not None
    return patched[0]


def _session(model: bytes) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _feeds(voice: VoiceFiles, *phonemes: str) -> dict[str, np.ndarray]:
    """The sentences (written phonemes) in one padded batch at the voice's pace, without randomness."""
    config = load_config(voice)
    utterances = [Utterance(tuple(config.ids(list(p)))) for p in phonemes]
    return model_feeds(utterances, config.length_scale, Noise(0.0, 0.0), ())


def test_the_lifted_graph_answers_the_shipped_audio_and_durations(voice: VoiceFiles, shipped: bytes) -> None:
    lifted = decoder_as_2d(shipped)
    assert lifted is not None and lifted != shipped
    names = [o.name for o in _session(shipped).get_outputs()]
    expected = _session(shipped).run(names, _feeds(voice, FOX, HELLO))
    answered = _session(lifted).run(names, _feeds(voice, FOX, HELLO))
    assert [a.shape for a in answered] == [e.shape for e in expected] and expected[0].shape[0] == 2
    assert np.abs(expected[0]).max() > 0.05  # speech, not silence
    assert np.abs(answered[0] - expected[0]).max() < 1e-4
    assert np.array_equal(answered[1], expected[1])  # the durations come before the decoder: untouched


def _with_graph_field(model: bytes, field: bytes) -> bytes:
    """`model` with one more field at the end of its graph (a node, an input)."""
    view = memoryview(model)
    graph = graph_field(view)
    assert graph is not None
    return with_graph(view, graph, bytes(view[graph.value_start:graph.end]) + field)


def _node(name: str, op_type: str, domain: str = "") -> bytes:
    body = length_delimited(NODE_NAME, name.encode()) + length_delimited(NODE_OP_TYPE, op_type.encode())
    return length_delimited(GRAPH_NODE, body + (length_delimited(NODE_DOMAIN, domain.encode()) if domain else b""))


def test_graphs_it_is_not_sure_of_are_left_alone(shipped: bytes) -> None:
    assert decoder_as_2d(shipped) is not None
    assert decoder_as_2d(shipped, scope="/no-such-scope/") is None
    assert decoder_as_2d(shipped, scope="/") is None  # the whole graph: Reshape, Slice... care about ranks
    assert decoder_as_2d(shipped, scope="/dp/") is None  # the duration predictor: not only convolutions
    assert decoder_as_2d(b"") is None
    lifted = decoder_as_2d(shipped)
    assert lifted is not None and decoder_as_2d(lifted) is None  # lifted once only
    # A subgraph anywhere could read a decoder tensor by name; an operator of another domain is not ONNX's Add;
    # an old file that lists its weights as graph inputs too declares them rank 3.
    assert decoder_as_2d(_with_graph_field(shipped, _node("/elsewhere/If", "If"))) is None
    assert decoder_as_2d(_with_graph_field(shipped, _node("/dec/custom", "Add", domain="com.example"))) is None
    weight_input = length_delimited(GRAPH_INPUT, length_delimited(1, b"dec.conv_pre.weight"))
    assert decoder_as_2d(_with_graph_field(shipped, weight_input)) is None


def _negated_weight(model: bytes, name: bytes) -> bytes:
    """`model` with one float initializer's values negated (its raw data's sign bits flipped)."""
    data = bytearray(model)
    graph = graph_field(memoryview(model))
    assert graph is not None
    for f in fields(memoryview(data)[graph.value_start:graph.end]):
        body = bytes(data[graph.value_start + f.value_start:graph.value_start + f.end])
        if f.number == GRAPH_INITIALIZER and name in body[:200]:
            raw = next(r for r in fields(body) if r.number == 9)  # TensorProto.raw_data
            start = graph.value_start + f.value_start + raw.value_start
            for sign in range(start + 3, graph.value_start + f.value_start + raw.end, 4):
                data[sign] ^= 0x80
            return bytes(data)
    raise AssertionError(f"no initializer {name!r}")


@pytest.mark.parametrize("lifted", ["unreadable", "broken", "other audio"])
def test_an_engine_runs_the_shipped_graph_when_the_lifted_one_is_wrong(voice: VoiceFiles, shipped: bytes, lifted: str,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    def rewrite(graph: bytes) -> bytes | None:
        good = decoder_as_2d(graph)
        assert good is not None
        if lifted == "unreadable":
            raise NotAProtobuf("truncated varint")  # the reader meeting bytes it cannot parse
        return b"\x0a\x03not onnx" if lifted == "broken" else _negated_weight(good, b"dec.conv_post.weight")

    monkeypatch.setattr(engine_module, "decoder_as_2d", rewrite)
    with caplog.at_level(logging.WARNING, logger=engine_module.__name__):
        engine = PiperEngine(voice, noise=Noise(0.0, 0.0), batch_calls=False)
    assert not engine.decoder_lifted
    assert ("answered other audio" if lifted == "other audio" else "the lifted decoder failed") in caplog.text
    answered = engine._call([engine.utterance(list(HELLO))], 1.0)[0][0]
    expected = _session(shipped).run(["output"], _feeds(voice, HELLO))[0].reshape(-1)
    assert answered.shape == expected.shape and np.abs(answered - expected).max() < 1e-4


def test_an_engine_on_a_cpu_lifts_the_bundled_voice(voice: VoiceFiles) -> None:
    engine = PiperEngine(voice, noise=Noise(0.0, 0.0), batch_calls=False)
    assert engine.decoder_lifted and engine.device == "CPUExecutionProvider"
