"""Per-account rate limits in fixed one-minute windows, and the ``X-RateLimit-*`` headers they produce."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

WINDOW_SECONDS = 60
#: ``X-RateLimit-Limit`` reported when no request limit is configured (nothing is ever refused).
UNLIMITED = 1_000_000


@dataclass(frozen=True)
class RateDecision:
    """
    The verdict on one request and the headers that describe the account's window.

    :param allowed: Whether the request may proceed.
    :param limit: ``X-RateLimit-Limit``.
    :param remaining: ``X-RateLimit-Remaining``.
    :param reset: ``X-RateLimit-Reset``, epoch seconds (emulator clock) when the window ends.
    :param retry_after: Whole seconds until the window ends (for ``Retry-After``), at least 1.
    :param kind: ``requests`` or ``submissions``: which limit decided.
    :param reset_format: How :meth:`headers` writes the reset: ``epoch``, ``epoch_ms`` or ``delta``.
    """

    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int
    kind: str
    reset_format: str = "epoch"

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": format_reset(self.reset, self.retry_after, self.reset_format),
        }


def format_reset(reset: int, seconds_left: int, reset_format: str) -> str:
    """``X-RateLimit-Reset`` as epoch seconds, epoch milliseconds or seconds left (``delta``)."""
    if reset_format == "epoch_ms":
        return str(reset * 1000)
    if reset_format == "delta":
        return str(seconds_left)
    return str(reset)


class RateLimiter:
    """Counts requests and submissions per account and window. Every request counts, refused or not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, int], int] = {}

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()

    def _hit(self, account: str, kind: str, window: int) -> int:
        key = (account, kind, window)
        self._counts[key] = self._counts.get(key, 0) + 1
        if len(self._counts) > 10_000:
            # Old windows are of no use; keep the dict small.
            for stale in [k for k in self._counts if k[2] < window]:
                del self._counts[stale]
        return self._counts[key]

    def check(
        self,
        account: str,
        now: float,
        *,
        requests_per_minute: int | None,
        submissions_per_minute: int | None,
        is_submission: bool,
        separate_quotas: bool = False,
        reset_format: str = "epoch",
    ) -> RateDecision:
        """
        Count one request of ``account`` at ``now`` and decide whether it may proceed.

        :param separate_quotas: The documented behaviour: the headers always describe the request quota
            (a refused submission still shows the requests remaining), and the request quota is checked
            first. Otherwise a refused submission reports the submission quota in the headers.
        :param reset_format: See :func:`format_reset`.
        """
        window = int(now // WINDOW_SECONDS)
        reset = (window + 1) * WINDOW_SECONDS
        retry_after = max(1, math.ceil(reset - now))
        with self._lock:
            used = self._hit(account, "requests", window)
            submissions = self._hit(account, "submissions", window) if is_submission else 0
        limit = requests_per_minute if requests_per_minute is not None else UNLIMITED
        remaining = max(0, limit - used)
        over_requests = used > limit
        over_submissions = (
            is_submission and submissions_per_minute is not None and submissions > submissions_per_minute
        )
        if separate_quotas:
            if over_requests:
                return RateDecision(False, limit, 0, reset, retry_after, "requests", reset_format)
            if over_submissions:
                return RateDecision(False, limit, remaining, reset, retry_after, "submissions", reset_format)
            return RateDecision(True, limit, remaining, reset, retry_after, "requests", reset_format)
        if over_submissions:
            assert submissions_per_minute is not None
            return RateDecision(
                False, submissions_per_minute, 0, reset, retry_after, "submissions", reset_format
            )
        if over_requests:
            return RateDecision(False, limit, 0, reset, retry_after, "requests", reset_format)
        return RateDecision(True, limit, remaining, reset, retry_after, "requests", reset_format)
