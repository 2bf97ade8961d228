"""Typed errors: every documented error body, non-JSON bodies, redaction, and pickling."""

from __future__ import annotations

import json
import pickle

import pytest

from callcov_provider.exceptions import (
    BODY_SNIPPET_CHARS,
    AnalysisFailedError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    CallCovError,
    ConnectionConfigError,
    DeadlineExceededError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
    error_from_response,
    parse_error_body,
    redact,
    safe_url,
    url_secrets,
)

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    b"</center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    + b"<!-- padding -->" * 50
    + b"</body>\r\n</html>\r\n"
)


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "message", "field"),
    [
        (
            400,
            _json({"error": {"code": "invalid_file_format", "message": "Audio file must be in WAV format"}}),
            InvalidRequestError,
            "invalid_file_format",
            "Audio file must be in WAV format",
            None,
        ),
        (
            413,
            _json(
                {"error": {"code": "file_too_large", "message": "Audio file exceeds maximum size of 100 MB"}}
            ),
            PayloadTooLargeError,
            "file_too_large",
            "Audio file exceeds maximum size of 100 MB",
            None,
        ),
        (
            401,
            _json({"detail": "Invalid authentication credentials"}),
            AuthenticationError,
            "authentication_failed",
            "Invalid authentication credentials",
            None,
        ),
        (
            403,
            _json({"detail": "Forbidden"}),
            AuthenticationError,
            "authentication_failed",
            "Forbidden",
            None,
        ),
        (
            404,
            _json({"detail": "Analysis not found"}),
            NotFoundError,
            "not_found",
            "Analysis not found",
            None,
        ),
        (
            409,
            _json({"detail": "Idempotency-Key reused with another body"}),
            IdempotencyConflictError,
            "idempotency_conflict",
            "Idempotency-Key reused with another body",
            None,
        ),
        (
            422,
            _json({"detail": "Invalid audio file format"}),
            InvalidRequestError,
            "invalid_request",
            "Invalid audio file format",
            None,
        ),
        (
            422,
            _json(
                {
                    "detail": [
                        {
                            "loc": ["query", "limit"],
                            "msg": "ensure this value is less than or equal to 1000",
                            "type": "value_error.number.not_le",
                        }
                    ]
                }
            ),
            InvalidRequestError,
            "validation_error",
            "limit: ensure this value is less than or equal to 1000",
            "limit",
        ),
        (
            400,
            _json(
                {
                    "detail": [
                        {
                            "type": "missing",
                            "loc": ["body", "audio_url"],
                            "msg": "Field required",
                            "input": {},
                        }
                    ]
                }
            ),
            InvalidRequestError,
            "validation_error",
            "audio_url: Field required",
            "audio_url",
        ),
        (
            422,
            _json(
                {
                    "detail": [
                        {"loc": ["body"], "msg": "bad body", "type": "x"},
                        "plain",
                        {"loc": ["body", "a"]},
                    ]
                }
            ),
            InvalidRequestError,
            "validation_error",
            "bad body; plain; a: invalid value",
            "a",
        ),
        (
            500,
            _json({"error": {"code": "internal_error"}}),
            ServerError,
            "internal_error",
            "no message",
            None,
        ),
        (503, _json({"error": "maintenance"}), ServerError, "server_error", "maintenance", None),
        (500, _json({"detail": {"reason": "boom"}}), ServerError, "server_error", '{"reason": "boom"}', None),
        (302, b"", UnexpectedResponseError, "unexpected_response", "empty response body", None),
    ],
)
def test_documented_error_bodies_map_to_typed_errors(
    status: int, body: bytes, cls: type[CallCovError], code: str, message: str, field: str | None
) -> None:
    err = error_from_response(status, body, content_type="application/json")
    assert type(err) is cls
    assert err.status_code == status
    assert err.code == code
    assert err.message == message
    assert err.field == field
    assert str(err) == f"HTTP {status} [{code}] {message}"


def test_rate_limited_error_carries_the_requested_wait() -> None:
    body = _json({"error": {"code": "rate_limit_exceeded", "message": "Please try again in 32 seconds."}})
    err = error_from_response(429, body, retry_after=32.0)
    assert isinstance(err, RateLimitedError)
    assert err.retry_after == 32.0
    assert err.code == "rate_limit_exceeded"


def test_html_page_from_a_proxy_becomes_a_short_snippet() -> None:
    err = error_from_response(502, HTML_502, content_type="text/html; charset=utf-8")
    assert isinstance(err, ServerError)
    assert err.status_code == 502
    prefix = "non-JSON response (text/html): "
    assert err.message.startswith(prefix + "<html> <head><title>502 Bad Gateway</title>")
    assert len(err.message) == len(prefix) + BODY_SNIPPET_CHARS
    assert "\r" not in err.message
    assert "\n" not in err.message


def test_truncated_json_is_not_json() -> None:
    message, code, field = parse_error_body(b'{"error": {"code": "rate_li', "application/json")
    assert message == 'non-JSON response (application/json): {"error": {"code": "rate_li'
    assert code is None
    assert field is None


