"""The wire rules of text to speech (gpu_protocol/speech_synthesis.py): OpenAI's request, refused with
messages that name what is allowed, the server-sent events, and the sentence splitter."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gpu_protocol.speech_synthesis import (
    CONTENT_TYPES,
    MAX_INPUT_CHARS,
    OPENAI_VOICES,
    PCM_RATE,
    RESPONSE_FORMATS,
    SpeechRequest,
    split_sentences,
    sse_delta,
    sse_done,
)


def test_openais_request_reads_with_its_defaults() -> None:
    request = SpeechRequest.model_validate({"model": "tts-1", "input": "Hello.", "voice": "alloy"})
    assert (request.model, request.response_format, request.speed, request.stream_format) == (None, "mp3", 1.0, "audio")
    request = SpeechRequest.model_validate({"model": "en_US-joe-medium", "input": "Hi", "voice": "en_US-joe-medium",
                                            "response_format": "pcm", "speed": 4.0, "stream_format": "sse"})
    assert (request.model, request.response_format, request.speed) == ("en_US-joe-medium", "pcm", 4.0)
    assert len(OPENAI_VOICES) == 11 and "alloy" in OPENAI_VOICES and PCM_RATE == 24_000
    assert set(CONTENT_TYPES) == set(RESPONSE_FORMATS) and CONTENT_TYPES["mp3"] == "audio/mpeg"


@pytest.mark.parametrize(("change", "named"), [
    ({"input": ""}, "input"),
    ({"input": "  \n "}, "input is blank"),
    ({"input": "a" * (MAX_INPUT_CHARS + 1)}, "4096"),
    ({"response_format": "ogg"}, "'mp3', 'opus', 'aac', 'flac', 'wav' or 'pcm'"),
    ({"speed": 0.2}, "0.25"),
    ({"speed": 4.5}, "4"),
    ({"stream_format": "chunks"}, "'audio' or 'sse'"),
    ({"voice": ""}, "voice"),
    ({"temperature": 0.3}, "Extra inputs are not permitted"),
])
def test_a_bad_request_is_refused_naming_what_is_allowed(change: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as refused:
        SpeechRequest.model_validate({"input": "Hello.", "voice": "alloy", **change})
    assert named in str(refused.value)


def test_the_events_are_openais() -> None:
    delta = sse_delta(b"\x00\x01audio")
    assert delta.startswith(b"data: ") and delta.endswith(b"\n\n")
    event = json.loads(delta[len(b"data: "):])
    assert event["type"] == "speech.audio.delta" and base64.b64decode(event["audio"]) == b"\x00\x01audio"
    assert json.loads(sse_done(12)[len(b"data: "):])["type"] == "speech.audio.done"


def test_sentences_are_cut_at_their_ends_and_long_ones_at_commas() -> None:
    text = "Hello there. How are you?  Fine, thanks!\n\nA heading\nThe end"
    assert split_sentences(text) == ["Hello there.", "How are you?", "Fine, thanks!", "A heading", "The end"]
    assert split_sentences("one two three, four five six seven, eight nine ten eleven.", 20) == [
        "one two three,", "four five six seven,", "eight nine ten", "eleven."]
    assert split_sentences('He said "Stop." Then left.') == ['He said "Stop."', "Then left."]
    with pytest.raises(ValueError):
        split_sentences("x", 0)


def _squeezed(text: str) -> str:
    return "".join(text.split())


_WORDS = st.text(st.sampled_from("abcdefgh  ,.;!?\n\t\u2026\u2014\"'"), max_size=300)


@settings(max_examples=300, deadline=None)
@given(text=_WORDS, max_chars=st.integers(min_value=1, max_value=80))
def test_splitting_keeps_every_character_in_order_within_the_limit(text: str, max_chars: int) -> None:
    pieces = split_sentences(text, max_chars)
    assert _squeezed("".join(pieces)) == _squeezed(text)
    assert all(p and p == p.strip() and len(p) <= max_chars for p in pieces)


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.text(st.sampled_from("abcdefghij"), min_size=1, max_size=12), min_size=1, max_size=60),
       max_chars=st.integers(min_value=12, max_value=60))
def test_no_word_is_cut_that_fits(words: list[str], max_chars: int) -> None:
    pieces = split_sentences(" ".join(words), max_chars)
    assert [w for p in pieces for w in p.split()] == words
