"""The wire schema of reranking: `POST /v1/rerank` (Cohere's v1 and Jina's shape), `POST /v2/rerank` (Cohere's v2,
what `cohere.ClientV2.rerank` sends) and `POST /rerank` (TEI's).

Like every module of the protocol, importable without torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gpu_protocol.base import AnswerModel, ModelName, StrictModel
from gpu_protocol.validation import check_not_blank, check_text


class RerankedDocument(AnswerModel):
    """A document as an answer echoes it (read tolerantly)."""

    text: str


class RerankDocument(RerankedDocument):
    """A document as a request gives it (read strictly)."""

    model_config = StrictModel.model_config


def _query_not_blank(query: str) -> str:
    return check_text(query, "query")


class RerankRequest(StrictModel):
    """Cohere's and Jina's rerank request: score every document against the query with a cross-encoder."""

    model: ModelName | None = Field(default=None, description="Reranker; the service's MODEL_RERANK when omitted.")
    query: str = Field(description="The text to rank the documents against.")
    documents: list[str | RerankDocument] = Field(
        min_length=1, description='Documents to rank: strings or `{"text": ...}` objects.'
    )
    top_n: int | None = Field(default=None, ge=1, description="Results to return, best first; all when omitted.")
    return_documents: bool = Field(default=False, description="Echo each result's document text.")

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        return _query_not_blank(v)

    @field_validator("documents")
    @classmethod
    def _documents(cls, v: list[str | RerankDocument]) -> list[str | RerankDocument]:
        check_not_blank([d if isinstance(d, str) else d.text for d in v], "documents")
        return v

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankResult(AnswerModel):
    index: int = Field(description="Position in `documents`.")
    relevance_score: float = Field(description="0 to 1: the sigmoid of the cross-encoder's logit.")
    document: RerankedDocument | None = Field(default=None, description="With return_documents=true.")


class RerankUsage(AnswerModel):
    total_tokens: int = Field(description="Tokens of the (query, document) pairs the model read.")


class RerankResponse(AnswerModel):
    results: list[RerankResult] = Field(description="Best first by the model's logit; ties in input order.")
    model: str
    usage: RerankUsage
    truncated: int = Field(description="Pairs cut at the model's maximum length.")


class TEIRerankRequest(StrictModel):
    """text-embeddings-inference's `/rerank` request (plus an optional `model`)."""

    query: str
    texts: list[str] = Field(min_length=1, description="Texts to rank against the query.")
    raw_scores: bool = Field(default=False, description="Scores are the model's logits instead of their sigmoid.")
    return_text: bool = Field(default=False, description="Echo each hit's text.")
    truncate: bool = Field(
        default=False, description="Cut pairs longer than the model's maximum; when false such a pair is an error."
    )
    truncation_direction: Literal["right", "Right"] = Field(
        default="right", description="Only right truncation (the end of the pair is cut) is supported."
    )
    model: ModelName | None = Field(default=None, description="Reranker; the service's MODEL_RERANK when omitted.")

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        return _query_not_blank(v)

    @field_validator("texts")
    @classmethod
    def _texts(cls, v: list[str]) -> list[str]:
        return check_not_blank(v, "texts")


class TEIRerankHit(AnswerModel):
    index: int = Field(description="Position in `texts`.")
    score: float
    text: str | None = None


class RerankV2Request(StrictModel):
    """Cohere's v2 rerank request (`cohere.ClientV2.rerank`): documents are strings, and each may be cut to
    `max_tokens_per_doc` tokens before it is scored."""

    model: ModelName | None = Field(default=None, description="Reranker; the service's MODEL_RERANK when omitted.")
    query: str = Field(description="The text to rank the documents against.")
    documents: list[str] = Field(min_length=1, description="Texts to rank against the query.")
    top_n: int | None = Field(default=None, ge=1, description="Results to return, best first; all when omitted.")
    max_tokens_per_doc: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Each document is cut to this many tokens before it is paired with the query (the pair is "
        "still cut at the model's maximum length). Cohere's default is 4096, above any model served here.",
    )
    priority: int | None = Field(default=None, ge=0, description="Accepted for Cohere's clients, not used.")

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        return _query_not_blank(v)

    @field_validator("documents")
    @classmethod
    def _documents(cls, v: list[str]) -> list[str]:
        return check_not_blank(v, "documents")


class RerankV2Result(AnswerModel):
    index: int = Field(description="Position in `documents`.")
    relevance_score: float = Field(description="0 to 1: the sigmoid of the cross-encoder's logit.")


class RerankV2ApiVersion(AnswerModel):
    version: str


class RerankV2Tokens(AnswerModel):
    input_tokens: float | None = Field(default=None, description="Tokens of the (query, document) pairs read.")


class RerankV2Meta(AnswerModel):
    api_version: RerankV2ApiVersion | None = None
    tokens: RerankV2Tokens | None = None
    warnings: list[str] | None = Field(default=None, description="E.g. how many pairs were cut.")


class RerankV2Response(AnswerModel):
    """Cohere's v2 rerank answer (`V2RerankResponse`): results best first, an id, and meta."""

    id: str = Field(description="This answer's id (the request's X-Request-Id when it sent one).")
    results: list[RerankV2Result] = Field(description="Best first by the model's logit; ties in input order.")
    meta: RerankV2Meta


def v2_meta(tokens: int, warnings: list[str]) -> RerankV2Meta:
    """The `meta` of a v2 answer: Cohere's API version, the tokens read, and warnings (None when none)."""
    return RerankV2Meta(api_version=RerankV2ApiVersion(version="2"), tokens=RerankV2Tokens(input_tokens=tokens),
                        warnings=warnings or None)


def truncation_warning(truncated: int) -> list[str]:
    """The warning a v2 answer carries when pairs were cut at the model's maximum length."""
    return [f"{truncated} (query, document) pair(s) were cut at the model's maximum length"] if truncated else []
