"""A transcript in each of OpenAI's response formats (json, text, srt, vtt, verbose_json): the service's transcript
as the wire's `VerboseTranscription`, rendered by the rule the bridge uses too (`gpu_protocol.transcribe.rendered`)."""

from __future__ import annotations

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from gpu_protocol.transcribe import (
    TranscriptionSegment,
    TranscriptionWord,
    VerboseTranscription,
    rendered,
)
from gpu_service.runtime.result import Result
from gpu_service.tasks.transcribe.service import Transcript


def verbose(result: Result[Transcript], words: bool) -> VerboseTranscription:
    transcript = result.value
    segments = [
        TranscriptionSegment(
            id=s.id - 1, seek=s.seek, start=s.start, end=s.end, text=s.text, tokens=list(s.tokens),
            temperature=s.temperature or 0.0, avg_logprob=s.avg_logprob, compression_ratio=s.compression_ratio,
            no_speech_prob=s.no_speech_prob,
        )
        for s in transcript.segments
    ]
    word_list = None
    if words:
        word_list = [
            TranscriptionWord(word=w.word, start=round(w.start, 3), end=round(w.end, 3), probability=w.probability)
            for s in transcript.segments for w in (s.words or [])
        ]
    return VerboseTranscription(
        task="translate" if transcript.task == "translate" else "transcribe", language=transcript.language,
        duration=transcript.duration, text=transcript.text, model=result.model, segments=segments,
        words=word_list,
    )


def render(result: Result[Transcript], response_format: str, words: bool) -> Response:
    body, media_type = rendered(verbose(result, words), response_format)
    return PlainTextResponse(body, media_type=media_type) if isinstance(body, str) else JSONResponse(body)
