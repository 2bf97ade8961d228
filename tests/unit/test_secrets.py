"""The API key and a signed audio URL's token never show in errors, logs or reprs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import requests_mock as rm

from callcov_provider.exceptions import CallCovError
from callcov_provider.hooks.callcov import CallCovHook
from tests.unit.conftest import API, KEY, SIGNED_QUERY, SIGNED_URL
from tests.unit.test_hook_sync import refused

SECRETS = (KEY, "SIGTOKEN8d1e77", SIGNED_QUERY)


@pytest.fixture(params=["api_key", "bearer"])
def secret_hook(
    request: pytest.FixtureRequest, connection: Callable[..., None], make_hook: Callable[..., CallCovHook]
) -> CallCovHook:
    connection(auth_type=request.param, max_retries=2)
    return make_hook()


@pytest.fixture
def everything_logged(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], hook_logs: list[dict[str, Any]]
) -> Iterator[Callable[[], str]]:
    caplog.set_level(logging.DEBUG)

    def text() -> str:
        captured = capsys.readouterr()
        events = "\n".join(repr(e) for e in hook_logs)
        return "\n".join([caplog.text, events, captured.out, captured.err])

    return text


def assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


ECHOING_BODIES: list[dict[str, Any]] = [
    {"status_code": 401, "json": {"detail": f"Invalid authentication credentials: {KEY}"}},
    {"status_code": 403, "json": {"error": {"code": "forbidden", "message": f"key {KEY} lacks scope"}}},
    {
        "status_code": 422,
        "json": {
            "detail": [
                {
                    "loc": ["body", "audio_url"],
                    "msg": f"cannot fetch {SIGNED_URL}",
                    "type": "value_error",
                    "input": SIGNED_URL,
                }
            ]
        },
    },
    {"status_code": 400, "json": {"detail": f"could not download {SIGNED_URL}"}},
    {
        "status_code": 502,
        "text": f"<html><body>upstream error for X-API-Key: {KEY} {SIGNED_URL}</body></html>",
        "headers": {"Content-Type": "text/html"},
    },
    {"status_code": 503, "json": {"error": {"code": "unavailable", "message": f"retry {SIGNED_URL}"}}},
    {"status_code": 200, "json": {"status": "processing", "audio": {"url": SIGNED_URL}, "key": KEY}},
    {"status_code": 201, "json": {"id": "a1", "status": f"weird {KEY}"}},
    {"exc": requests.exceptions.ReadTimeout(f"read timed out {KEY}")},
    {"exc": refused()},
]


@pytest.mark.parametrize("response", ECHOING_BODIES, ids=range(len(ECHOING_BODIES)))
def test_submit_errors_never_carry_secrets(
    secret_hook: CallCovHook,
    requests_mock: rm.Mocker,
    everything_logged: Callable[[], str],
    response: dict[str, Any],
) -> None:
    requests_mock.post(f"{API}/analysis/", **response)
    with pytest.raises(CallCovError) as info:
        secret_hook.submit_analysis(agent_id="a", contact_id="c", audio_url=SIGNED_URL)
    err = info.value
    assert_clean(str(err), repr(err), err.message, str(err.args), everything_logged())
    # The request itself did carry them: the redaction is in what we show, not what we send.
    assert SIGNED_URL in requests_mock.last_request.text


@pytest.mark.parametrize("response", ECHOING_BODIES, ids=range(len(ECHOING_BODIES)))
def test_read_errors_never_carry_the_key(
    secret_hook: CallCovHook,
    requests_mock: rm.Mocker,
    everything_logged: Callable[[], str],
    response: dict[str, Any],
) -> None:
    requests_mock.get(f"{API}/analysis/a1", **response)
    requests_mock.get(f"{API}/analysis/", **response)
    with pytest.raises(CallCovError) as info:
        secret_hook.get_analysis("a1")
    assert_clean(str(info.value), repr(info.value), everything_logged())
    _ok, message = secret_hook.test_connection()
    assert_clean(message, everything_logged())


def test_successful_calls_log_nothing_secret(
    secret_hook: CallCovHook, requests_mock: rm.Mocker, everything_logged: Callable[[], str]
) -> None:
    requests_mock.post(
        f"{API}/analysis/",
        [{"status_code": 503}, {"status_code": 201, "json": {"id": "a1", "status": "processing"}}],
    )
    requests_mock.get(f"{API}/analysis/", json={"data": [], "has_more": False})
    secret_hook.submit_analysis(agent_id="a", contact_id="c", audio_url=SIGNED_URL)
    secret_hook.list_analyses(search="x")
    assert secret_hook.test_connection()[0] is True
    logged = everything_logged()
    assert "Submitted CallCov analysis a1" in logged
    assert "retry 1 of 2" in logged
    assert_clean(logged, repr(secret_hook), repr(secret_hook.settings), str(secret_hook.settings))


def test_local_refusals_never_carry_the_url_token(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    for url in (
        f"ftp://files.example.com/x.wav?{SIGNED_QUERY}",
        f"https://user:SIGTOKEN8d1e77@/x.wav?{SIGNED_QUERY}",
    ):
        with pytest.raises(CallCovError) as info:
            hook.submit_analysis(agent_id="a", contact_id="c", audio_url=url)
        assert_clean(str(info.value), repr(info.value))
    assert requests_mock.request_history == []
