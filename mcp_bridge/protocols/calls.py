"""One HTTP request to a host (`HttpCall`), as every host type builds them and the pool sends them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request to a host, relative to its base URL."""

    method: str
    path: str
    json: Any = None
    files: Any = None
    """multipart/form-data: the files (httpx's `files`), with `data` the form's other fields."""
    data: Any = None