def test_json_of_an_unknown_shape_is_not_called_non_json() -> None:
    message, code, _ = parse_error_body(b'{"message": "Internal server error"}', None)
    assert message == 'unrecognised error body (unknown content type): {"message": "Internal server error"}'
    assert code is None
    assert parse_error_body(b"[1, 2]")[0].startswith("unrecognised error body")
    assert parse_error_body(b"   \n")[0] == "empty response body"


def test_server_text_is_redacted_of_secrets() -> None:
    body = _json({"detail": "key sk_live_ABC is invalid for https://x.test/a.wav?sig=TOKEN"})
    err = error_from_response(401, body, secrets=["sk_live_ABC", "sig=TOKEN", ""])
    assert "sk_live_ABC" not in str(err)
    assert "TOKEN" not in repr(err)
    assert err.message == "key <redacted> is invalid for https://x.test/a.wav?<redacted>"
    err = error_from_response(
        400, _json({"error": {"code": "sk_live_ABC", "message": "m"}}), secrets=["sk_live_ABC"]
    )
    assert err.code == "<redacted>"


def test_redact_replaces_longest_secrets_first() -> None:
    assert redact("abc abcdef", ["abc", "abcdef"]) == "<redacted> <redacted>"
    assert redact("nothing here", []) == "nothing here"


def test_redact_hides_every_url_query_even_when_not_known_as_a_secret() -> None:
    text = 'fetch https://s3.test/a.wav?X-Amz-Signature=abc&e=1 failed; <a href="http://x.test/?q=1">, s3://b/k?t=2'
    assert redact(text, []) == (
        'fetch https://s3.test/a.wav?<redacted> failed; <a href="http://x.test/?<redacted>">, s3://b/k?<redacted>'
    )
    assert redact("see https://docs.callcov.com/errors#429 or ask?", []) == (
        "see https://docs.callcov.com/errors#429 or ask?"
    )
    err = error_from_response(404, _json({"detail": "no analysis for https://s3.test/x.wav?sig=SECRET"}))
    assert err.message == "no analysis for https://s3.test/x.wav?<redacted>"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://api.callcov.test/api/v1/analysis/?limit=1",
            "https://api.callcov.test/api/v1/analysis/?<redacted>",
        ),
        ("https://user:pw@host.test:8443/a.wav?sig=1#frag", "https://host.test:8443/a.wav?<redacted>"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("https://host.test:99999/x", "<unparseable url>"),
        ("https://host.test:abc/x", "<unparseable url>"),
        ("http://[bad/x", "<unparseable url>"),
    ],
)
def test_safe_url(url: str, expected: str) -> None:
    assert safe_url(url) == expected


def test_url_secrets() -> None:
    assert url_secrets("https://u:p@h.test/a.wav?sig=1#frag") == ("sig=1", "frag", "p", "u")
    assert url_secrets("https://h.test/a.wav") == ()
    assert url_secrets("") == ()
    assert url_secrets("http://[bad?x=1") == ("http://[bad?x=1",)


def _examples() -> list[CallCovError]:
    return [
        CallCovError("base", status_code=500, code="c", field="f"),
        AuthenticationError("no", status_code=401),
        InvalidRequestError("bad", field="agent_id"),
        PayloadTooLargeError("big", field="audio_file"),
        IdempotencyConflictError("dup", status_code=409),
        NotFoundError("gone", status_code=404),
        RateLimitedError("slow", retry_after=12.5, status_code=429, code="rate_limit_exceeded"),
        ServerError("boom", status_code=502),
        APIConnectionError("refused"),
        APITimeoutError("timeout"),
        UnexpectedResponseError("odd", status_code=200),
        ConnectionConfigError("no key", field="password"),
        AnalysisFailedError({"a1": "bad audio", "a2": None}, status_code=None),
        DeadlineExceededError("late"),
    ]


@pytest.mark.parametrize("err", _examples(), ids=lambda e: type(e).__name__)
def test_errors_survive_pickling(err: CallCovError) -> None:
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err)
    assert again.__dict__ == err.__dict__
    assert str(again) == str(err)
    assert repr(again) == repr(err)
    assert again.args == (err.message,)


def test_error_text_formats() -> None:
    err = InvalidRequestError("agent_id is required", field="agent_id")
    assert str(err) == "[invalid_request] agent_id is required"
    assert repr(err) == (
        "InvalidRequestError(message='agent_id is required', status_code=None, code='invalid_request', "
        "field='agent_id')"
    )
    assert isinstance(PayloadTooLargeError("x"), InvalidRequestError)
    assert isinstance(APITimeoutError("x"), APIConnectionError)


def test_analysis_failed_error_lists_every_failure() -> None:
    err = AnalysisFailedError({"a1": "bad audio", "a2": None})
    assert err.failures == {"a1": "bad audio", "a2": None}
    assert err.message == "2 analyses failed: a1: bad audio; a2: no reason given"
    assert AnalysisFailedError({"a1": None}).message == "1 analysis failed: a1: no reason given"
    assert err.code == "analysis_failed"
