"""One typed exchange per task: what the pool sends a host for a task's request, and what it reads back.

An `Operation[Req, Ans]` names a kind of work the tools ask of the pool (embed, similarity, rerank,
BERTScore, its idf counts, speech to text, speech synthesis): the routing task it needs (similarity needs `embed`) and the
model its request names. Each host type registers, per operation it serves, an `Exchange[Req, Ans]`: how
to build the HTTP request (`request`) and how to read and check the host's answer (`answer`, raising
`BadResponse` when it does not fit). The pool asks a host's protocol for the exchange of the call's
operation (`HostProtocol.exchange`); nothing else asks what type a host is.

Adding a task on the bridge: its operation below (one line), and an exchange in each host type that
serves it (one `add` line in its `exchanges()`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast

import httpx

from gpu_protocol.bertscore import (
    BertScoreIdfRequest,
    BertScoreIdfResponse,
    BertScoreRequest,
    BertScoreResponse,
)
from gpu_protocol.embed import EmbedRequest
from gpu_protocol.rerank import RerankRequest, RerankResponse
from gpu_protocol.similarity import SimilarityRequest, SimilarityResponse
from gpu_protocol.speech_synthesis import SpeechRequest
from gpu_protocol.transcribe import VerboseTranscription
from mcp_bridge.protocols.calls import HttpCall
from mcp_bridge.protocols.speech import AudioRequest
from mcp_bridge.protocols.speech_synthesis import SpokenAudio
from mcp_bridge.protocols.vectors import VectorBlock

Task = Literal["embed", "bertscore", "rerank", "transcribe", "speak"]
"""What a tool call needs a host to do (similarity needs `embed`; translation needs `transcribe`)."""

Req = TypeVar("Req")
Ans = TypeVar("Ans")


@dataclass(frozen=True, eq=False)
class Operation(Generic[Req, Ans]):
    """A kind of work the pool is asked for: its routing task, and the model a request of it names."""

    name: str
    task: Task
    model_of: Callable[[Req], str | None]
    missing: str
    """Why a host type without an exchange for it cannot serve it, after `<type> hosts `."""


@dataclass(frozen=True)
class Exchange(Generic[Req, Ans]):
    """One operation with one host: the request it is sent, and the checked answer read from its response."""

    request: Callable[[Req], HttpCall]
    answer: Callable[[httpx.Response, Req], Ans]


class Exchanges:
    """A host type's exchanges, by operation; `add` pairs each operation with an exchange of its own types."""

    def __init__(self) -> None:
        self._table: dict[Operation[Any, Any], Exchange[Any, Any]] = {}

    def add(self, operation: Operation[Req, Ans], request: Callable[[Req], HttpCall],
            answer: Callable[[httpx.Response, Req], Ans]) -> Exchanges:
        self._table[operation] = Exchange(request, answer)
        return self

    def get(self, operation: Operation[Req, Ans]) -> Exchange[Req, Ans] | None:
        # `add` is the only way in, and it takes an exchange of the operation's own types.
        return cast("Exchange[Req, Ans] | None", self._table.get(operation))


EMBED = Operation[EmbedRequest, VectorBlock]("embed", "embed", lambda r: r.model, "do not embed")
SIMILARITY = Operation[SimilarityRequest, SimilarityResponse](
    "similarity", "embed", lambda r: r.model, "do not compute similarities")
RERANK = Operation[RerankRequest, RerankResponse](
    "rerank", "rerank", lambda r: r.model, "do not rerank unless configured with rerank: true")
BERTSCORE = Operation[BertScoreRequest, BertScoreResponse](
    "bertscore", "bertscore", lambda r: r.model_type, "do not compute BERTScore")
BERTSCORE_IDF = Operation[BertScoreIdfRequest, BertScoreIdfResponse](
    "bertscore idf", "bertscore", lambda r: r.model_type, "do not compute BERTScore")
TRANSCRIBE = Operation[AudioRequest, VerboseTranscription](
    "transcribe", "transcribe", lambda r: r.options.model,
    "do not transcribe unless configured with transcribe: true")
SPEAK = Operation[SpeechRequest, SpokenAudio](
    "speak", "speak", lambda r: r.model, "do not speak unless configured with speak: true")
