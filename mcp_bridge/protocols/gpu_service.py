"""Our own GPU service (`gpu-service` hosts): every task, vectors as base64 float32, similarity on the host,
cancellation by request id, and typed /info and /status."""

from __future__ import annotations

import base64
import math
from typing import Any, ClassVar

import httpx

from gpu_protocol import routes
from gpu_protocol.bertscore import (
    BertScoreIdfRequest,
    BertScoreIdfResponse,
    BertScoreRequest,
    BertScoreResponse,
)
from gpu_protocol.codec import check_block
from gpu_protocol.embed import EmbedRequest, EmbedResponse
from gpu_protocol.priority import PRIORITY_HEADER, TENANT_HEADER, Priority
from gpu_protocol.rerank import RerankRequest, RerankResponse
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse
from gpu_protocol.speech_synthesis import SPEECH, SpeechRequest
from gpu_protocol.status import SERVING_STATUSES, InfoResponse, StatusResponse
from gpu_protocol.transcribe import TranscriptionJSONRequest, VerboseTranscription
from mcp_bridge.protocols.answers import BadResponse, check_rerank, host_answer, read_model
from mcp_bridge.protocols.base import HostProtocol, HttpCall, Task
from mcp_bridge.protocols.exchange import (
    BERTSCORE,
    BERTSCORE_IDF,
    EMBED,
    RERANK,
    SIMILARITY,
    SPEAK,
    TRANSCRIBE,
    Exchanges,
)
from mcp_bridge.protocols.speech import AudioRequest, check_transcription
from mcp_bridge.protocols.speech_synthesis import check_speech, service_body
from mcp_bridge.protocols.vectors import VectorBlock


