"""The retry policy as a pure function: which outcomes retry, and how long each wait is."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from callcov_provider.hooks.retry import (
    UNANNOUNCED_QUOTA_WAIT,
    Outcome,
    RetryPolicy,
    TransportFailure,
    server_requested_wait,
)
from callcov_provider.hooks.transport import RetryController


def ceiling(low: float, high: float) -> float:
    """An rng that always picks the top of the jitter range."""
    return high


def floor(low: float, high: float) -> float:
    return low


GET_RETRIES = {429, 500, 502, 503, 504}
POST_RETRIES_SAFE = {429}
# 503 is what a lost acceptance looks like: retried only when a replay is known to be harmless.
POST_RETRIES_AMBIGUOUS = {500, 502, 503, 504}
STATUSES = [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 501, 502, 503, 504, 505]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("method", ["GET", "get", "HEAD", "POST"])
@pytest.mark.parametrize("ambiguous", [True, False])
def test_is_retryable_by_status(status: int, method: str, ambiguous: bool) -> None:
    policy = RetryPolicy(retry_ambiguous_posts=ambiguous)
    if method.upper() in ("GET", "HEAD"):
        expected = status in GET_RETRIES
    else:
        expected = status in POST_RETRIES_SAFE or (ambiguous and status in POST_RETRIES_AMBIGUOUS)
    assert policy.is_retryable(method, Outcome(status=status)) is expected


@pytest.mark.parametrize(
    ("method", "failure", "ambiguous", "expected"),
    [
        ("GET", TransportFailure.CONNECT, True, True),
        ("GET", TransportFailure.CONNECT_TIMEOUT, True, True),
        ("GET", TransportFailure.READ_TIMEOUT, True, True),
        ("GET", TransportFailure.DROPPED, True, True),
        ("GET", TransportFailure.READ_TIMEOUT, False, True),
        ("GET", TransportFailure.DROPPED, False, True),
        ("POST", TransportFailure.CONNECT, True, True),
        ("POST", TransportFailure.CONNECT_TIMEOUT, True, True),
        ("POST", TransportFailure.READ_TIMEOUT, True, True),
        ("POST", TransportFailure.DROPPED, True, True),
        ("POST", TransportFailure.CONNECT, False, True),
        ("POST", TransportFailure.CONNECT_TIMEOUT, False, True),
        ("POST", TransportFailure.READ_TIMEOUT, False, False),
        ("POST", TransportFailure.DROPPED, False, False),
    ],
)
def test_is_retryable_by_transport_failure(
    method: str, failure: TransportFailure, ambiguous: bool, expected: bool
) -> None:
    policy = RetryPolicy(retry_ambiguous_posts=ambiguous)
    assert policy.is_retryable(method, Outcome(failure=failure)) is expected
    wait = policy.next_wait(method, 1, Outcome(failure=failure), 0.0, rng=ceiling)
    assert (wait is not None) is expected


def test_request_was_sent() -> None:
    assert {f for f in TransportFailure if f.request_was_sent} == {
        TransportFailure.READ_TIMEOUT,
        TransportFailure.DROPPED,
    }


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (9, 30.0)],
)
def test_backoff_ceiling_doubles_up_to_the_cap(attempt: int, expected: float) -> None:
    policy = RetryPolicy(max_retries=10, deadline=1e9)
    assert policy.next_wait("GET", attempt, Outcome(status=503), 0.0, rng=ceiling) == expected
    assert policy.next_wait("GET", attempt, Outcome(status=503), 0.0, rng=floor) == 0.0


def test_full_jitter_is_bounded() -> None:
    policy = RetryPolicy(max_retries=10, deadline=1e9)
    for attempt in range(1, 8):
        waits = [policy.next_wait("GET", attempt, Outcome(status=503), 0.0) for _ in range(200)]
        top = min(30.0, 2.0 ** (attempt - 1))
        assert all(w is not None and 0.0 <= w <= top for w in waits)
        # Full jitter spreads the waits, it does not sit on the ceiling.
        assert len({round(w or 0.0, 6) for w in waits}) > 100


@pytest.mark.parametrize(("max_retries", "attempt", "retries"), [(0, 1, False), (2, 2, True), (2, 3, False)])
def test_max_retries(max_retries: int, attempt: int, retries: bool) -> None:
    policy = RetryPolicy(max_retries=max_retries)
    assert (policy.next_wait("GET", attempt, Outcome(status=503), 0.0, rng=ceiling) is not None) is retries


def test_deadline_stops_a_retry_whose_wait_would_pass_it() -> None:
    policy = RetryPolicy(deadline=10.0)
    assert policy.next_wait("GET", 1, Outcome(status=503), 9.0, rng=ceiling) == 1.0
    assert policy.next_wait("GET", 1, Outcome(status=503), 9.5, rng=ceiling) is None
    asks_20 = Outcome(status=429, headers={"Retry-After": "20"})
    assert policy.next_wait("GET", 1, asks_20, 0.0, rng=ceiling) is None


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "32"}, 32.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 45, UTC), usegmt=True)}, 45.0),
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW - 45, UTC), usegmt=True)}, 0.0),
        ({"X-RateLimit-Reset": str(int(NOW + 60))}, 60.0),
        ({"x-ratelimit-reset": str(int(NOW - 60))}, 0.0),
        ({"X-RateLimit-Reset": "12"}, 12.0),
        ({"X-RateLimit-Reset": "soon"}, None),
        ({"Retry-After": "whenever", "X-RateLimit-Reset": str(int(NOW + 7))}, 7.0),
        ({"Retry-After": "5", "X-RateLimit-Reset": str(int(NOW + 70))}, 5.0),
    ],
)
def test_server_requested_wait(headers: dict[str, str], expected: float | None) -> None:
    assert server_requested_wait(headers, now=NOW) == expected


def test_http_date_with_minus_zero_zone_is_utc_not_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # RFC 7231 dates are GMT; "-0000" parses as a naive datetime, which must not be read as local time.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        when = datetime.fromtimestamp(NOW + 30, UTC).strftime("%a, %d %b %Y %H:%M:%S -0000")
        assert server_requested_wait({"Retry-After": when}, now=NOW) == 30.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_server_wait_replaces_the_backoff_plus_at_most_a_second_of_jitter() -> None:
    policy = RetryPolicy()
    outcome = Outcome(status=429, headers={"Retry-After": "7"})
    assert policy.next_wait("POST", 1, outcome, 0.0, rng=ceiling) == 8.0
    assert policy.next_wait("POST", 1, outcome, 0.0, rng=floor) == 7.0
    reset = Outcome(status=503, headers={"X-RateLimit-Reset": str(int(NOW + 20))})
    assert policy.next_wait("GET", 1, reset, 0.0, now=NOW, rng=ceiling) == 21.0
    # The fifth retry's backoff would be 16 s; the server asked for 1 s, and is believed.
    small = Outcome(status=503, headers={"Retry-After": "1"})
    assert policy.next_wait("GET", 5, small, 0.0, rng=ceiling) == 2.0


def test_a_paced_429_has_its_own_larger_retry_bound() -> None:
    policy = RetryPolicy(max_retries=2, max_rate_limited_retries=6)
    paced = Outcome(status=429, headers={"Retry-After": "1"})
    unpaced = Outcome(status=429)
    failing = Outcome(status=503, headers={"Retry-After": "1"})
    assert policy.next_wait("GET", 6, paced, 0.0, rng=floor) == 1.0
    assert policy.next_wait("GET", 7, paced, 0.0, rng=floor) is None
    # A 429 that names no wait is still a quota wait, never a failure: it outlasts a one-minute window.
    assert policy.next_wait("GET", 3, unpaced, 0.0, rng=floor) == UNANNOUNCED_QUOTA_WAIT
    assert policy.next_wait("GET", 3, failing, 0.0, rng=floor) is None
    # The deadline still bounds every wait.
    assert policy.next_wait("GET", 1, paced, policy.deadline - 0.5, rng=floor) is None


def test_outcome_describe() -> None:
    assert Outcome(status=503).describe() == "HTTP 503"
    assert Outcome(failure=TransportFailure.READ_TIMEOUT).describe() == "read timeout"


class _Attempt:
    def __init__(self, result: Any = None, exc: BaseException | None = None) -> None:
        self._result, self._exc = result, exc
        self.failed = exc is not None

    def result(self) -> Any:
        return self._result

    def exception(self) -> BaseException | None:
        return self._exc


class _State:
    def __init__(self, outcome: _Attempt | None, attempt_number: int = 1) -> None:
        self.outcome = outcome
        self.attempt_number = attempt_number
        self.seconds_since_start = 0.0
        self.idle_for = 0.0


def test_controller_does_not_retry_success_unknown_errors_or_missing_outcomes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from callcov_provider.hooks.transport import RawResponse

    logger = logging.getLogger("test.controller")
    controller = RetryController(RetryPolicy(), "GET", "GET /analysis/", lambda exc: None, logger)
    assert controller.should_retry(_State(None)) is False
    assert controller.should_retry(_State(_Attempt(RawResponse(200)))) is False
    assert controller.should_retry(_State(_Attempt(RawResponse(302)))) is False
    assert controller.should_retry(_State(_Attempt(exc=RuntimeError("not a transport error")))) is False
    with caplog.at_level(logging.WARNING, logger="test.controller"):
        assert controller.should_retry(_State(_Attempt(RawResponse(503, {"Retry-After": "4"})), 2)) is True
    wait = controller.wait(None)
    assert 4.0 <= wait <= 5.0
    assert [r.getMessage() for r in caplog.records] == [
        f"CallCov GET /analysis/: HTTP 503; retry 2 of 5 in {wait:.2f}s"
    ]
