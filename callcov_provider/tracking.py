"""
Track a batch of analyses to completion with a bounded number of list requests.

:class:`BatchTracker` is pure logic with no I/O: it says which request to make next and learns from each
answer. The trigger drives it with the async hook, the sensor's poke mode with the sync hook, so both
modes poll the same way.

How a batch is polled (one *sweep*; a sweep may span several poll cycles when a cycle's request budget
runs out, so the cost of a cycle never grows with the batch):

1. ``status_filter=processing`` pages (1000 a page) tell which of the batch's ids are still running.
2. Ids that are not running any more are confirmed from the ``completed`` and then, for any not found
   there, the ``failed`` listings (most finish well, so the second is usually not read at all), newest
   first, stopping as soon as all are found or the page is older than the batch's oldest analysis
   (the API lists by creation time, newest first; the listing reference). When some of those ids were never
   seen (they finished before the first poll, and are often the batch's oldest), one GET of the first of
   them in input order tells how far back that is.
3. The few ids the listings could not account for (an id that moved between pages while they were read,
   or one older than expected) are read with single GETs, at most ``fallback_gets`` a sweep.

A sweep never costs more requests than reading the ids still pending one by one would, and each sweep
chooses: single GETs of every pending id when the ``processing`` listing alone would cost as much (or,
in a tracker's first sweep, when at most three are pending); single GETs of the ids that left that
listing when there are fewer of them than confirming from the listings took last time; pages otherwise.
A sweep stops once it has spent as many requests as there are pending ids; what it learnt of the
costs steers the next sweep.

A batch of one id is simply read with one GET per cycle. A terminal status, once seen, is final: the
API never moves an analysis back to ``processing``.

:class:`Waiter` is the one wait loop of the provider, around a tracker: the trigger, the sensor (poke and
reschedule mode) and the submit operator's worker wait all use it, so they share one request budget per
cycle, one failure rule (:data:`MAX_CONSECUTIVE_FAILURES` failed cycles in a row end the wait; a 429 is the
API pacing us and is waited out, never counted), and one deferral margin (:data:`DEFERRAL_TIMEOUT_MARGIN`).
Its :meth:`Waiter.state` is a small JSON value from which a new waiter resumes (reschedule mode keeps it
between pokes in Airflow's task state store).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator, Iterable
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
from callcov_provider.models import LIST_LIMIT_MAX, Analysis, AnalysisList, AnalysisStatus, AnalysisSummary

if TYPE_CHECKING:
    from callcov_provider.hooks.callcov import CallCovHook

#: Seconds of slack below the oldest known creation time, so clock rounding never hides an analysis.
CREATED_SLACK_SECONDS = 5.0
#: Requests one poll cycle may make, however many ids the wait is for.
MAX_REQUESTS_PER_CYCLE = 5
#: Failed poll cycles in a row (connection errors, timeouts, 5xx, unreadable answers) that end a wait.
#: Paced waits (429) are not failures and are never counted.
MAX_CONSECUTIVE_FAILURES = 10
#: Seconds by which Airflow's own deferral timeout trails the waiter's deadline, so the waiter's
#: ``timeout`` event, with what it knows, arrives first.
DEFERRAL_TIMEOUT_MARGIN = 60.0
#: Errors after which the next cycle tries again (counted against :data:`MAX_CONSECUTIVE_FAILURES`).
TRANSIENT_ERRORS: tuple[type[CallCovError], ...] = (APIConnectionError, ServerError, UnexpectedResponseError)
#: With this many pending ids or fewer, a tracker's first sweep reads each one with a GET: a list sweep
#: that finds any finished costs at least as much (the ``processing`` page, one GET, a page of finished
#: analyses).
SMALL_BATCH = 3


@dataclass(frozen=True)
class ListRequest:
    """Read one page of ``GET /analysis/``."""

    status_filter: str
    offset: int
    limit: int = LIST_LIMIT_MAX


@dataclass(frozen=True)
class GetRequest:
    """Read one analysis with ``GET /analysis/{id}``."""

    analysis_id: str


PollRequest = ListRequest | GetRequest
PollResponse = AnalysisList | Analysis
_Sweep = Generator[PollRequest, PollResponse, None]


class BatchTracker:
    """
    What is known about a batch of analyses, and what to ask the API next.

    :param analysis_ids: The ids to wait for, in the order results should be reported (repeats count once).
    :param fallback_gets: Single GETs a list sweep may spend on ids the listings did not show.
    :param rotation: Where, among the ids the listings did not show, a sweep's single GETs start (in
        units of ``fallback_gets``): a caller that cannot carry what it learnt from one sweep to the next
        passes a number that grows with each sweep, so that successive sweeps read different ids.
    """

    def __init__(self, analysis_ids: Iterable[str], *, fallback_gets: int = 20, rotation: int = 0) -> None:
        self.order: list[str] = list(dict.fromkeys(analysis_ids))
        if not self.order:
            raise ValueError("analysis_ids must name at least one analysis")
        self.fallback_gets = fallback_gets
        self.rotation = rotation
        self.pending: set[str] = set(self.order)
        self.finished: dict[str, Analysis] = {}
        #: Pages the ``processing`` listing took the last time it was read.
        self.processing_pages = 1
        #: Requests it took, the last time, to confirm departed ids from the listings, besides the GET that
        #: bounds how far back to look (one page at first): fewer departed ids than this (plus that GET,
        #: when needed) are read with single GETs instead.
        self.confirm_cost = 1
        self._sweeps = 0
        self._known: dict[str, Analysis] = {}
        self._floor: float | None = None
        self._sweep: _Sweep | None = None
        self._next: PollRequest | None = None
        self._sweep_ended = False

    # -- state -------------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether every analysis of the batch has finished."""
        return not self.pending

    def failures(self) -> dict[str, str | None]:
        """Failed analyses, in input order, with the server's reason."""
        return {
            aid: self.finished[aid].error_message
            for aid in self.order
            if aid in self.finished and self.finished[aid].status is AnalysisStatus.FAILED
        }

    def counts(self) -> dict[str, int]:
        """How many ids the batch has, and how many of them completed, failed or are still pending."""
        failed = sum(1 for a in self.finished.values() if a.status is AnalysisStatus.FAILED)
        return {
            "total": len(self.order),
            "completed": len(self.finished) - failed,
            "failed": failed,
            "pending": len(self.pending),
        }

    def summaries(self) -> list[dict[str, Any]]:
        """One compact summary per id, in input order (status ``processing`` for ids still running)."""
        out = []
        for aid in self.order:
            known = self.finished.get(aid) or self._known.get(aid)
            if known is not None:
                out.append(known.summary())
            else:
                out.append(AnalysisSummary.unfinished(aid).to_xcom())
        return out

    def observe(self, analysis: Analysis) -> None:
        """Learn from any analysis the API returned; a terminal one of the batch is resolved for good."""
        if analysis.id not in self.pending:
            return
        self._known[analysis.id] = analysis
        created = analysis.created_timestamp
        if created is not None:
            floor = created - CREATED_SLACK_SECONDS
            self._floor = floor if self._floor is None else min(self._floor, floor)
        if analysis.is_finished:
            self.finished[analysis.id] = analysis
            self.pending.discard(analysis.id)

    def state(self) -> dict[str, Any]:
        """
        What this tracker learnt, as a small JSON value: the finished ids (compact), the oldest creation
        time seen and the cost of the last list sweep. :meth:`restore` takes it back.
        """
        return {
            "finished": {
                aid: [
                    a.status.value,
                    a.call.agent_id if a.call else None,
                    a.call.contact_id if a.call else None,
                    a.error_message,
                ]
                for aid, a in self.finished.items()
            },
            "floor": self._floor,
            "processing_pages": self.processing_pages,
            "confirm_cost": self.confirm_cost,
        }

    def restore(self, state: Any) -> None:
        """Take back what :meth:`state` returned (anything unreadable is ignored: it starts afresh)."""
        if not isinstance(state, dict):
            return
        finished = state.get("finished")
        if isinstance(finished, dict):
            for aid, row in finished.items():
                if aid not in self.pending or not isinstance(row, list) or len(row) != 4:
                    continue
                status, agent_id, contact_id, error = row
                try:
                    self.observe(
                        Analysis.model_validate(
                            {
                                "id": aid,
                                "status": status,
                                "call": {"agent_id": agent_id, "contact_id": contact_id},
                                "metadata": {"error_message": error},
                            }
                        )
                    )
                except ValueError:
                    continue
        floor = state.get("floor")
        if isinstance(floor, (int, float)):
            self._floor = float(floor) if self._floor is None else min(self._floor, float(floor))
        for name in ("processing_pages", "confirm_cost"):
            value = state.get(name)
            if isinstance(value, int) and value > 0:
                setattr(self, name, value)

    # -- driving -----------------------------------------------------------------------------------------

    def next_request(self) -> PollRequest | None:
        """
        The next request of the current sweep, starting a new sweep if none is under way.

        :return: The request to make, or ``None`` when this sweep has finished (end the cycle).
        """
        if self.done:
            return None
        if self._sweep_ended:
            # The sweep finished in this cycle: the cycle ends, and the next call starts a new sweep.
            self._sweep_ended = False
            return None
        if self._sweep is None:
            self._sweep = self._single() if len(self.order) == 1 else self._batch()
            self._next = self._advance(None)
            self._sweep_ended = False
            if self._next is None:
                return None
        return self._next

    def feed(self, response: PollResponse) -> None:
        """Give the answer to the request :meth:`next_request` returned."""
        if self._sweep is None:
            raise RuntimeError("feed() called with no request under way")
        self._next = self._advance(response)

    def _advance(self, response: PollResponse | None) -> PollRequest | None:
        assert self._sweep is not None
        try:
            # A generator must be started with None; afterwards each answer is sent in.
            request = next(self._sweep) if response is None else self._sweep.send(response)
        except StopIteration:
            self._sweep = None
            self._sweep_ended = True
            return None
        return request

    # -- sweeps ------------------------------------------------------------------------------------------

    def _single(self) -> _Sweep:
        analysis = yield GetRequest(self.order[0])
        assert isinstance(analysis, Analysis)
        self.observe(analysis)

    def _rotated(self, ids: list[str]) -> list[str]:
        if not ids or not self.rotation:
            return ids
        start = (self.rotation * self.fallback_gets) % len(ids)
        return ids[start:] + ids[:start]

    def _gets(self, ids: list[str]) -> _Sweep:
        for aid in ids:
            if aid in self.pending:
                answer = yield GetRequest(aid)
                assert isinstance(answer, Analysis)
                self.observe(answer)

    def _batch(self) -> _Sweep:
        """
        One sweep of at most as many requests as there are pending ids (what single GETs would cost).

        The ``processing`` listing first, unless it alone would cost as much as reading every pending id;
        then the ids that left it are confirmed from the listings, or with single GETs when there are
        fewer of them than the listings took last time. What each part cost is remembered for the next
        sweep's choice.
        """
        pending = [aid for aid in self.order if aid in self.pending]
        cap = len(pending)
        first, self._sweeps = self._sweeps == 0, self._sweeps + 1
        if cap <= self.processing_pages or (first and cap <= SMALL_BATCH):
            # The listing alone costs as much; or a small batch's first sweep, which may find every id
            # finished (GETs settle them in one sweep; later sweeps list the ones still running in one page).
            yield from self._gets(self._rotated(pending))
            return
        spent = 0
        running: set[str] = set()
        offset = 0
        while True:
            if spent >= cap:
                self.processing_pages = cap  # cut short: next time, reading each id is cheaper
                return
            page = yield ListRequest(AnalysisStatus.PROCESSING.value, offset)
            spent += 1
            assert isinstance(page, AnalysisList)
            for analysis in page.data:
                if analysis.id in self.pending:
                    running.add(analysis.id)
                    self.observe(analysis)
            if not page.has_more or not page.item_count:
                break
            offset += page.item_count
        self.processing_pages = spent
        departed = [aid for aid in pending if aid not in running and aid in self.pending]
        if not departed:
            return
        left = cap - spent
        bounding = 1 if any(aid not in self._known for aid in departed) else 0
        if len(departed) < self.confirm_cost + bounding:
            yield from self._gets(self._rotated(departed)[:left])
            return
        used = yield from self._confirm(departed, left)
        # A confirmation cut short by the cap is priced above what it was allowed, so GETs win next time.
        self.confirm_cost = max(1, used - bounding) if used < left else left + 1

    def _confirm(self, departed: list[str], cap: int) -> Generator[PollRequest, PollResponse, int]:
        """Confirm ``departed`` ids from the listings, in at most ``cap`` requests; return what it took."""
        spent = 0
        wanted = set(departed)
        unseen = [aid for aid in departed if aid not in self._known]
        if unseen and spent < cap:
            # Ids never seen (finished before the first poll) may be older than everything seen so far:
            # the oldest analyses of a batch usually finish first. One GET of the first of them in input
            # (submission) order bounds how far back the listings must look; without it the scans would
            # stop at the running ones and leave the older ids to one GET each.
            first_answer = yield GetRequest(unseen[0])
            spent += 1
            assert isinstance(first_answer, Analysis)
            self.observe(first_answer)
        if self._floor is not None:
            for status in (AnalysisStatus.COMPLETED.value, AnalysisStatus.FAILED.value):
                offset = 0
                while wanted & self.pending:
                    if spent >= cap:
                        return spent
                    page = yield ListRequest(status, offset)
                    spent += 1
                    assert isinstance(page, AnalysisList)
                    for analysis in page.data:
                        self.observe(analysis)
                    created = [t for t in (a.created_timestamp for a in page.data) if t is not None]
                    if not page.has_more or not page.item_count or (created and min(created) < self._floor):
                        break
                    offset += page.item_count
        unaccounted = [aid for aid in departed if aid in self.pending]
        for aid in self._rotated(unaccounted)[: min(self.fallback_gets, cap - spent)]:
            answer = yield GetRequest(aid)
            spent += 1
            assert isinstance(answer, Analysis)
            self.observe(answer)
        return spent


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
