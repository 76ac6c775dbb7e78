"""What every model of the wire protocol shares: strictness and how a model name is spelled."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="Model name, e.g. `all-MiniLM-L6-v2` or `sentence-transformers/all-MiniLM-L6-v2`.",
    ),
]


class StrictModel(BaseModel):
    """Unknown fields are an error: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
