"""Similarity: `POST /similarity`, cosines computed where the vectors are, so they never travel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gpu_protocol.base import AnswerModel, ModelName, StrictModel
from gpu_protocol.limits import SIMILARITY_MATRIX_MAX, SIMILARITY_TOP_K_MAX
from gpu_protocol.validation import check_not_blank

SimilarityMode = Literal["pairs", "query", "matrix"]


class SimilarityRequest(StrictModel):
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
    def _not_blank(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        return None if v is None else check_not_blank(v, info.field_name or "texts")

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


class SimilarityMatch(AnswerModel):
    index: int = Field(description="Position in `texts`.")
    score: float = Field(description="Cosine similarity, -1 to 1.")


class SimilarityResponse(AnswerModel):
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
