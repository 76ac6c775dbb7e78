"""Reading a host's HTTP answer: its JSON, its error detail, and failures in plain words.

What these return can reach an agent (in a tool error or `gpu_status`), so it never
carries an exception class name or a pydantic dump.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import ValidationError

from gpu_protocol.validation import validation_message


class BadResponse(Exception):
    """The host answered, but not with what the schema promises."""


def error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
        detail = body["error"].get("message")
    if isinstance(detail, list):
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail if detail is not None else body)[:500]


def describe_transport_error(exc: httpx.HTTPError) -> str:
    """An HTTP client failure in plain words (never the exception's class name), with its own message."""
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        what = "could not connect"
    elif isinstance(exc, httpx.RemoteProtocolError):
        what = "the connection closed before a complete answer"
    elif isinstance(exc, httpx.ReadError | httpx.WriteError):
        what = "the connection broke during the request"
    else:
        what = "the request failed"
    detail = str(exc).strip()[:200]
    return f"{what} ({detail})" if detail else what


def describe_malformed(exc: Exception) -> str:
    if isinstance(exc, ValidationError):  # the answer does not fit the wire schema
        return validation_message(exc.errors())[:200]
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return str(exc)[:200] or "unexpected shape"


def parse_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadResponse(f"not JSON ({exc})") from None
