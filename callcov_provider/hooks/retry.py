"""
The provider's one retry policy, shared by the sync (requests) and async (httpx) paths.

The decision "retry or not, and how long to wait" is a pure function of the method, the attempt number,
and the outcome (a status with headers, or a transport failure). Both transports wrap it in tenacity.

What is retried:

* every method: connection failures before the request was sent, 429 and 503;
* GET: also timeouts, dropped connections and 500/502/504;
* POST: also the *ambiguous* failures (read timeout, dropped connection, 500/502/504) where the server
  may already have accepted the submission. This is safe only because every POST carries an
  ``Idempotency-Key`` that the API uses to return the first analysis instead of creating a second. For a
  server that ignores the key, set the connection extra ``retry_ambiguous_posts`` to ``false``.
* never: any other 4xx.

Where the server says when to come back (``Retry-After`` in seconds or as an HTTP date, or, once the
quota is spent, ``X-RateLimit-Reset``), the wait is that plus up to a second of jitter; otherwise it is
exponential backoff with full jitter. Retries stop at ``max_retries`` (``max_rate_limited_retries`` while
the server paces us with 429 and a wait), or when the next wait would pass ``deadline`` seconds since
the first attempt.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES_ANY_METHOD = frozenset({429, 503})

#: Seconds of jitter, at most, added to a wait the server asked for.
SERVER_WAIT_JITTER = 1.0
RETRYABLE_STATUSES_IDEMPOTENT = frozenset({500, 502, 504})


class TransportFailure(str, enum.Enum):
    """How a request failed without an HTTP response."""

    #: The connection could not be made: nothing was sent, any method may retry.
    CONNECT = "connect error"
    #: Connecting took too long: nothing was sent.
    CONNECT_TIMEOUT = "connect timeout"
    #: The request was sent, the answer did not come in time: the server may have acted on it.
    READ_TIMEOUT = "read timeout"
    #: The connection broke after sending: the server may have acted on it.
    DROPPED = "connection dropped"

    @property
    def request_was_sent(self) -> bool:
        """Whether the server may have received (and acted on) the request."""
        return self in (TransportFailure.READ_TIMEOUT, TransportFailure.DROPPED)


@dataclass(frozen=True)
class Outcome:
    """What one attempt ended with: an HTTP status and its headers, or a transport failure."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    failure: TransportFailure | None = None

    def describe(self) -> str:
        """A short reason for logs, e.g. ``HTTP 503`` or ``read timeout``."""
        if self.failure is not None:
            return self.failure.value
        return f"HTTP {self.status}"


@dataclass(frozen=True)
class RetryPolicy:
    """
    When and how long to retry a CallCov request.

    :param max_retries: Retries after the first attempt, at most.
    :param max_rate_limited_retries: Retries, at most, while the server answers 429 with a wait to honour.
    :param deadline: Seconds since the first attempt after which no retry starts.
    :param backoff_base: First backoff ceiling in seconds; doubles each attempt.
    :param backoff_cap: Largest backoff ceiling in seconds (before the server's requested wait).
    :param retry_ambiguous_posts: Retry a POST whose fate is unknown (read timeout, dropped connection,
        500/502/504). Safe only with a server that honours ``Idempotency-Key``.
    """

    max_retries: int = 5
    max_rate_limited_retries: int = 20
    deadline: float = 300.0
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    retry_ambiguous_posts: bool = True

    def is_retryable(self, method: str, outcome: Outcome) -> bool:
        """Whether ``outcome`` of a ``method`` request may be retried at all."""
        idempotent = method.upper() in ("GET", "HEAD", "OPTIONS") or self.retry_ambiguous_posts
        if outcome.failure is not None:
            return idempotent or not outcome.failure.request_was_sent
        if outcome.status in RETRYABLE_STATUSES_ANY_METHOD:
            return True
        return outcome.status in RETRYABLE_STATUSES_IDEMPOTENT and idempotent

    def backoff(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        """Full-jitter backoff before retry number ``attempt`` (1-based)."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        return rng(0.0, ceiling)

    @staticmethod
    def is_paced(outcome: Outcome, *, now: float | None = None) -> bool:
        """Whether ``outcome`` is a 429 that says when to come back: the API pacing us, not failing."""
        return outcome.status == 429 and server_requested_wait(outcome.headers, now=now) is not None

    def retry_limit(self, outcome: Outcome, *, now: float | None = None) -> int:
        """
        How many retries of its kind ``outcome`` allows: paced 429s have their own, larger bound, and the
        caller counts them apart from failures (see ``RetryController``).
        """
        return self.max_rate_limited_retries if self.is_paced(outcome, now=now) else self.max_retries

    def next_wait(
        self,
        method: str,
        attempt: int,
        outcome: Outcome,
        elapsed: float,
        *,
        now: float | None = None,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> float | None:
        """
        Decide whether to retry after ``attempt`` attempts, and how long to wait first.

        :param method: HTTP method of the request.
        :param attempt: How many attempts have been made (1 after the first).
        :param outcome: How the last attempt ended.
        :param elapsed: Seconds since the first attempt started.
        :param now: Current epoch time, for ``X-RateLimit-Reset`` (defaults to ``time.time()``).
        :param rng: Source of jitter, replaceable in tests.
        :return: Seconds to wait before the next attempt, or ``None`` to stop.
        """
        if not self.is_retryable(method, outcome):
            return None
        server_wait = server_requested_wait(outcome.headers, now=now)
        if attempt > self.retry_limit(outcome, now=now):
            return None
        if server_wait is not None:
            # Come back when the server said, plus a little jitter so that clients it turned away
            # together do not all return in the same instant.
            wait = server_wait + rng(0.0, min(self.backoff_base, SERVER_WAIT_JITTER))
        else:
            wait = self.backoff(attempt, rng)
        if elapsed + wait > self.deadline:
            return None
        return wait


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _quota_left(headers: Mapping[str, str]) -> bool:
    """Whether ``X-RateLimit-Remaining`` says requests are left in the current window."""
    remaining = _header(headers, "X-RateLimit-Remaining")
    if remaining is None:
        return False
    try:
        return float(remaining.strip()) > 0
    except ValueError:
        return False


def server_requested_wait(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """
    The wait the server asked for, in seconds: ``Retry-After`` first, then ``X-RateLimit-Reset``.

    ``Retry-After`` may be delta-seconds or an HTTP date; ``X-RateLimit-Reset`` is an epoch time
    (page 001 shows ``1642248060``). Values in the past count as no wait.

    The API sends ``X-RateLimit-*`` on every answer, so the reset time is a requested wait only when the
    quota is spent: with ``X-RateLimit-Remaining`` above 0 (a 5xx while quota is left) it is ignored, or
    every server error would wait for the rate-limit window to end (up to a minute).
    """
    current = time.time() if now is None else now
    retry_after = _header(headers, "Retry-After")
    if retry_after:
        value = retry_after.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                moment = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                pass
            else:
                # An HTTP date is always UTC; a "-0000" zone parses as naive, which is not local time.
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                return max(0.0, moment.timestamp() - current)
    reset = _header(headers, "X-RateLimit-Reset")
    if reset and not _quota_left(headers):
        try:
            reset_value = float(reset.strip())
        except ValueError:
            return None
        # A small number is a delta in seconds; an epoch time is far larger.
        if reset_value < 1e9:
            return max(0.0, reset_value)
        return max(0.0, reset_value - current)
    return None
