"""
The provider's one retry policy, shared by the sync (requests) and async (httpx) paths.

The decision "retry or not, and how long to wait" is a pure function of the method, the attempt number,
and the outcome (a status with headers, or a transport failure). Both transports wrap it in tenacity.

What is retried:

* every method: connection failures before the request was sent, and 429 (the API pacing us);
* GET: also timeouts, dropped connections and 500/502/503/504;
* POST: also the *ambiguous* failures (read timeout, dropped connection, 500/502/503/504) where the
  server may already have accepted the submission (a 503 is exactly what a lost acceptance behind a
  proxy looks like). This is safe only because every POST carries an
  ``Idempotency-Key`` that the API uses to return the first analysis instead of creating a second. For a
  server that ignores the key, set the connection extra ``retry_ambiguous_posts`` to ``false``.
* never: any other 4xx.

Where the server says when to come back (:func:`server_requested_wait`: ``Retry-After``, the wait a
429's message names, or ``X-RateLimit-Reset`` once the quota is spent, against the server's clock), the
wait is that plus up to a second of jitter; a 429 that says nothing waits out a whole quota window;
anything else backs off exponentially with full jitter. 429s are pacing, not failures: they count against
their own bound (``max_rate_limited_retries``), failures against ``max_retries``. No retry starts whose
wait would pass ``deadline`` seconds since the first attempt: the caller then raises
:class:`~callcov_provider.exceptions.RateLimitedError` naming the wait.
"""

from __future__ import annotations

import enum
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES_ANY_METHOD = frozenset({429})

#: Seconds of jitter, at most, added to a wait the server asked for.
SERVER_WAIT_JITTER = 1.0
#: The wait after a 429 that names none: the quotas are per minute, so this outlasts any window.
UNANNOUNCED_QUOTA_WAIT = 61.0
#: ``X-RateLimit-Reset`` values at or above this are epoch times, not deltas (1e9 s is in 2001).
EPOCH_SECONDS_FROM = 1e9
#: ...and at or above this, epoch milliseconds (1e11 s would be in the year 5138).
EPOCH_MILLISECONDS_FROM = 1e11
#: How much of an error body is searched for the wait its message names.
MESSAGE_SCAN_BYTES = 4096
_MESSAGE_WAIT = re.compile(
    r"(?:try\s+again|retry|wait)\s+(?:in|after)\s+(?:about\s+)?(?P<amount>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>milliseconds?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|h)?\b",
    re.IGNORECASE,
)
RETRYABLE_STATUSES_IDEMPOTENT = frozenset({500, 502, 503, 504})


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
    """What one attempt ended with: an HTTP status with its headers and body, or a transport failure."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    failure: TransportFailure | None = None
    #: The response body (only its first few KiB are ever read, for the wait a 429's message names).
    body: bytes = b""

    def describe(self) -> str:
        """A short reason for logs, e.g. ``HTTP 503`` or ``read timeout``."""
        if self.failure is not None:
            return self.failure.value
        return f"HTTP {self.status}"

    def requested_wait(self, *, now: float | None = None) -> float | None:
        """The wait the server asked for (see :func:`server_requested_wait`), or ``None``."""
        return server_requested_wait(self.headers, body=self.body, status=self.status, now=now)


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
    def is_paced(outcome: Outcome) -> bool:
        """
        Whether ``outcome`` is the API pacing us rather than failing: every 429 is. Its wait is the one
        the server named (:func:`server_requested_wait`), or :data:`UNANNOUNCED_QUOTA_WAIT` when it named
        none, so paced retries never count against the retries left for failures.
        """
        return outcome.status == 429

    def retry_limit(self, outcome: Outcome) -> int:
        """
        How many retries of its kind ``outcome`` allows: paced 429s have their own, larger bound, and the
        caller counts them apart from failures (see ``RetryController``).
        """
        return self.max_rate_limited_retries if self.is_paced(outcome) else self.max_retries

    def paced_wait(self, outcome: Outcome, *, now: float | None = None) -> float:
        """The wait before retrying a 429: the server's word, else long enough to outlast its window."""
        wait = outcome.requested_wait(now=now)
        return UNANNOUNCED_QUOTA_WAIT if wait is None else wait

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
        if attempt > self.retry_limit(outcome):
            return None
        if self.is_paced(outcome):
            server_wait: float | None = self.paced_wait(outcome, now=now)
        else:
            server_wait = outcome.requested_wait(now=now)
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


