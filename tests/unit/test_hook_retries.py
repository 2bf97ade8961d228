"""The retry policy applied by the hook on the sync path: waits recorded, never slept."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import requests_mock as rm

from callcov_provider.exceptions import (
    APIConnectionError,
    APITimeoutError,
    CallCovError,
    RateLimitedError,
    ServerError,
)
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.hooks.retry import UNANNOUNCED_QUOTA_WAIT
from tests.unit.conftest import ANALYSIS_001, API, SleepRecorder, analysis
from tests.unit.test_hook_sync import refused

OK = {"json": analysis("a1")}
CREATED = {"status_code": 201, "json": ANALYSIS_001}


def retry_warnings(hook_logs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in hook_logs if e["log_level"] == "warning"]


def test_get_retries_server_errors_with_bounded_full_jitter(
    hook: CallCovHook, requests_mock: rm.Mocker, sleeps: SleepRecorder, hook_logs: list[dict[str, Any]]
) -> None:
    requests_mock.get(
        f"{API}/analysis/a1",
        [{"status_code": s} for s in (500, 502, 503, 504, 429)] + [OK],
    )
    assert hook.get_analysis("a1").id == "a1"
    assert len(requests_mock.request_history) == 6
    assert len(sleeps.waits) == 5
    for attempt, wait in enumerate(sleeps.waits[:4], start=1):
        assert 0.0 <= wait <= 2.0 ** (attempt - 1)
    # A 429 that names no wait outlasts a one-minute quota window (plus jitter) rather than backing off.
    assert UNANNOUNCED_QUOTA_WAIT <= sleeps.waits[4] <= UNANNOUNCED_QUOTA_WAIT + 2
    messages = retry_warnings(hook_logs)
    assert len(messages) == 5
    for attempt, (status, message, wait) in enumerate(
        zip((500, 502, 503, 504), messages, sleeps.waits, strict=False), 1
    ):
        assert message == f"CallCov GET /analysis/a1: HTTP {status}; retry {attempt} of 5 in {wait:.2f}s"
    # Quota waits are counted apart from failures, against their own bound.
    assert messages[4] == f"CallCov GET /analysis/a1: HTTP 429; retry 1 of 20 in {sleeps.waits[4]:.2f}s"


def test_retry_after_seconds_is_honoured(
    hook: CallCovHook, requests_mock: rm.Mocker, sleeps: SleepRecorder
) -> None:
    requests_mock.get(
        f"{API}/analysis/",
        [
            {"status_code": 429, "headers": {"Retry-After": "7"}, "json": {"detail": "slow down"}},
            {"json": {"data": []}},
        ],
    )
    hook.list_analyses()
    (wait,) = sleeps.waits
    assert 7.0 <= wait <= 8.0  # what the server asked, and at most a second of jitter


def test_retry_after_http_date_is_honoured(
    hook: CallCovHook, requests_mock: rm.Mocker, sleeps: SleepRecorder
) -> None:
    when = format_datetime(datetime.fromtimestamp(time.time() + 30, UTC), usegmt=True)
    requests_mock.get(f"{API}/analysis/a1", [{"status_code": 503, "headers": {"Retry-After": when}}, OK])
    hook.get_analysis("a1")
    (wait,) = sleeps.waits
    # The date has one-second resolution, a little time passes between building and reading it, and up
    # to a second of jitter is added.
    assert 28.0 <= wait <= 31.0


def test_ratelimit_reset_is_honoured(
    hook: CallCovHook, requests_mock: rm.Mocker, sleeps: SleepRecorder
) -> None:
    reset = str(int(time.time()) + 20)
    requests_mock.get(
        f"{API}/analysis/a1",
        [
            {
                "status_code": 429,
                "headers": {
                    "X-RateLimit-Limit": "100",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": reset,
                },
            },
            OK,
        ],
    )
    hook.get_analysis("a1")
    (wait,) = sleeps.waits
    assert 18.0 <= wait <= 21.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_client_errors_are_never_retried(
    hook: CallCovHook, requests_mock: rm.Mocker, sleeps: SleepRecorder, status: int, method: str
) -> None:
    requests_mock.register_uri(method, f"{API}/analysis/", status_code=status, json={"detail": "no"})
    with pytest.raises(CallCovError) as info:
        if method == "GET":
            hook.list_analyses()
        else:
            hook.submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav")
    assert info.value.status_code == status
    assert len(requests_mock.request_history) == 1
    assert sleeps.waits == []


@pytest.mark.parametrize(
    "outcomes",
    [
        [{"exc": requests.exceptions.ReadTimeout}, {"exc": requests.exceptions.ReadTimeout}, CREATED],
        [
            {"status_code": 500},
            {"exc": requests.exceptions.ChunkedEncodingError},
            {"status_code": 504},
            CREATED,
        ],
        [{"exc": refused()}, {"status_code": 503}, {"status_code": 429}, CREATED],
    ],
    ids=["read-timeouts", "ambiguous-mix", "safe-failures"],
)
def test_post_retries_reuse_one_idempotency_key(
    hook: CallCovHook,
    requests_mock: rm.Mocker,
    sleeps: SleepRecorder,
    hook_logs: list[dict[str, Any]],
    outcomes: list[dict[str, Any]],
) -> None:
    requests_mock.post(f"{API}/analysis/", outcomes)
    result = hook.submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav")
    assert result.id == ANALYSIS_001["id"]
    keys = {r.headers["Idempotency-Key"] for r in requests_mock.request_history}
    assert len(requests_mock.request_history) == len(outcomes)
    assert len(keys) == 1
    assert len(sleeps.waits) == len(outcomes) - 1
    assert len(retry_warnings(hook_logs)) == len(outcomes) - 1


def test_read_timeout_warning_names_the_reason(
    hook: CallCovHook, requests_mock: rm.Mocker, sleeps: SleepRecorder, hook_logs: list[dict[str, Any]]
) -> None:
    requests_mock.post(f"{API}/analysis/", [{"exc": requests.exceptions.ReadTimeout}, CREATED])
    hook.submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav")
    assert retry_warnings(hook_logs) == [
        f"CallCov POST /analysis/: read timeout; retry 1 of 5 in {sleeps.waits[0]:.2f}s"
    ]


def test_same_key_across_retries_of_a_file_upload(
    hook: CallCovHook, requests_mock: rm.Mocker, sleeps: SleepRecorder, tmp_path: Any
) -> None:
    audio = tmp_path / "call.wav"
    audio.write_bytes(b"RIFF\x00\x00\x00\x00WAVE" + b"\x07" * 4096)
    bodies: list[bytes] = []

    def respond(status: int) -> Callable[[Any, Any], dict[str, Any]]:
        def callback(request: Any, context: Any) -> dict[str, Any]:
            bodies.append(request.body.read())
            context.status_code = status
            return ANALYSIS_001 if status == 201 else {"detail": "busy"}

        return callback

    requests_mock.post(
        f"{API}/analysis/", [{"json": respond(503)}, {"json": respond(500)}, {"json": respond(201)}]
    )
    hook.submit_analysis(agent_id="a", contact_id="c", audio_file=str(audio))
    assert len({r.headers["Idempotency-Key"] for r in requests_mock.request_history}) == 1
    # Each attempt sends the whole file again, from a fresh handle.
    assert len(bodies) == 3
    assert all(b"RIFF\x00\x00\x00\x00WAVE" + b"\x07" * 4096 + b"\r\n" in body for body in bodies)
    assert len(sleeps.waits) == 2


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        ({"exc": requests.exceptions.ReadTimeout}, APITimeoutError),
        ({"exc": requests.exceptions.ChunkedEncodingError}, APIConnectionError),
        ({"status_code": 500}, ServerError),
        ({"status_code": 502}, ServerError),
        ({"status_code": 504}, ServerError),
    ],
)
def test_ambiguous_post_failures_are_not_retried_when_turned_off(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    requests_mock: rm.Mocker,
    sleeps: SleepRecorder,
    outcome: dict[str, Any],
    error: type[CallCovError],
) -> None:
    connection(retry_ambiguous_posts=False)
    requests_mock.post(f"{API}/analysis/", [outcome, CREATED])
    with pytest.raises(error):
        make_hook().submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav")
    assert len(requests_mock.request_history) == 1
    assert sleeps.waits == []


def test_safe_post_failures_still_retry_when_ambiguous_retries_are_off(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    requests_mock: rm.Mocker,
    sleeps: SleepRecorder,
) -> None:
    connection(retry_ambiguous_posts="false")
    requests_mock.post(
        f"{API}/analysis/",
        [
            {"exc": refused()},
            {"exc": requests.exceptions.ConnectTimeout},
            {"status_code": 429},
            CREATED,
        ],
    )
    make_hook().submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav")
    assert len(requests_mock.request_history) == 4
    assert len(sleeps.waits) == 3


def test_gets_still_retry_ambiguous_failures_when_post_retries_are_off(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    requests_mock: rm.Mocker,
    sleeps: SleepRecorder,
) -> None:
    connection(retry_ambiguous_posts=False)
    requests_mock.get(
        f"{API}/analysis/a1", [{"exc": requests.exceptions.ReadTimeout}, {"status_code": 500}, OK]
    )
    make_hook().get_analysis("a1")
    assert len(sleeps.waits) == 2


def test_max_retries_from_the_connection(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    requests_mock: rm.Mocker,
    sleeps: SleepRecorder,
) -> None:
    connection(max_retries=2)
    requests_mock.get(f"{API}/analysis/a1", status_code=503, json={"detail": "down for maintenance"})
    with pytest.raises(ServerError) as info:
        make_hook().get_analysis("a1")
    assert info.value.status_code == 503
    assert info.value.message == "down for maintenance"
    assert len(requests_mock.request_history) == 3
    assert len(sleeps.waits) == 2


def test_transport_failures_that_outlast_retries_raise_typed_errors(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    requests_mock: rm.Mocker,
    sleeps: SleepRecorder,
) -> None:
    connection(max_retries=3)
    requests_mock.get(f"{API}/analysis/a1", exc=requests.exceptions.ReadTimeout)
    requests_mock.get(f"{API}/analysis/a2", exc=requests.exceptions.ConnectTimeout)
    requests_mock.get(f"{API}/analysis/a3", exc=refused())
    hook = make_hook()
    with pytest.raises(
        APITimeoutError,
        match=r"^\[timeout\] read timeout on GET https://api.callcov.test/api/v1/analysis/a1$",
    ):
        hook.get_analysis("a1")
    with pytest.raises(APITimeoutError, match="connect timeout"):
        hook.get_analysis("a2")
    with pytest.raises(APIConnectionError, match="connect error") as info:
        hook.get_analysis("a3")
    assert type(info.value) is APIConnectionError
    assert len(requests_mock.request_history) == 12
    assert len(sleeps.waits) == 9


def test_deadline_stops_retries_that_would_outlast_it(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    requests_mock: rm.Mocker,
    sleeps: SleepRecorder,
) -> None:
    connection(retry_deadline=5)
    requests_mock.get(
        f"{API}/analysis/",
        status_code=429,
        headers={"Retry-After": "10"},
        json={"error": {"code": "rate_limit_exceeded", "message": "Try again in 10 seconds."}},
    )
    with pytest.raises(RateLimitedError) as info:
        make_hook().list_analyses()
    assert info.value.retry_after == 10.0
    assert len(requests_mock.request_history) == 1
    assert sleeps.waits == []


def test_deadline_counts_the_time_already_waited(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    requests_mock: rm.Mocker,
    sleeps: SleepRecorder,
) -> None:
    # Each wait is 4 s and up to 1 s of jitter; the third would end at 12 s or later, past the deadline.
    connection(retry_deadline=10)
    requests_mock.get(f"{API}/analysis/a1", status_code=503, headers={"Retry-After": "4"})
    with pytest.raises(ServerError):
        make_hook().get_analysis("a1")
    assert len(sleeps.waits) == 2
    assert all(4.0 <= wait <= 5.0 for wait in sleeps.waits)
    assert len(requests_mock.request_history) == 3


def test_paced_429s_do_not_use_up_the_retries_left_for_failures(
    hook: CallCovHook, requests_mock: rm.Mocker, sleeps: SleepRecorder
) -> None:
    # Six 429s that say when to come back, then five failures: more than max_retries (5) in all, but
    # the 429s are counted apart, so the call still gets through.
    paced = {"status_code": 429, "headers": {"Retry-After": "1"}, "json": {"detail": "slow down"}}
    failing = {"status_code": 503, "json": {"detail": "busy"}}
    requests_mock.get(f"{API}/analysis/a1", [paced] * 6 + [failing] * 5 + [OK])
    assert hook.get_analysis("a1").id
    assert len(requests_mock.request_history) == 12
    assert len(sleeps.waits) == 11
