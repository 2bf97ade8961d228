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

The wait loop around a tracker (budget per cycle, failure rule) is :class:`~callcov_provider.waiting.Waiter`.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callcov_provider.models import LIST_LIMIT_MAX, Analysis, AnalysisList, AnalysisStatus, AnalysisSummary

if TYPE_CHECKING:
    pass

#: Seconds of slack below the oldest known creation time, so clock rounding never hides an analysis.
CREATED_SLACK_SECONDS = 5.0
#: Requests one poll cycle may make, however many ids the wait is for.
MAX_REQUESTS_PER_CYCLE = 5
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