def _http_date(value: str) -> float | None:
    """An HTTP date as epoch seconds (always UTC), or ``None`` when it is not one."""
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    # An HTTP date is always UTC; a "-0000" zone parses as naive, which is not local time.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _server_now(headers: Mapping[str, str], local_now: float) -> float:
    """
    The server's clock at the time of the answer, from its ``Date`` header when it sent one.

    Epoch times the server sends (``X-RateLimit-Reset``, an HTTP-date ``Retry-After``) are in its clock:
    measured against ours, a client 90 s ahead would see every reset as past and retry at once.
    """
    date = _header(headers, "Date")
    server_now = _http_date(date) if date else None
    return local_now if server_now is None else server_now


def _epoch_seconds(value: float) -> float:
    """``X-RateLimit-Reset`` as epoch seconds: servers send epoch seconds or epoch milliseconds."""
    return value / 1000.0 if value >= EPOCH_MILLISECONDS_FROM else value


def message_wait(body: bytes) -> float | None:
    """
    The wait named in an error message, e.g. "Rate limit exceeded. Please try again in 32 seconds."

    Reads the first few KiB of the body as text, whatever its shape (``{"error": {"message"}}``,
    ``{"detail"}`` or plain text), and understands seconds, minutes and milliseconds.
    """
    text = body[:MESSAGE_SCAN_BYTES].decode("utf-8", errors="replace")
    match = _MESSAGE_WAIT.search(text)
    if match is None:
        return None
    amount = float(match.group("amount"))
    unit = (match.group("unit") or "s").lower()
    if unit.startswith("ms") or unit.startswith("milli"):
        return amount / 1000.0
    if unit.startswith("m"):
        return amount * 60.0
    if unit.startswith("h"):
        return amount * 3600.0
    return amount


def server_requested_wait(
    headers: Mapping[str, str], *, body: bytes = b"", status: int | None = None, now: float | None = None
) -> float | None:
    """
    The wait the server asked for, in seconds, or ``None`` when it said nothing. In this order:

    1. ``Retry-After``: delta-seconds or an HTTP date;
    2. for a 429, the wait named in its message ("Please try again in 32 seconds."): the documented
       API sends only that (``docs/api-contract.md#quotas``);
    3. ``X-RateLimit-Reset``, only when ``X-RateLimit-Remaining`` is 0: an epoch time in seconds or
       milliseconds, or a small delta. The headers describe the *request* quota and come with every
       answer, so while requests are left the reset says nothing about a refused submission (or a 5xx).

    Epoch times are measured against the server's ``Date`` header when present (clock skew).
    Values in the past count as no wait.
    """
    local_now = time.time() if now is None else now
    server_now = _server_now(headers, local_now)
    retry_after = _header(headers, "Retry-After")
    if retry_after:
        value = retry_after.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            moment = _http_date(value)
            if moment is not None:
                return max(0.0, moment - server_now)
    if status == 429 and body:
        named = message_wait(body)
        if named is not None:
            return max(0.0, named)
    reset = _header(headers, "X-RateLimit-Reset")
    if reset and not _quota_left(headers):
        try:
            reset_value = float(reset.strip())
        except ValueError:
            return None
        # A small number is a delta in seconds; an epoch time is far larger.
        if reset_value < EPOCH_SECONDS_FROM:
            return max(0.0, reset_value)
        return max(0.0, _epoch_seconds(reset_value) - server_now)
    return None
