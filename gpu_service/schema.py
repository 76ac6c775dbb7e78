"""The wire schema: every request and response body of the GPU service.

Both sides import this module: the service validates requests with it and the
bridge builds requests and parses responses with it, so the contract cannot
drift. It must stay importable without torch (the bridge installs without it),
which a test checks.

Limits live here too (`Limits`), so the bridge can refuse a bad call with the
same numbers the service would use, before it leaves the agent's machine.
"""

from __future__ import annotations

import base64
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from gpu_service.validation import check_not_blank


@dataclass(frozen=True)
class Limits:
    """Hard limits of one request. The service reads overrides from its environment."""

    max_texts: int = 4096
    """Texts (or candidate/reference pairs) in one request; more gets 413."""
    max_text_chars: int = 32_768
    """Characters in one text; more gets 422."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Request body size; more gets 413 before the body is parsed."""


DEFAULT_LIMITS = Limits()

ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="Model name, e.g. `all-MiniLM-L6-v2` or `sentence-transformers/all-MiniLM-L6-v2`.",
    ),
]


class _Strict(BaseModel):
    """Unknown fields are an error: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- health / info


ServiceStatus = Literal["ok", "degraded", "starting", "draining"]
"""ok: serving. degraded: serving, but a default model failed to load (`problems` says which and why).
starting/draining: not serving (503)."""

SERVING_STATUSES: tuple[str, ...] = ("ok", "degraded")
"""Statuses in which a host serves requests: /health answers 200 and the bridge routes to it."""


class HealthResponse(_Strict):
    status: ServiceStatus
    device: str
    problems: list[str] = Field(
        default_factory=list, description="Why the service is degraded, e.g. a default model that is not loaded."
    )


ModelKind = Literal["embed", "bertscore", "rerank"]


class ModelInfo(_Strict):
    name: str
    kind: ModelKind
    memory_mb: float
    in_use: int = 0
    default: bool = False
    last_used_s_ago: float | None = None
    dimensions: int | None = Field(default=None, description="Embedding models: the vector width.")
    max_tokens: int | None = Field(default=None, description="Embedding models: tokens read per text; the rest is cut.")
    prompts: list[str] | None = Field(
        default=None, description="Embedding models: the prompts the model defines that add text (prompt_name/input_type)."
    )


class InfoResponse(_Strict):
    device: str
    device_name: str
    vram_total_mb: float | None = None
    vram_free_mb: float | None = None
    half_precision: bool = Field(default=False, description="Embedding models run in fp16 (GPU_FP16).")
    torch_version: str
    cuda_version: str | None = None
    rocm_version: str | None = None
    default_models: dict[str, str | None]
    """The model each task uses when a request names none; `rerank` is null until MODEL_RERANK is set."""
    allowed_models: list[str] | Literal["*"]
    models: list[ModelInfo]
    limits: dict[str, int]


class JobStatus(_Strict):
    id: str
    kind: ModelKind
    model: str
    done: int
    total: int
    age_s: float


class StatusResponse(_Strict):
    status: ServiceStatus
    problems: list[str] = Field(default_factory=list, description="As in /health.")
    uptime_s: float
    queue_depth: int
    """Items (texts or pairs) waiting to be run, over all models."""
    active_jobs: list[JobStatus]
    models: list[ModelInfo]
    batches: dict[str, int]
    """Batches run so far, per model."""


# --------------------------------------------------------------------------- embeddings


InputType = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="What the texts are, e.g. `query` or `document`: the model's prompt of that name is used "
        "when the model defines one, and nothing otherwise (unlike prompt_name, an unknown name is no error). "
        "prompt_name and prompt take precedence.",
    ),
]


class EmbedRequest(_Strict):
    texts: list[str] = Field(min_length=1, description="Texts to embed, in order.")
    model: ModelName | None = Field(default=None, description="Model; the service default when omitted.")
    normalize: bool = Field(default=True, description="L2-normalise each vector (cosine = dot product).")
    dimensions: int | None = Field(
        default=None, ge=1, description="Matryoshka truncation to this many dimensions (renormalised)."
    )
    prompt_name: str | None = Field(default=None, description="Name of a prompt the model defines, e.g. `query`.")
    prompt: str | None = Field(default=None, max_length=2000, description="Literal text prepended to each input.")
    input_type: InputType | None = None
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="`base64`: one little-endian float32 blob, rows in input order."
    )

    @field_validator("texts")
    @classmethod
    def _texts_not_blank(cls, v: list[str]) -> list[str]:
        return check_not_blank(v, "texts")


class EmbedResponse(_Strict):
    model: str
    dimensions: int
    count: int
    truncated: int = Field(description="How many inputs were cut at the model's maximum length.")
    embeddings: list[list[float]] | None = None
    embeddings_base64: str | None = Field(
        default=None, description="Set instead of `embeddings` when encoding_format is base64."
    )
    tokens: int | None = Field(
        default=None, description="Tokens the model read, special tokens included, after truncation."
    )

    def vectors(self) -> list[list[float]]:
        """The embeddings as lists of floats, whichever encoding the service used."""
        if self.embeddings is not None:
            return self.embeddings
        if self.embeddings_base64 is None:
            raise ValueError("response carries neither embeddings nor embeddings_base64")
        return decode_float32_rows(self.embeddings_base64, self.count, self.dimensions)


def encode_float32_rows(rows_le_bytes: bytes) -> str:
    """Base64 of an already little-endian float32 buffer."""
    return base64.b64encode(rows_le_bytes).decode("ascii")


def decode_float32_rows(blob: str, count: int, dimensions: int) -> list[list[float]]:
    """Decode `count` rows of `dimensions` little-endian float32 values; the sizes must match exactly."""
    raw = base64.b64decode(blob, validate=True)
    if len(raw) != count * dimensions * 4:
        raise ValueError(
            f"embeddings_base64 holds {len(raw)} bytes, expected {count} x {dimensions} x 4 = {count * dimensions * 4}"
        )
    flat = struct.unpack(f"<{count * dimensions}f", raw)
    return [list(flat[i * dimensions : (i + 1) * dimensions]) for i in range(count)]


# --------------------------------------------------------------------------- BERTScore


class BertScoreModelChoice(_Strict):
    """Which model scores: the fields a BERTScore request and an idf request share."""

    lang: str | None = Field(
        default=None,
        max_length=16,
        description="Language code. Picks bert-score's default model for that language when no model is given, "
        "and the baseline file for rescale_with_baseline.",
    )
    model_type: ModelName | None = Field(
        default=None,
        validation_alias=AliasChoices("model_type", "model"),
        description="Model; `model` is accepted as an alias. The service default when omitted.",
    )
    num_layers: int | None = Field(
        default=None, ge=0, le=128, description="Layer whose hidden states are compared; bert-score's table when omitted."
    )


class IdfCounts(_Strict):
    """Document frequencies over a set of sentences: what bert-score's idf is computed from,
    idf(token) = log((documents + 1) / (counts[token] + 1)), over the model tokenizer's ids.

    Counts of separate chunks add up (`merge`), so the idf of any number of sentences, counted
    on any number of hosts, is one table: the same as one `BERTScorer(idf_sents=...)` computes."""

    documents: int = Field(ge=1, description="Sentences counted.")
    counts: dict[int, int] = Field(description="Token id -> how many of the sentences contain it.")

    @model_validator(mode="after")
    def _counts_fit(self) -> IdfCounts:
        for token, count in self.counts.items():
            if token < 0 or not 1 <= count <= self.documents:
                raise ValueError(
                    f"counts[{token}] = {count}: token ids are >= 0 and each count is between 1 and "
                    f"documents ({self.documents})"
                )
        return self

    @classmethod
    def merge(cls, parts: Iterable[IdfCounts]) -> IdfCounts:
        counts: Counter[int] = Counter()
        documents = 0
        for part in parts:
            counts.update(part.counts)
            documents += part.documents
        return cls(documents=documents, counts=dict(counts))


class BertScoreRequest(BertScoreModelChoice):
    candidates: list[str] = Field(min_length=1, description="Candidate texts (e.g. model outputs).")
    references: list[str] = Field(min_length=1, description="Reference texts, one per candidate.")
    idf: bool = Field(default=False, description="Weight tokens by inverse document frequency.")
    idf_sentences: list[str] | None = Field(
        default=None,
        description="Sentences to compute idf from (with idf=true); the references when omitted.",
    )
    idf_counts: IdfCounts | None = Field(
        default=None,
        description="With idf=true: document frequencies to compute idf from, e.g. merged from `/bertscore/idf` "
        "answers for more sentences than one request takes. Instead of idf_sentences.",
    )
    rescale_with_baseline: bool = Field(default=False, description="Rescale with bert-score's baseline file.")

    @field_validator("candidates", "references")
    @classmethod
    def _not_blank(cls, v: list[str], info: object) -> list[str]:
        return check_not_blank(v, getattr(info, "field_name", "texts"))

    @model_validator(mode="after")
    def _one_reference_per_candidate(self) -> BertScoreRequest:
        if len(self.candidates) != len(self.references):
            raise ValueError(
                f"candidates has {len(self.candidates)} texts but references has {len(self.references)}: they "
                "pair up one to one, so give exactly one reference per candidate (the lengths must match)"
            )
        return self

    @model_validator(mode="after")
    def _one_idf_source(self) -> BertScoreRequest:
        given = [name for name in ("idf_sentences", "idf_counts") if getattr(self, name) is not None]
        if given and not self.idf:
            raise ValueError(f"{given[0]} is only used with idf=true")
        if len(given) > 1:
            raise ValueError("give idf_sentences or idf_counts, not both")
        return self


class BertScoreIdfRequest(BertScoreModelChoice):
    """`POST /bertscore/idf`: count, for idf, the sentences of one chunk (at most the service's max_texts)."""

    sentences: list[str] = Field(min_length=1, description="Sentences to count tokens in (typically references).")


class BertScoreIdfResponse(IdfCounts):
    model: str


class ScoreMeans(_Strict):
    precision: float
    recall: float
    f1: float


class BertScoreResponse(_Strict):
    precision: list[float]
    recall: list[float]
    f1: list[float]
    mean: ScoreMeans
    model: str
    num_layers: int
    hash: str = Field(description="bert-score's hash of the settings, for reproducible reporting.")
    truncated: int = Field(description="Texts cut at the model's maximum length (512 tokens for most).")


# --------------------------------------------------------------------------- similarity

SIMILARITY_MATRIX_MAX = 64
"""Texts in one `matrix` request: the answer grows with the square."""
SIMILARITY_TOP_K_MAX = 1000

SimilarityMode = Literal["pairs", "query", "matrix"]


class SimilarityRequest(_Strict):
    """Cosine similarities of texts, computed where the vectors are, so they never travel."""

    mode: SimilarityMode | None = Field(
        default=None,
        description="pairs: texts[i] vs texts_b[i]. query: `query` vs every text, ranked. "
        f"matrix: every text vs every text (at most {SIMILARITY_MATRIX_MAX}). When omitted it follows from the "
        "other fields: query if `query` is given, pairs if `texts_b` is, else matrix.",
    )
    texts: list[str] = Field(min_length=1, description="The texts (mode=query: the documents to rank).")
    texts_b: list[str] | None = Field(default=None, description="mode=pairs: the second text of each pair.")
    query: str | None = Field(default=None, description="mode=query: the text to rank `texts` against.")
    top_k: int = Field(default=10, ge=1, le=SIMILARITY_TOP_K_MAX, description="mode=query: matches to return.")
    model: ModelName | None = Field(default=None, description="Embedding model; the service default when omitted.")

    @field_validator("texts", "texts_b")
    @classmethod
    def _not_blank(cls, v: list[str] | None, info: object) -> list[str] | None:
        return None if v is None else check_not_blank(v, getattr(info, "field_name", "texts"))

    @model_validator(mode="after")
    def _fits_mode(self) -> SimilarityRequest:
        inferred = self.mode is None
        if self.mode is None:
            if self.query is not None and self.texts_b is not None:
                raise ValueError("give `query` (rank texts against it) or `texts_b` (score pairs), not both")
            self.mode = "query" if self.query is not None else "pairs" if self.texts_b is not None else "matrix"
        if self.mode == "pairs":
            if self.texts_b is None or len(self.texts_b) != len(self.texts):
                got = "none" if self.texts_b is None else str(len(self.texts_b))
                raise ValueError(
                    f"mode=pairs needs texts_b with one text per item of texts ({len(self.texts)}); got {got}"
                )
        elif self.texts_b is not None:
            raise ValueError(f"texts_b is only used with mode=pairs, not mode={self.mode}")
        if self.mode == "query":
            if self.query is None or not self.query.strip():
                raise ValueError("mode=query needs a non-empty `query` to rank the texts against")
        elif self.query is not None:
            raise ValueError(f"query is only used with mode=query, not mode={self.mode}")
        if self.mode == "matrix" and len(self.texts) > SIMILARITY_MATRIX_MAX:
            without = " (texts alone ask for every text against every text)" if inferred else ""
            raise ValueError(
                f"mode=matrix takes at most {SIMILARITY_MATRIX_MAX} texts (got {len(self.texts)}){without}; "
                "pass a `query` to rank many texts against it, or `texts_b` to score pairs"
            )
        return self

    @property
    def chosen_mode(self) -> SimilarityMode:
        """The mode asked for or inferred (validation always sets one)."""
        if self.mode is None:
            raise ValueError("SimilarityRequest was built without validation")
        return self.mode

    def inputs(self) -> list[str]:
        """Every text to embed, in the order `SimilarityResponse` scores them: texts, then texts_b or query."""
        if self.mode == "pairs":
            return [*self.texts, *(self.texts_b or [])]
        if self.mode == "query":
            return [*self.texts, self.query or ""]
        return list(self.texts)


class SimilarityMatch(_Strict):
    index: int = Field(description="Position in `texts`.")
    score: float = Field(description="Cosine similarity, -1 to 1.")


class SimilarityResponse(_Strict):
    mode: SimilarityMode
    model: str
    count: int = Field(description="Texts embedded.")
    truncated: int = Field(description="Texts cut at the model's maximum length.")
    scores: list[float] | None = Field(
        default=None, description="pairs: cosine of texts[i] and texts_b[i]. query: cosine of the query and texts[i]."
    )
    matches: list[SimilarityMatch] | None = Field(default=None, description="query: the top_k best, best first.")
    matrix: list[list[float]] | None = Field(default=None, description="matrix: cosine of texts[i] and texts[j].")


def top_matches(scores: Sequence[float], top_k: int) -> list[SimilarityMatch]:
    """The `top_k` highest scores, best first; equal scores in input order (the same on every host)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:top_k]
    return [SimilarityMatch(index=i, score=scores[i]) for i in order]


# --------------------------------------------------------------------------- OpenAI-compatible


class OpenAIEmbeddingRequest(_Strict):
    input: str | list[str] = Field(description="One text or a list of texts.")
    model: ModelName | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None
    input_type: InputType | None = None


class OpenAIEmbedding(_Strict):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(_Strict):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(_Strict):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class ErrorResponse(BaseModel):
    """Every error the service returns: `detail` says what was wrong and what is allowed."""

    detail: str | list[dict[str, object]]
