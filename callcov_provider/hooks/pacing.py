"""
One quota pacer per API account and process: every request of every hook that talks to the same account
waits its turn here, so that concurrent submissions stop together when one of them learns a wait, and a
batch runs at the quota rather than against it.

The API's quotas are per minute, and only the *request* quota is described by headers
(``docs/api-contract.md#quotas``): the submission quota shows itself only as a 429. So the pacer learns
it from the API's own answers. When a submission is refused with a wait ``w``, the quota window ends in
``w`` seconds; if the pacer saw that window from its start, the submissions accepted since then are the
quota, and from then on submissions are spaced evenly at that rate (a little below it), instead of
bursting into the next window and being refused again. Until then a refusal only holds every request
back until the window ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

#: The documented quotas count per minute.
QUOTA_WINDOW_SECONDS = 60.0
#: Learned spacing is this much slower than the measured quota, so clock drift costs no 429.
SPACING_MARGIN = 1.03


@dataclass(frozen=True)
class PacingStats:
    """
    What pacing has cost so far.

    :param rate_limited: 429 answers seen.
    :param paced_seconds: Seconds requests spent waiting for their turn (summed over requests).
    :param submissions_per_minute: The submission quota learnt from the API, once one was refused.
    """

    rate_limited: int
    paced_seconds: float
    submissions_per_minute: float | None


class QuotaPacer:
    """
    Shared turn-taking for the requests to one account. Thread-safe; usable from event loops too (the
    lock only guards a few arithmetic steps, never a wait).

    :param clock: Monotonic seconds; replaceable in tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._not_before = 0.0
        self._next_submission = 0.0
        self._interval: float | None = None
        self._accepted: deque[float] = deque()
        self._first_accepted: float | None = None
        self._rate_limited = 0
        self._paced_seconds = 0.0

    def reserve(self, *, submission: bool, waited_until: float = 0.0) -> float:
        """
        Take the next turn and return how many seconds to wait for it (0 when it is now).

        :param waited_until: The gate (a value :meth:`rate_limited` returned) this request has already
            slept out as its own retry wait: it does not wait for it twice.
        """
        with self._lock:
            now = self._clock()
            start = now
            if self._not_before > waited_until:
                start = max(start, self._not_before)
            if submission and self._interval is not None and self._next_submission > waited_until:
                start = max(start, self._next_submission)
            if submission and self._interval is not None:
                self._next_submission = start + self._interval
            wait = start - now
            self._paced_seconds += wait
            return wait

    def wait_turn(
        self, sleep: Callable[[float], None], *, submission: bool, waited_until: float = 0.0
    ) -> None:
        """Block until this request's turn (sync path)."""
        wait = self.reserve(submission=submission, waited_until=waited_until)
        if wait > 0:
            sleep(wait)

    async def await_turn(
        self,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        *,
        submission: bool,
        waited_until: float = 0.0,
    ) -> None:
        """Wait for this request's turn without blocking the event loop (async path)."""
        wait = self.reserve(submission=submission, waited_until=waited_until)
        if wait > 0:
            await sleep(wait)

    def accepted(self) -> None:
        """Note one submission the API accepted."""
        with self._lock:
            now = self._clock()
            if self._first_accepted is None:
                self._first_accepted = now
            self._accepted.append(now)
            while self._accepted and self._accepted[0] < now - QUOTA_WINDOW_SECONDS:
                self._accepted.popleft()

    def rate_limited(self, wait: float, *, submission: bool) -> float:
        """
        Note a 429 after which the API asked for ``wait`` seconds: every request waits that long, and a
        refused submission teaches the submission quota.

        :return: The gate now set; the refused request, which sleeps its own retry wait, passes it as
            ``waited_until`` to its next turn.
        """
        with self._lock:
            now = self._clock()
            self._rate_limited += 1
            self._not_before = max(self._not_before, now + wait)
            gate = self._not_before
            if not submission:
                return gate
            # The window ends in `wait` seconds; a wait of a whole window or more says nothing of when
            # it began, so count the last full window.
            elapsed = QUOTA_WINDOW_SECONDS - wait if 0 < wait < QUOTA_WINDOW_SECONDS else QUOTA_WINDOW_SECONDS
            window_start = now - elapsed
            # Only a window this pacer saw from its start tells the quota: one it joined half way holds
            # submissions it never counted, and a burst of 429s from elsewhere would teach a tiny quota.
            saw_whole_window = self._first_accepted is not None and self._first_accepted <= window_start
            in_window = sum(1 for moment in self._accepted if moment >= window_start)
            if saw_whole_window and in_window:
                self._interval = QUOTA_WINDOW_SECONDS / in_window * SPACING_MARGIN
                self._next_submission = max(self._next_submission, self._not_before)
            return max(gate, self._next_submission)

    def stats(self) -> PacingStats:
        """What pacing has cost so far."""
        with self._lock:
            per_minute = None if self._interval is None else QUOTA_WINDOW_SECONDS / self._interval
            return PacingStats(self._rate_limited, self._paced_seconds, per_minute)


_registry_lock = threading.Lock()
_pacers: dict[tuple[str, ...], QuotaPacer] = {}


def pacer_for(*account: str) -> QuotaPacer:
    """The process's one pacer for an account, named by whatever identifies it (connection and URL)."""
    with _registry_lock:
        pacer = _pacers.get(account)
        if pacer is None:
            pacer = _pacers[account] = QuotaPacer()
        return pacer


def forget_pacers() -> None:
    """Drop every account's pacer (what it learnt and every wait it set): for tests that fake time."""
    with _registry_lock:
        _pacers.clear()
