"""Float audio -> each response_format (gpu_service/tasks/speak/encode.py), decoded back with PyAV: the right
rate and duration, one header for a whole stream, bytes out as each chunk is encoded, pcm at 24 kHz."""

from __future__ import annotations

import io
import struct
import wave

import av
import numpy as np
import pytest

from gpu_protocol.speech_synthesis import OPUS_RATE, STREAMING_SIZE, wav_header
from gpu_service.tasks.speak.encode import AudioEncoder, encode_audio, stream_audio

RATE = 22_050


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def decoded(data: bytes) -> tuple[int, float, np.ndarray]:
    """(rate, seconds, samples) of a file, as PyAV reads it."""
    with av.open(io.BytesIO(data)) as container:
        rate = container.streams.audio[0].rate
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return rate, len(samples) / rate, samples


@pytest.mark.parametrize(("response_format", "rate", "slack_s"), [
    ("mp3", RATE, 0.1), ("opus", OPUS_RATE, 0.03), ("aac", RATE, 0.1), ("flac", RATE, 0.001), ("wav", RATE, 0.001),
])
def test_each_format_decodes_to_the_audio_it_was_given(response_format: str, rate: int, slack_s: float) -> None:
    chunks = [tone(1.0), tone(0.5, 330.0), tone(0.75)]
    data = encode_audio(chunks, response_format, RATE)
    got_rate, seconds, samples = decoded(data)
    given_s = sum(len(c) for c in chunks) / RATE
    assert got_rate == rate and given_s - 0.001 <= seconds <= given_s + slack_s, (response_format, seconds)
    level = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) / (32768 if samples.dtype == np.int16 else 1)
    assert 0.18 < level < 0.25  # the tones' level (0.3 peak: 0.21 RMS), whatever the codec


def test_pcm_is_24khz_s16le_without_a_header() -> None:
    data = encode_audio([tone(1.0), tone(1.0)], "pcm", RATE)
    assert abs(len(data) / 2 / 24_000 - 2.0) < 0.002
    samples = np.frombuffer(data, dtype="<i2")
    peak = np.abs(samples[1000:-1000]).max()
    assert 0.27 * 32767 < peak < 0.33 * 32767  # the tone's level survives resampling; no header bytes in front
    zero_crossings = np.count_nonzero(np.diff(np.signbit(samples[:24_000])))
    assert 870 < zero_crossings < 890  # 440 Hz: 880 crossings a second at the 24 kHz clock


def test_a_whole_wav_has_one_header_with_its_length_and_a_stream_the_streaming_sizes() -> None:
    whole = encode_audio([tone(0.5), tone(0.5)], "wav", RATE)
    with wave.open(io.BytesIO(whole)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getnframes()) == (RATE, 2, 1, RATE)
    assert whole.count(b"RIFF") == 1 and struct.unpack("<I", whole[4:8])[0] == len(whole) - 8
    streamed = b"".join(stream_audio([tone(0.5), tone(0.5)], "wav", RATE))
    assert streamed.count(b"RIFF") == 1 and streamed[44:] == whole[44:]
    assert struct.unpack("<I", streamed[4:8])[0] == STREAMING_SIZE == struct.unpack("<I", streamed[40:44])[0]
    assert decoded(streamed)[1] == pytest.approx(1.0)
    assert wav_header(RATE, None) == streamed[:44] and len(wav_header(RATE, 10)) == 44


@pytest.mark.parametrize("response_format", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_a_stream_gives_bytes_as_each_sentence_is_encoded(response_format: str) -> None:
    encoder = AudioEncoder(response_format, RATE)
    first = encoder.encode(tone(1.5))
    assert len(first) > 1000, "the first sentence's audio must not wait for the second"
    rest = encoder.encode(tone(1.5, 330.0)) + encoder.finish()
    if response_format == "pcm":
        assert abs(len(first + rest) / 2 / 24_000 - 3.0) < 0.002
    else:
        assert decoded(first + rest)[1] == pytest.approx(3.0, abs=0.1)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="mp3, opus, aac, flac, wav, pcm"):
        AudioEncoder("ogg", RATE)
