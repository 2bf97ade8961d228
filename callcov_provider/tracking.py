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
   (the API lists by creation time, newest first; page 002). When some of those ids were never
   seen (they finished before the first poll, and are often the batch's oldest), one GET of the first of
   them in input order tells how far back that is.
3. The few ids the listings could not account for (an id that moved between pages while they were read,
   or one older than expected) are read with single GETs, at most ``fallback_gets`` a sweep.

A batch of one id is simply read with one GET per cycle. A terminal status, once seen, is final: the
API never moves an analysis back to ``processing``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callcov_provider.models import LIST_LIMIT_MAX, Analysis, AnalysisList, AnalysisStatus

if TYPE_CHECKING:
    from callcov_provider.hooks.callcov import CallCovHook

#: Seconds of slack below the oldest known creation time, so clock rounding never hides an analysis.
CREATED_SLACK_SECONDS = 5.0


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

    :param analysis_ids: The ids to wait for, in the order results should be reported.
    :param fallback_gets: Single GETs a sweep may spend on ids the listings did not show.
    """

    def __init__(self, analysis_ids: Iterable[str], *, fallback_gets: int = 20) -> None:
        self.order: list[str] = list(dict.fromkeys(analysis_ids))
        if not self.order:
            raise ValueError("analysis_ids must name at least one analysis")
        self.fallback_gets = fallback_gets
        self.pending: set[str] = set(self.order)
        self.finished: dict[str, Analysis] = {}
        self._known: dict[str, Analysis] = {}
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

    def summaries(self) -> list[dict[str, Any]]:
        """One compact summary per id, in input order (status ``processing`` for ids still running)."""
        out = []
        for aid in self.order:
            known = self.finished.get(aid) or self._known.get(aid)
            if known is not None:
                out.append(known.summary())
            else:
                out.append(
                    {
                        "id": aid,
                        "status": AnalysisStatus.PROCESSING.value,
                        "agent_id": None,
                        "contact_id": None,
                        "error_message": None,
                    }
                )
        return out

    def observe(self, analysis: Analysis) -> None:
        """Learn from any analysis the API returned; a terminal one of the batch is resolved for good."""
        if analysis.id not in self.pending:
            return
        self._known[analysis.id] = analysis
        if analysis.is_finished:
            self.finished[analysis.id] = analysis
            self.pending.discard(analysis.id)

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

    def _window_floor(self) -> float | None:
        times = [a.created_timestamp for a in self._known.values()]
        known = [t for t in times if t is not None]
        return min(known) - CREATED_SLACK_SECONDS if known else None

    def _scan(self, status: str, wanted: set[str], floor: float) -> _Sweep:
        offset = 0
        while wanted & self.pending:
            page = yield ListRequest(status, offset)
            assert isinstance(page, AnalysisList)
            for analysis in page.data:
                self.observe(analysis)
            created = [t for t in (a.created_timestamp for a in page.data) if t is not None]
            if not page.has_more or not page.data or (created and min(created) < floor):
                return
            offset += len(page.data)

    def _batch(self) -> _Sweep:
        running: set[str] = set()
        offset = 0
        while True:
            page = yield ListRequest(AnalysisStatus.PROCESSING.value, offset)
            assert isinstance(page, AnalysisList)
            for analysis in page.data:
                if analysis.id in self.pending:
                    running.add(analysis.id)
                    self.observe(analysis)
            if not page.has_more or not page.data:
                break
            offset += len(page.data)
        departed = self.pending - running
        if not departed:
            return
        unseen = [aid for aid in self.order if aid in departed and aid not in self._known]
        if unseen:
            # Ids never seen (finished before the first poll) may be older than everything seen so far:
            # the oldest analyses of a batch usually finish first. One GET of the first of them in input
            # (submission) order bounds how far back the listings must look; without it the scans would
            # stop at the running ones and leave the older ids to one GET each.
            first_answer = yield GetRequest(unseen[0])
            assert isinstance(first_answer, Analysis)
            self.observe(first_answer)
        floor = self._window_floor()
        if floor is not None:
            for status in (AnalysisStatus.COMPLETED.value, AnalysisStatus.FAILED.value):
                yield from self._scan(status, departed, floor)
        unaccounted = [aid for aid in self.order if aid in departed and aid in self.pending]
        for aid in unaccounted[: self.fallback_gets]:
            answer = yield GetRequest(aid)
            assert isinstance(answer, Analysis)
            self.observe(answer)


def poll_cycle(hook: CallCovHook, tracker: BatchTracker, budget: int | None = None) -> int:
    """
    Make one poll cycle's requests with the sync hook: at most ``budget`` (``None``: the whole sweep).

    :return: How many requests were made.
    """
    made = 0
    while budget is None or made < budget:
        request = tracker.next_request()
        if request is None:
            break
        if isinstance(request, GetRequest):
            tracker.feed(hook.get_analysis(request.analysis_id))
        else:
            tracker.feed(
                hook.list_analyses(
                    status_filter=request.status_filter, limit=request.limit, offset=request.offset
                )
            )
        made += 1
    return made


async def poll_cycle_async(hook: CallCovHook, tracker: BatchTracker, budget: int | None = None) -> int:
    """The async twin of :func:`poll_cycle`, on the hook's httpx path; never blocks the event loop."""
    made = 0
    while budget is None or made < budget:
        request = tracker.next_request()
        if request is None:
            break
        if isinstance(request, GetRequest):
            tracker.feed(await hook.aget_analysis(request.analysis_id))
        else:
            tracker.feed(
                await hook.alist_analyses(
                    status_filter=request.status_filter, limit=request.limit, offset=request.offset
                )
            )
        made += 1
    return made
