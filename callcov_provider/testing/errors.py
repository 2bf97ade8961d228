"""
The error answers the documentation shows, in its three shapes.

* the older generation: ``{"error": {"code": "...", "message": "..."}}`` (400 ``invalid_file_format``, 413
  ``file_too_large``, 429 ``rate_limit_exceeded``);
* the current generation: ``{"detail": "Invalid authentication credentials"}`` (401),
  ``{"detail": "Analysis not found"}``, and ``{"detail": [{"loc", "msg", "type", ...}]}`` for invalid
  fields and parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from callcov_provider.formats import AUDIO_FORMATS, MIB

UNAUTHORIZED_DETAIL = "Invalid authentication credentials"
NOT_FOUND_DETAIL = "Analysis not found"
FORMATS_TEXT = "WAV, MP3, M4A, FLAC, or OGG"


class ApiError(Exception):
    """
    An error answer: raised anywhere in a request's handling, turned into the response by the app.

    :param status: HTTP status.
    :param body: The JSON body.
    :param headers: Extra response headers.
    """

    def __init__(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = dict(body)
        self.headers = dict(headers or {})


def coded(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> ApiError:
    """The older generation's ``{"error": {"code", "message"}}`` error."""
    return ApiError(status, {"error": {"code": code, "message": message}}, headers)


def detail(status: int, text: str, headers: Mapping[str, str] | None = None) -> ApiError:
    """The current generation's ``{"detail": "..."}`` error."""
    return ApiError(status, {"detail": text}, headers)


def validation(status: int, items: Sequence[Mapping[str, Any]]) -> ApiError:
    """A FastAPI-style ``{"detail": [...]}`` validation error."""
    return ApiError(status, {"detail": [dict(item) for item in items]})


def invalid_format(message: str | None = None) -> ApiError:
    """400 ``invalid_file_format`` (the older generation)."""
    return coded(400, "invalid_file_format", message or f"Audio file must be in {FORMATS_TEXT} format")


def too_large(extension: str) -> ApiError:
    """413 ``file_too_large`` with the format's documented limit (the older generation)."""
    limit = AUDIO_FORMATS[extension].max_bytes // MIB
    return coded(413, "file_too_large", f"Audio file exceeds maximum size of {limit} MB")


def rate_limited(retry_after: int, headers: Mapping[str, str], *, documented: bool = False) -> ApiError:
    """
    429 ``rate_limit_exceeded`` with the documentation's message.

    :param retry_after: Whole seconds until the quota window ends (the ``N`` of the message).
    :param headers: The ``X-RateLimit-*`` headers.
    :param documented: Exactly as documented: the wait only in the message, no ``Retry-After`` header.
    """
    extra = dict(headers) if documented else {**headers, "Retry-After": str(retry_after)}
    return coded(
        429, "rate_limit_exceeded", f"Rate limit exceeded. Please try again in {retry_after} seconds.", extra
    )


def unauthorized() -> ApiError:
    """401 with the current generation's body."""
    return detail(401, UNAUTHORIZED_DETAIL, {"WWW-Authenticate": "Bearer"})


def not_found() -> ApiError:
    """404 for an analysis that does not exist or belongs to another account."""
    return detail(404, NOT_FOUND_DETAIL)


def body_item(kind: str, field: str, msg: str, value: Any = None, **ctx: Any) -> dict[str, Any]:
    """One pydantic-v2-style item of a request body error (the current generation's shape)."""
    item: dict[str, Any] = {"type": kind, "loc": ["body", field], "msg": msg, "input": value}
    if ctx:
        item["ctx"] = ctx
    return item


def missing(field: str, value: Any = None) -> dict[str, Any]:
    """``Field required`` for ``field`` (the current generation's example)."""
    return body_item("missing", field, "Field required", {} if value is None else value)


def query_item(field: str, msg: str, kind: str) -> dict[str, str | list[str]]:
    """One item of a query parameter error, in the listing reference's (pydantic v1) shape."""
    return {"loc": ["query", field], "msg": msg, "type": kind}
