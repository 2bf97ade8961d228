"""
Quota pacing: how the server's word on waiting is read (every header and message shape the API pages
show), the pacer's decisions, and the hook following both on the sync and async paths.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import requests_mock as rm

from callcov_provider.exceptions import RateLimitedError, ServerError
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.hooks.pacing import SPACING_MARGIN, QuotaPacer, pacer_for
from callcov_provider.hooks.retry import (
    UNANNOUNCED_QUOTA_WAIT,
    Outcome,
    RetryPolicy,
    message_wait,
    server_requested_wait,
)
from tests.unit.conftest import ANALYSIS_001, API, SleepRecorder, analysis

#: The server's clock in these tables; the client's is 90 s ahead of it where a row says so.
SERVER_NOW = 1_800_000_000.0
AHEAD = 90.0
DATE = formatdate(SERVER_NOW, usegmt=True)
#: The 429 body exactly as the submission page shows it.
PAGE_000_429 = json.dumps(
    {
        "error": {
            "code": "rate_limit_exceeded",
            "message": "Rate limit exceeded. Please try again in 32 seconds.",
        }
    }
).encode()
CREATED = {"status_code": 201, "json": ANALYSIS_001}


@pytest.mark.parametrize(
    ("headers", "body", "status", "client_now", "expected"),
    [
        # Retry-After, in seconds and as an HTTP date (measured on the server's clock).
        ({"Retry-After": "7"}, b"", 429, SERVER_NOW, 7.0),
        (
            {"Retry-After": formatdate(SERVER_NOW + 45, usegmt=True), "Date": DATE},
            b"",
            429,
            SERVER_NOW + AHEAD,
            45.0,
        ),
        # Retry-After beats a message that names another wait.
        ({"Retry-After": "3"}, PAGE_000_429, 429, SERVER_NOW, 3.0),
        # Only the message names the wait: the documented 429.
        ({}, PAGE_000_429, 429, SERVER_NOW, 32.0),
        ({}, b'{"detail": "Too many requests: retry after 2 minutes"}', 429, SERVER_NOW, 120.0),
        ({}, b"Slow down. Try again in 500 ms.", 429, SERVER_NOW, 0.5),
        # A message is read on a 429 only.
        ({}, PAGE_000_429, 503, SERVER_NOW, None),
        # The message beats X-RateLimit-*, which describes the request quota.
        (
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(SERVER_NOW + 5))},
            PAGE_000_429,
            429,
            SERVER_NOW,
            32.0,
        ),
        # X-RateLimit-Reset when Remaining is 0: epoch seconds, epoch milliseconds, a delta.
        (
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(SERVER_NOW + 20))},
            b"",
            429,
            SERVER_NOW,
            20.0,
        ),
        (
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int((SERVER_NOW + 20) * 1000))},
            b"",
            429,
            SERVER_NOW,
            20.0,
        ),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "15"}, b"", 429, SERVER_NOW, 15.0),
        # ...corrected for a client clock 90 s ahead, with the server's Date.
        (
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(SERVER_NOW + 30)), "Date": DATE},
            b"",
            429,
            SERVER_NOW + AHEAD,
            30.0,
        ),
        # Requests left: the reset says nothing about a refused submission.
        (
            {"X-RateLimit-Remaining": "95", "X-RateLimit-Reset": str(int(SERVER_NOW + 20))},
            b"",
            429,
            SERVER_NOW,
            None,
        ),
        # Nothing said.
        ({}, b"", 429, SERVER_NOW, None),
        (
            {},
            b'{"error": {"code": "rate_limit_exceeded", "message": "Rate limit exceeded."}}',
            429,
            SERVER_NOW,
            None,
        ),
    ],
    ids=[
        "retry-after-seconds",
        "retry-after-date-skewed",
        "retry-after-beats-message",
        "message-seconds",
        "message-minutes-detail",
        "message-ms-text",
        "message-ignored-on-503",
        "message-beats-reset",
        "reset-epoch-s",
        "reset-epoch-ms",
        "reset-delta",
        "reset-epoch-skewed",
        "reset-ignored-while-requests-left",
        "nothing",
        "message-without-wait",
    ],
)
def test_the_servers_word_on_waiting(
    headers: dict[str, str], body: bytes, status: int, client_now: float, expected: float | None
) -> None:
    assert server_requested_wait(headers, body=body, status=status, now=client_now) == expected


def test_a_message_scan_is_bounded() -> None:
    assert message_wait(b"x" * 10_000 + b"try again in 5 seconds") is None
    assert message_wait("Réessayez: try again in 5 seconds".encode()) == 5.0


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Outcome(status=429), UNANNOUNCED_QUOTA_WAIT),
        (Outcome(status=429, body=PAGE_000_429), 32.0),
        (
            Outcome(status=429, headers={"X-RateLimit-Remaining": "95", "X-RateLimit-Reset": "20"}),
            UNANNOUNCED_QUOTA_WAIT,
        ),
    ],
    ids=["unannounced", "message", "submission-quota-while-requests-left"],
)
def test_a_429_always_waits_out_its_quota(outcome: Outcome, expected: float) -> None:
    policy = RetryPolicy()
    assert policy.is_paced(outcome)
    assert policy.paced_wait(outcome) == expected
    no_jitter = policy.next_wait("POST", 1, outcome, 0.0, rng=lambda low, high: low)
    assert no_jitter == expected


def test_a_wait_past_the_deadline_is_not_started() -> None:
    policy = RetryPolicy(deadline=300.0)
    assert policy.next_wait("GET", 1, Outcome(status=429, headers={"Retry-After": "3600"}), 0.0) is None


# -- the pacer --------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_pacer_lets_everything_through_until_it_learns_a_quota() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(clock)
    assert [pacer.reserve(submission=True) for _ in range(50)] == [0.0] * 50
    assert pacer.stats().submissions_per_minute is None


def test_a_refused_submission_teaches_the_quota_and_spaces_the_rest() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(clock)
    for _ in range(20):  # twenty accepted over the first 10 s of the window
        pacer.reserve(submission=True)
        pacer.accepted()
        clock.now += 0.5
    # The 21st is refused; the window ends in 50 s.
    gate = pacer.rate_limited(50.0, submission=True)
    assert gate == pytest.approx(clock.now + 50.0)
    stats = pacer.stats()
    assert stats.rate_limited == 1
    assert stats.submissions_per_minute == pytest.approx(20 / SPACING_MARGIN)
    interval = 60.0 / 20 * SPACING_MARGIN
    # The refused request slept its own retry wait: it goes first once the gate is past ...
    clock.now = gate
    assert pacer.reserve(submission=True, waited_until=gate) == 0.0
    # ... and the next submissions are spaced at the learnt rate, not in a burst.
    waits = [pacer.reserve(submission=True) for _ in range(3)]
    assert waits == pytest.approx([interval, 2 * interval, 3 * interval])
    # Reads are not spaced by the submission quota.
    assert pacer.reserve(submission=False) == 0.0


def test_every_request_waits_for_a_gate_another_one_learnt() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(clock)
    gate = pacer.rate_limited(30.0, submission=False)
    assert pacer.reserve(submission=False) == pytest.approx(30.0)
    assert pacer.reserve(submission=True) == pytest.approx(30.0)
    # The request that got the 429 has slept its retry wait already.
    assert pacer.reserve(submission=False, waited_until=gate) == 0.0
    assert pacer.stats().paced_seconds == pytest.approx(60.0)
    clock.now += 31
    assert pacer.reserve(submission=True) == 0.0


def test_one_pacer_per_account_and_process() -> None:
    assert pacer_for("c", "https://a", "k1") is pacer_for("c", "https://a", "k1")
    assert pacer_for("c", "https://a", "k1") is not pacer_for("c", "https://a", "k2")


# -- the hook follows it ----------------------------------------------------------------------------------


def test_a_submission_429_while_requests_are_left_is_a_quota_wait_not_a_failure(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook], requests_mock: rm.Mocker
) -> None:
    connection(max_retries=0)
    refused = {
        "status_code": 429,
        "content": PAGE_000_429,
        "headers": {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "95", "X-RateLimit-Reset": "40"},
    }
    requests_mock.post(f"{API}/analysis/", [refused, refused, CREATED])
    hook = make_hook()
    hook.submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav")
    assert len(requests_mock.request_history) == 3
    waits: list[float] = hook.sleep.waits  # type: ignore[attr-defined]
    assert len(waits) == 2
    assert all(32.0 <= w <= 33.0 for w in waits)
    assert hook.pacer.stats().rate_limited == 2


def test_a_wait_longer_than_the_deadline_fails_at_once_naming_it(
    hook: CallCovHook, requests_mock: rm.Mocker, sleeps: SleepRecorder
) -> None:
    requests_mock.get(
        f"{API}/analysis/a1", status_code=429, headers={"Retry-After": "3600"}, json={"detail": "x"}
    )
    with pytest.raises(RateLimitedError, match="wait 3600 s") as info:
        hook.get_analysis("a1")
    assert info.value.retry_after == 3600.0
    assert len(requests_mock.request_history) == 1
    assert sleeps.waits == []


def test_a_skewed_client_clock_waits_what_the_server_meant(
    hook: CallCovHook, requests_mock: rm.Mocker, sleeps: SleepRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import callcov_provider.hooks.retry as retry

    server_now = 1_800_000_000.0
    monkeypatch.setattr(retry.time, "time", lambda: server_now + AHEAD)
    limited = {
        "status_code": 429,
        "json": {"detail": "Too many requests"},
        "headers": {
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(server_now + 30)),
            "Date": formatdate(server_now, usegmt=True),
        },
    }
    requests_mock.get(f"{API}/analysis/a1", [limited, {"json": analysis("a1")}])
    assert hook.get_analysis("a1").id == "a1"
    assert len(sleeps.waits) == 1
    assert 30.0 <= sleeps.waits[0] <= 31.0


def test_a_503_to_a_post_is_not_retried_when_replays_are_unsafe(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook], requests_mock: rm.Mocker
) -> None:
    # A 503 is what a lost acceptance looks like: without a server that honours the key, a retry could
    # create a second analysis.
    connection(retry_ambiguous_posts="false")
    requests_mock.post(f"{API}/analysis/", [{"status_code": 503, "json": {"detail": "busy"}}, CREATED])
    with pytest.raises(ServerError):
        make_hook().submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav")
    assert len(requests_mock.request_history) == 1


def test_a_429_paces_the_other_requests_of_the_account(
    make_hook: Callable[..., CallCovHook], requests_mock: rm.Mocker, sleeps: SleepRecorder
) -> None:
    first, second = make_hook(), make_hook()
    assert first.pacer is second.pacer
    requests_mock.get(
        f"{API}/analysis/a1",
        [
            {"status_code": 429, "headers": {"Retry-After": "20"}, "json": {"detail": "x"}},
            {"json": analysis("a1")},
        ],
    )
    requests_mock.get(f"{API}/analysis/a2", json=analysis("a2"))
    first.get_analysis("a1")
    assert len(sleeps.waits) == 1  # its own retry wait, not the gate again
    second.get_analysis("a2")
    # The other hook waits for the gate the first one learnt (the fake sleep did not pass real time).
    assert len(sleeps.waits) == 2
    assert 19.0 <= sleeps.waits[1] <= 20.0


def test_the_async_path_honours_the_message_wait(
    make_hook: Callable[..., CallCovHook], sleeps: SleepRecorder
) -> None:
    answers = [
        httpx.Response(429, content=PAGE_000_429, headers={"X-RateLimit-Remaining": "95"}),
        httpx.Response(200, json=analysis("a1")),
    ]
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return answers[len(calls) - 1]

    hook = make_hook()
    hook.async_transport = httpx.MockTransport(handler)

    async def run() -> Any:
        try:
            return await hook.aget_analysis("a1")
        finally:
            await hook.aclose()

    assert asyncio.run(run()).id == "a1"
    assert len(calls) == 2
    assert len(sleeps.waits) == 1
    assert 32.0 <= sleeps.waits[0] <= 33.0


def test_a_window_joined_half_way_teaches_nothing() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(clock)
    for _ in range(3):
        pacer.accepted()
        clock.now += 1
    # Refused with 30 s left: the window began 27 s before this pacer's first submission.
    gate = pacer.rate_limited(30.0, submission=True)
    assert pacer.stats().submissions_per_minute is None
    clock.now = gate
    assert [pacer.reserve(submission=True) for _ in range(5)] == [0.0] * 5
