"""
Typed errors of the CallCov provider.

Every failure, whether found locally before a request is sent or answered by the API, is raised as a
:class:`CallCovError` subclass that users can catch by meaning, in the manner of Stripe's client::

    try:
        hook.submit_analysis(agent_id="a1", contact_id="c1", audio_file="/data/call.wav")
    except RateLimitedError as err:
        wait = err.retry_after
    except InvalidRequestError as err:
        print(err.field, err.message)

No error text ever carries the API key or a URL's query string: messages are built from the server's
error body and from locally known, non-secret values only, and URLs are shown through
:func:`~callcov_provider.redaction.redact_url`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# Re-exported: callers have always imported these helpers from here.
from callcov_provider.redaction import redact as redact
from callcov_provider.redaction import redact_url as redact_url
from callcov_provider.redaction import url_secrets as url_secrets

#: How much of a body that is not JSON (an HTML page from a proxy, say) an error keeps.
BODY_SNIPPET_CHARS = 200

#: The earlier name of :func:`~callcov_provider.redaction.redact_url`, kept for existing imports.
safe_url = redact_url


class CallCovError(Exception):
    """
    Base class of every CallCov provider error.

    :param message: Human readable explanation; never contains a secret.
    :param status_code: HTTP status of the response, or ``None`` for an error found locally or in transport.
    :param code: The API's machine-readable error code (``invalid_file_format``, ``rate_limit_exceeded``,
        ...) or a provider code for local errors.
    :param field: The request field the error is about, when known.
    """

    default_code: str = "callcov_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code or self.default_code
        self.field = field

    def __str__(self) -> str:
        prefix = f"HTTP {self.status_code} " if self.status_code is not None else ""
        return f"{prefix}[{self.code}] {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status_code={self.status_code!r}, "
            f"code={self.code!r}, field={self.field!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments need help to survive pickling (Airflow ships errors between processes).
        return (_rebuild_error, (type(self), self.message, dict(self.__dict__)))


def _rebuild_error(cls: type[CallCovError], message: str, state: dict[str, Any]) -> CallCovError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class AuthenticationError(CallCovError):
    """The API refused the credentials (HTTP 401 or 403), or the connection has none."""

    default_code = "authentication_failed"


class InvalidRequestError(CallCovError):
    """
    The request is invalid: refused by a local check before sending, or by the API (HTTP 400, 409, 422).

    :attr:`field` names the offending parameter when it is known.
    """

    default_code = "invalid_request"


class PayloadTooLargeError(InvalidRequestError):
    """The audio file exceeds its format's documented size limit (HTTP 413, or the local check)."""

    default_code = "file_too_large"


class IdempotencyConflictError(InvalidRequestError):
    """An ``Idempotency-Key`` was reused with a different request (HTTP 409)."""

    default_code = "idempotency_conflict"


class NotFoundError(CallCovError):
    """The analysis does not exist, or belongs to another account (HTTP 404)."""

    default_code = "not_found"


class RateLimitedError(CallCovError):
    """
    The account's rate limit is exhausted (HTTP 429) and retries did not outlast it.

    :param retry_after: Seconds the server asked the client to wait, when it said.
    """

    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.retry_after is None:
            return super().__str__()
        return f"{super().__str__()} (the API asked to wait {self.retry_after:.0f} s before retrying)"


class ServerError(CallCovError):
    """The API failed on its side (HTTP 5xx) and retries did not get through."""

    default_code = "server_error"


class APIConnectionError(CallCovError):
    """The API could not be reached, or the connection broke before an answer arrived."""

    default_code = "connection_error"


class APITimeoutError(APIConnectionError):
    """The API did not answer within the configured timeout."""

    default_code = "timeout"


class UnexpectedResponseError(CallCovError):
    """The API answered with a body that does not match the documented contract."""

    default_code = "unexpected_response"


class ConnectionConfigError(CallCovError):
    """The Airflow connection is unusable (no key, malformed host, unknown auth type, bad extra)."""

    default_code = "connection_config"


