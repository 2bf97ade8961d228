"""
:class:`Waiter` is the one wait loop of the provider, around a tracker: the trigger, the sensor (poke and
reschedule mode) and the submit operator's worker wait all use it, so they share one request budget per
cycle, one failure rule (:data:`MAX_CONSECUTIVE_FAILURES` failed cycles in a row end the wait; a 429 is the
API pacing us and is waited out, never counted), and one deferral margin (:data:`DEFERRAL_TIMEOUT_MARGIN`).
Its :meth:`Waiter.state` is a small JSON value from which a new waiter resumes (reschedule mode keeps it
between pokes in Airflow's task state store).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callcov_provider.exceptions import (
    APIConnectionError,
    CallCovError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)
from callcov_provider.hooks.retry import UNANNOUNCED_QUOTA_WAIT
from callcov_provider.tracking import (
    MAX_REQUESTS_PER_CYCLE,
    BatchTracker,
    GetRequest,
    PollRequest,
)

if TYPE_CHECKING:
    from callcov_provider.hooks.callcov import CallCovHook

#: Failed poll cycles in a row (connection errors, timeouts, 5xx, unreadable answers) that end a wait.
#: Paced waits (429) are not failures and are never counted.
MAX_CONSECUTIVE_FAILURES = 10
#: Seconds by which Airflow's own deferral timeout trails the waiter's deadline, so the waiter's
#: ``timeout`` event, with what it knows, arrives first.
DEFERRAL_TIMEOUT_MARGIN = 60.0
#: Errors after which the next cycle tries again (counted against :data:`MAX_CONSECUTIVE_FAILURES`).
TRANSIENT_ERRORS: tuple[type[CallCovError], ...] = (APIConnectionError, ServerError, UnexpectedResponseError)

@dataclass(frozen=True)
class CycleReport:
    """
    What one poll cycle did.

    :param requests: Requests answered in the cycle.
    :param paced: Seconds the API asked us to wait (a 429 that outlasted the hook's own retries): the
        next cycle waits at least this long. Not a failure.
    :param failure: The transient error that ended the cycle, counted against the failure rule.
    """

    requests: int
    paced: float | None = None
    failure: CallCovError | None = None


class WaitFailedError(CallCovError):
    """:data:`MAX_CONSECUTIVE_FAILURES` poll cycles in a row failed."""

    default_code = "wait_failed"


def _now() -> float:
    return time.time()


class Waiter:
    """
    The provider's one wait: poll cycles over a :class:`BatchTracker` under one failure rule.

    Each cycle makes at most ``budget`` requests. A cycle that ends in a transient error
    (:data:`TRANSIENT_ERRORS`) counts as failed; ``max_failures`` of them in a row raise
    :class:`WaitFailedError`. A 429 that the hook's own retries did not outlast is a *paced* wait: no
    request is made until the time the API named (61 s when it named none,
    :data:`~callcov_provider.hooks.retry.UNANNOUNCED_QUOTA_WAIT`), and it is never counted. Any other
    error (authentication, an unknown id, a refused request) ends the wait at once, raised from
    :meth:`cycle`.

    :param analysis_ids: The ids to wait for.
    :param budget: Requests a cycle may make (``None``: a whole sweep).
    :param max_failures: Failed cycles in a row that end the wait.
    :param rotation: See :class:`BatchTracker`.
    :param clock: Epoch seconds (default: ``time.time``).
    """

    def __init__(
        self,
        analysis_ids: Iterable[str],
        *,
        budget: int | None = MAX_REQUESTS_PER_CYCLE,
        max_failures: int = MAX_CONSECUTIVE_FAILURES,
        rotation: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.tracker = BatchTracker(analysis_ids, rotation=rotation)
        self.budget = budget
        self.max_failures = max_failures
        self.failures_in_row = 0
        #: Epoch time before which no request is made (the API's paced wait).
        self.not_before = 0.0
        self.cycles = 0
        self._clock = clock if clock is not None else _now
        self._made = 0

    @property
    def done(self) -> bool:
        """Whether every analysis has finished."""
        return self.tracker.done

    # -- state -------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """A small JSON value from which :meth:`restore` resumes this wait in another process."""
        return {
            "v": 1,
            "tracker": self.tracker.state(),
            "failures_in_row": self.failures_in_row,
            "not_before": self.not_before,
            "cycles": self.cycles,
        }

    def restore(self, state: Any) -> None:
        """Resume from :meth:`state` (an unreadable value is ignored: the wait starts afresh)."""
        if not isinstance(state, dict) or state.get("v") != 1:
            return
        self.tracker.restore(state.get("tracker"))
        for name in ("failures_in_row", "cycles"):
            value = state.get(name)
            if isinstance(value, int) and value >= 0:
                setattr(self, name, value)
        not_before = state.get("not_before")
        if isinstance(not_before, (int, float)):
            self.not_before = float(not_before)

    # -- cycles ------------------------------------------------------------------------------------------

    def _start(self) -> float | None:
        self.cycles += 1
        self._made = 0
        wait = self.not_before - self._clock()
        return wait if wait > 0 else None

    def _request_allowed(self) -> PollRequest | None:
        if self.budget is not None and self._made >= self.budget:
            return None
        return self.tracker.next_request()

    def _settle(self, error: CallCovError | None) -> CycleReport:
        """Apply the failure rule to how the cycle ended."""
        if error is None:
            self.failures_in_row = 0
            return CycleReport(self._made)
        if isinstance(error, RateLimitedError):
            wait = UNANNOUNCED_QUOTA_WAIT if error.retry_after is None else max(0.0, error.retry_after)
            self.not_before = max(self.not_before, self._clock() + wait)
            return CycleReport(self._made, paced=wait)
        if isinstance(error, TRANSIENT_ERRORS):
            self.failures_in_row += 1
            if self.failures_in_row >= self.max_failures:
                raise WaitFailedError(f"{self.failures_in_row} poll failures in a row: {error}") from error
            return CycleReport(self._made, failure=error)
        raise error

    def cycle(self, hook: CallCovHook) -> CycleReport:
        """One poll cycle with the sync hook."""
        paced = self._start()
        if paced is not None:
            return CycleReport(0, paced=paced)
        try:
            while (request := self._request_allowed()) is not None:
                if isinstance(request, GetRequest):
                    self.tracker.feed(hook.get_analysis(request.analysis_id))
                else:
                    self.tracker.feed(
                        hook.list_analyses(
                            status_filter=request.status_filter, limit=request.limit, offset=request.offset
                        )
                    )
                self._made += 1
        except CallCovError as err:
            return self._settle(err)
        return self._settle(None)

    async def acycle(self, hook: CallCovHook) -> CycleReport:
        """The async twin of :meth:`cycle`, on the hook's httpx path; never blocks the event loop."""
        paced = self._start()
        if paced is not None:
            return CycleReport(0, paced=paced)
        try:
            while (request := self._request_allowed()) is not None:
                if isinstance(request, GetRequest):
                    self.tracker.feed(await hook.aget_analysis(request.analysis_id))
                else:
                    self.tracker.feed(
                        await hook.alist_analyses(
                            status_filter=request.status_filter, limit=request.limit, offset=request.offset
                        )
                    )
                self._made += 1
        except CallCovError as err:
            return self._settle(err)
        return self._settle(None)

    def pause(self, poll_interval: float, end_time: float) -> float:
        """Seconds to sleep before the next cycle: the poll interval, or the API's paced wait when longer,
        never past ``end_time``."""
        now = self._clock()
        wait = max(poll_interval, self.not_before - now)
        return max(0.0, min(wait, end_time - now))

    # -- whole waits -------------------------------------------------------------------------------------

    def wait(
        self,
        hook: CallCovHook,
        *,
        poll_interval: float,
        end_time: float,
        sleep: Callable[[float], None] = time.sleep,
        log: Any = None,
    ) -> bool:
        """
        Poll with the sync hook until done (``True``) or ``end_time`` passes (``False``).

        :raises WaitFailedError: after ``max_failures`` failed cycles in a row.
        :raises CallCovError: for an error no later cycle can cure (authentication, unknown id).
        """
        while True:
            report = self.cycle(hook)
            self.log_cycle(log, report)
            if self.done:
                return True
            if self._clock() >= end_time:
                return False
            sleep(self.pause(poll_interval, end_time))

    async def await_done(
        self,
        hook: CallCovHook,
        *,
        poll_interval: float,
        end_time: float,
        sleep: Callable[[float], Awaitable[None]],
        log: Any = None,
    ) -> bool:
        """The async twin of :meth:`wait` (``sleep`` is the event loop's, e.g. ``asyncio.sleep``)."""
        while True:
            report = await self.acycle(hook)
            self.log_cycle(log, report)
            if self.done:
                return True
            if self._clock() >= end_time:
                return False
            await sleep(self.pause(poll_interval, end_time))

    def log_cycle(self, log: Any, report: CycleReport) -> None:
        """Log what a cycle did to ``log`` (``None``: nothing)."""
        if log is None:
            return
        if report.failure is not None:
            log.warning(
                "CallCov poll failed (%d in a row, limit %d): %s",
                self.failures_in_row,
                self.max_failures,
                report.failure,
            )
        elif report.paced is not None:
            log.info(
                "CallCov asked to wait %.0f s before the next request; waiting (not a failure)", report.paced
            )
        else:
            counts = self.tracker.counts()
            log.info(
                "CallCov: %d of %d analyses finished (%d requests this cycle)",
                counts["total"] - counts["pending"],
                counts["total"],
                report.requests,
            )
