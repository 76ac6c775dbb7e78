"""What a task returns to the front ends: the merged answer, the hosts that computed it, and how long it took.

Vectors stay a numpy block (`VectorBlock`) until a caller asks for lists of floats."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from gpu_protocol.bertscore import BertScoreResponse
from gpu_protocol.rerank import RerankResponse
from gpu_protocol.similarity import SimilarityResponse
from gpu_protocol.transcribe import VerboseTranscription
from mcp_bridge.protocols.vectors import VectorBlock


@dataclass
class EmbedResult:
    block: VectorBlock
    """The vectors, in input order, as computed (numpy)."""
    seconds: float

    @property
    def model(self) -> str:
        return self.block.model

    @property
    def dimensions(self) -> int:
        return self.block.dimensions

    @property
    def count(self) -> int:
        return len(self.block)

    @property
    def hosts(self) -> list[str]:
        return list(self.block.hosts)

    @property
    def truncated(self) -> int:
        return self.block.truncated

    @property
    def tokens(self) -> int:
        """Tokens the models read, as the hosts report them (a host that reports none adds 0)."""
        return self.block.tokens

    @cached_property
    def embeddings(self) -> list[list[float]]:
        """The vectors as lists of floats (made on first use: callers that encode them need not)."""
        return self.block.rows()


@dataclass
class ScoreResult:
    response: BertScoreResponse
    hosts: list[str]
    seconds: float


@dataclass
class SimilarityResult:
    response: SimilarityResponse
    hosts: list[str]
    seconds: float


@dataclass
class RerankOutcome:
    """The merged ranking and where it was computed."""

    response: RerankResponse
    hosts: list[str]
    seconds: float


@dataclass
class TranscribeOutcome:
    transcription: VerboseTranscription
    """Segments (and words when asked) on the recording's clock, whatever parts it was cut into."""
    hosts: list[str]
    parts: int
    """1: sent whole; more: cut at silences and transcribed on several hosts at once."""
    seconds: float