class AnalysisFailedError(CallCovError):
    """
    One or more analyses ended with status ``failed``.

    :param failures: Mapping of analysis id to the server's reason (``None`` when it gave none).
    """

    default_code = "analysis_failed"

    def __init__(self, failures: Mapping[str, str | None], **kwargs: Any) -> None:
        self.failures: dict[str, str | None] = dict(failures)
        # The message stays short at any batch size (it lands in logs and the UI); ``failures`` has all.
        shown = list(self.failures.items())[:FAILURES_IN_MESSAGE]
        details = "; ".join(
            f"{_clip(aid, 100)}: {_clip(reason or 'no reason given', REASON_IN_MESSAGE_CHARS)}"
            for aid, reason in shown
        )
        count = len(self.failures)
        noun = "analysis" if count == 1 else "analyses"
        message = f"{count} {noun} failed: {details}"
        if count > len(shown):
            message += (
                f"; and {count - len(shown)} more (every one is in this error's `failures`; list them with "
                'ListAnalysesOperator(status_filter="failed"))'
            )
        super().__init__(message, **kwargs)


#: Failed analyses an :class:`AnalysisFailedError` message names (the rest are counted).
FAILURES_IN_MESSAGE = 20
#: Characters of each reason an :class:`AnalysisFailedError` message keeps.
REASON_IN_MESSAGE_CHARS = 200


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class DeadlineExceededError(CallCovError):
    """A wait for analyses ran past its deadline."""

    default_code = "deadline_exceeded"


def _error_class_for_status(status_code: int) -> type[CallCovError]:
    if status_code in (401, 403):
        return AuthenticationError
    if status_code == 404:
        return NotFoundError
    if status_code == 409:
        return IdempotencyConflictError
    if status_code == 413:
        return PayloadTooLargeError
    if status_code == 429:
        return RateLimitedError
    if status_code >= 500:
        return ServerError
    if 400 <= status_code < 500:
        return InvalidRequestError
    return UnexpectedResponseError


def _detail_to_message(detail: Any) -> tuple[str, str | None]:
    """Turn FastAPI's ``detail`` (a string or a list of ``{loc, msg, type}``) into (message, field)."""
    if isinstance(detail, str):
        return detail, None
    if isinstance(detail, list) and detail:
        parts: list[str] = []
        field: str | None = None
        for item in detail:
            if not isinstance(item, Mapping):
                parts.append(str(item))
                continue
            loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path", "header")]
            name = ".".join(loc)
            field = field or (name or None)
            msg = str(item.get("msg", "invalid value"))
            parts.append(f"{name}: {msg}" if name else msg)
        return "; ".join(parts), field
    return json.dumps(detail)[:BODY_SNIPPET_CHARS], None


def parse_error_body(body: bytes, content_type: str | None = None) -> tuple[str, str | None, str | None]:
    """
    Parse any documented error body into ``(message, code, field)``.

    Handles ``{"error": {"code", "message"}}`` (the older generation), ``{"detail": "..."}`` and
    ``{"detail": [{"loc", "msg", "type"}]}`` (the current generation), and anything else (an HTML page from a
    proxy, truncated JSON) as a short snippet of the text.

    :param body: The raw response body.
    :param content_type: The response's ``Content-Type``, used only to describe a non-JSON body.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        payload = json.loads(text) if text.strip() else None
    except ValueError:
        payload = None
    if isinstance(payload, Mapping):
        error = payload.get("error")
        if isinstance(error, Mapping):
            return str(error.get("message") or "no message"), _str_or_none(error.get("code")), None
        if isinstance(error, str):
            return error, None, None
        if "detail" in payload:
            message, field = _detail_to_message(payload["detail"])
            code = "validation_error" if isinstance(payload["detail"], list) else None
            return message, code, field
    snippet = " ".join(text.split())[:BODY_SNIPPET_CHARS]
    kind = (content_type or "unknown content type").split(";")[0]
    if not snippet:
        return "empty response body", None, None
    label = "non-JSON response" if payload is None else "unrecognised error body"
    return f"{label} ({kind}): {snippet}", None, None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def error_from_response(
    status_code: int,
    body: bytes,
    *,
    content_type: str | None = None,
    retry_after: float | None = None,
    secrets: Iterable[str] = (),
) -> CallCovError:
    """
    Build the typed error for an HTTP error response.

    :param status_code: The HTTP status.
    :param body: The raw body; parsed by :func:`parse_error_body`.
    :param content_type: The response's content type.
    :param retry_after: For 429, the wait the server asked for, in seconds.
    :param secrets: Values (the API key, a signed URL's query) removed from the server's text, should the
        server echo them back.
    """
    message, code, field = parse_error_body(body, content_type)
    secrets = tuple(secrets)
    message = redact(message, secrets)
    code = None if code is None else redact(code, secrets)
    cls = _error_class_for_status(status_code)
    if cls is RateLimitedError:
        return RateLimitedError(
            message, retry_after=retry_after, status_code=status_code, code=code, field=field
        )
    return cls(message, status_code=status_code, code=code, field=field)
