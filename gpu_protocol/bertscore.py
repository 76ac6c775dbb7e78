"""BERTScore: `POST /bertscore`, and `POST /bertscore/idf` whose document counts add up across hosts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pydantic import AliasChoices, Field, ValidationInfo, field_validator, model_validator

from gpu_protocol.base import ANSWER_CONFIG, AnswerModel, ModelName, StrictModel
from gpu_protocol.validation import check_not_blank


class BertScoreModelChoice(StrictModel):
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


class IdfCounts(StrictModel):
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

    @field_validator("candidates", "references", "idf_sentences")
    @classmethod
    def _not_blank(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        return None if v is None else check_not_blank(v, info.field_name or "texts")

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

    @field_validator("sentences")
    @classmethod
    def _not_blank(cls, v: list[str]) -> list[str]:
        return check_not_blank(v, "sentences")


class BertScoreIdfResponse(IdfCounts):
    model_config = ANSWER_CONFIG  # an answer: read tolerantly, unlike the idf_counts a request carries

    model: str


class ScoreMeans(AnswerModel):
    precision: float
    recall: float
    f1: float


class BertScoreResponse(AnswerModel):
    precision: list[float]
    recall: list[float]
    f1: list[float]
    mean: ScoreMeans
    model: str
    num_layers: int
    hash: str = Field(description="bert-score's hash of the settings, for reproducible reporting.")
    truncated: int = Field(description="Texts cut at the model's maximum length (512 tokens for most).")
