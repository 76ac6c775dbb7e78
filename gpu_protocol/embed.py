"""Embeddings: our `POST /embed`, and the OpenAI-compatible `POST /v1/embeddings` the service also serves."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from gpu_protocol.base import AnswerModel, ModelName, StrictModel
from gpu_protocol.codec import Block, VectorsInvalid, as_block, decode_float32_block, decode_float32_rows
from gpu_protocol.validation import check_not_blank

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


class EmbedRequest(StrictModel):
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


class EmbedResponse(AnswerModel):
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
        return decode_float32_rows(self._blob(), self.count, self.dimensions)

    def block(self) -> Block:
        """The embeddings as one float32 block, whichever encoding the service used (VectorsInvalid if
        they do not fit `count` x `dimensions` bytes, or rows differ in length)."""
        if self.embeddings is not None:
            return as_block(self.embeddings)
        return decode_float32_block(self._blob(), self.count, self.dimensions)

    def _blob(self) -> str:
        if self.embeddings_base64 is None:
            raise VectorsInvalid("response carries neither embeddings nor embeddings_base64")
        return self.embeddings_base64


# --------------------------------------------------------------------------- OpenAI-compatible


class OpenAIEmbeddingRequest(StrictModel):
    input: str | list[str] = Field(description="One text or a list of texts.")
    model: ModelName | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None
    input_type: InputType | None = None


class OpenAIEmbedding(AnswerModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(AnswerModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(AnswerModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(AnswerModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "gpu-service"


class OpenAIModelList(AnswerModel):
    """OpenAI's `GET /v1/models`: the embedding models a host serves (OpenAI clients and the bridge's
    `openai` hosts ask it; the bridge's health check of such a host)."""

    object: Literal["list"] = "list"
    data: list[OpenAIModel]