class GpuServiceProtocol(HostProtocol):
    type = "gpu-service"
    tasks: ClassVar[frozenset[Task]] = frozenset({"embed", "bertscore", "rerank", "transcribe", "speak"})
    """Speech synthesis only where its /info lists `speak` (routing.py: 0.4.0 hosts cannot speak)."""
    serves = "every tool"
    default_auth = "x-api-key"
    versioned = True

    def health_call(self) -> HttpCall:
        return HttpCall("GET", routes.HEALTH)

    def sharing_headers(self, priority: Priority | None, tenant: str) -> dict[str, str]:
        """`X-GPU-Priority` when the call's class is decided, `X-GPU-Tenant` when it has a tenant. A 0.4.0
        service knows neither and ignores them (tests/bridge/test_compat.py)."""
        return {**({PRIORITY_HEADER: priority} if priority else {}), **({TENANT_HEADER: tenant} if tenant else {})}

    def deadline_headers(self, seconds: float) -> dict[str, str]:
        """`X-GPU-Timeout`: a 0.4.0 service ignores it and works to its own GPU_REQUEST_TIMEOUT."""
        return routes.timeout_headers(seconds)

    def _serves(self, body: Any) -> bool:
        # It answers 503 while starting or draining; degraded (a default model missing) still serves.
        return isinstance(body, dict) and body.get("status") in SERVING_STATUSES

    def exchanges(self) -> Exchanges:
        return (Exchanges()
                .add(EMBED, self.embed_call, self.parse_embed)
                .add(SIMILARITY, self.similarity_call, self.parse_similarity)
                .add(BERTSCORE, self.bertscore_call, self.parse_bertscore)
                .add(BERTSCORE_IDF, self.bertscore_idf_call, self.parse_bertscore_idf)
                .add(RERANK, self.rerank_call, self.parse_rerank)
                .add(TRANSCRIBE, self.transcribe_call, self.parse_transcription)
                .add(SPEAK, self.speak_call, check_speech))

    # ------------------------------------------------------------------ embeddings

    def embed_call(self, request: EmbedRequest) -> HttpCall:
        body = request.model_copy(update={"encoding_format": "base64"}).model_dump(exclude_none=True)
        return HttpCall("POST", routes.EMBED, body)

    def parse_embed(self, response: httpx.Response, request: EmbedRequest) -> VectorBlock:
        answer = read_model(response, EmbedResponse)
        count = len(request.texts)
        with host_answer():
            block = answer.block()
            check_block(block, count, request.dimensions or answer.dimensions)
        if answer.count != count:
            raise BadResponse(f"answer says count={answer.count} for {count} texts")
        return VectorBlock(block, answer.model, answer.truncated, tokens=answer.tokens or 0)

    # ------------------------------------------------------------------ similarity

    def similarity_call(self, request: SimilarityRequest) -> HttpCall:
        return HttpCall("POST", routes.SIMILARITY, request.model_dump(exclude_none=True))

    def parse_similarity(self, response: httpx.Response, request: SimilarityRequest) -> SimilarityResponse:
        answer = read_model(response, SimilarityResponse)
        check_similarity(answer, request)
        return answer

    # ------------------------------------------------------------------ BERTScore

    def bertscore_call(self, request: BertScoreRequest) -> HttpCall:
        return HttpCall("POST", routes.BERTSCORE, request.model_dump(exclude_none=True))

    def parse_bertscore(self, response: httpx.Response, request: BertScoreRequest) -> BertScoreResponse:
        answer = read_model(response, BertScoreResponse)
        sent = len(request.candidates)
        if not (len(answer.precision) == len(answer.recall) == len(answer.f1) == sent):
            raise BadResponse(f"scores for {len(answer.f1)} pairs, {sent} were sent")
        if not all(math.isfinite(x) for x in (*answer.precision, *answer.recall, *answer.f1)):
            raise BadResponse("non-finite score")
        return answer

    def bertscore_idf_call(self, request: BertScoreIdfRequest) -> HttpCall:
        return HttpCall("POST", routes.BERTSCORE_IDF, request.model_dump(exclude_none=True))

    def parse_bertscore_idf(self, response: httpx.Response, request: BertScoreIdfRequest) -> BertScoreIdfResponse:
        answer = read_model(response, BertScoreIdfResponse)
        if answer.documents != len(request.sentences):
            raise BadResponse(f"counted {answer.documents} sentences, {len(request.sentences)} were sent")
        return answer

    # ------------------------------------------------------------------ reranking

    def rerank_call(self, request: RerankRequest) -> HttpCall:
        # Every document's score (top_n omitted), no echoed texts: the bridge merges the shards.
        body = request.model_copy(update={"top_n": None, "return_documents": False}).model_dump(exclude_none=True)
        return HttpCall("POST", routes.RERANK, body)

    def parse_rerank(self, response: httpx.Response, request: RerankRequest) -> RerankResponse:
        return check_rerank(read_model(response, RerankResponse), request)

    # ------------------------------------------------------------------ speech to text

    def transcribe_call(self, request: AudioRequest) -> HttpCall:
        # The service's JSON body (gpu_protocol.transcribe): base64 audio, no multipart to build.
        options = request.options.model_copy(update={"response_format": "verbose_json"})
        body = TranscriptionJSONRequest(audio=base64.b64encode(request.audio).decode("ascii"),
                                        filename=request.filename, **options.model_dump())
        return HttpCall("POST", request.path, body.model_dump(exclude_none=True))

    def parse_transcription(self, response: httpx.Response, request: AudioRequest) -> VerboseTranscription:
        return check_transcription(read_model(response, VerboseTranscription), request)

    # ------------------------------------------------------------------ speech synthesis

    def speak_call(self, request: SpeechRequest) -> HttpCall:
        return HttpCall("POST", SPEECH, service_body(request))

    # ------------------------------------------------------------------ control and views

    def cancel_call(self, request_id: str) -> HttpCall:
        return HttpCall("POST", routes.cancel_path(request_id))

    def info_call(self) -> HttpCall:
        return HttpCall("GET", routes.INFO)

    def parse_info(self, response: httpx.Response) -> InfoResponse:
        return read_model(response, InfoResponse)

    def status_call(self) -> HttpCall:
        return HttpCall("GET", routes.STATUS)

    def parse_status(self, response: httpx.Response) -> StatusResponse:
        return read_model(response, StatusResponse)


def check_similarity(answer: SimilarityResponse, request: SimilarityRequest) -> None:
    """One score per text (an n x n matrix for mode=matrix), every one a cosine in [-1, 1]."""
    n = len(request.texts)
    if answer.mode != request.mode:
        raise BadResponse(f"answer is for mode={answer.mode}, mode={request.mode} was asked")
    if request.mode == "matrix":
        rows = answer.matrix or []
        if len(rows) != n or any(len(row) != n for row in rows):
            raise BadResponse(f"matrix is not {n} x {n}")
        numbers = [x for row in rows for x in row]
    else:
        numbers = answer.scores or []
        if len(numbers) != n:
            raise BadResponse(f"{len(numbers)} scores for {n} texts")
    if not all(math.isfinite(x) and -1.001 <= x <= 1.001 for x in numbers):
        raise BadResponse("a similarity outside [-1, 1]")
