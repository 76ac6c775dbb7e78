"""What every model of the wire protocol shares: how strict each direction reads, and how a model name is spelled.

Requests a service receives are read strictly (`StrictModel`: an unknown field is a typo and is
refused with 422); answers are read tolerantly (`AnswerModel`: a field a later release added is
ignored), so a newer host never breaks an older bridge (docs/compatibility.md).
"""

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
    """A request (or a part of one): unknown fields are an error, since a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


RequestModel = StrictModel
"""The name by which new code says which direction a model is read in."""

ANSWER_CONFIG = ConfigDict(extra="ignore", populate_by_name=True)


class AnswerModel(BaseModel):
    """An answer (or a part of one): unknown fields are ignored, so a later release may add fields."""

    model_config = ANSWER_CONFIG
