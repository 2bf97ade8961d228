"""The trigger that waits, in the triggerer, for one or many CallCov analyses to finish."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from callcov_provider.exceptions import CallCovError
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.tracking import MAX_REQUESTS_PER_CYCLE, BatchTracker
from callcov_provider.version_compat import AIRFLOW_V_3_3_PLUS
from callcov_provider.waiting import MAX_CONSECUTIVE_FAILURES, TRANSIENT_ERRORS, Waiter

# Airflow 3.3+: the triggerer shares one poll loop between triggers of a BaseEventTrigger subclass that
# declare the same shared_stream_key, deferral triggers included (callcov_provider.triggers.shared).
if AIRFLOW_V_3_3_PLUS:
    from airflow.triggers.base import BaseEventTrigger as _TriggerBase
else:
    _TriggerBase = BaseTrigger  # type: ignore[misc,assignment]

__all__ = ["TRANSIENT_ERRORS", "AnalysisCompletedTrigger", "build_event"]

#: Up to this many ids an event carries one compact summary per id (when they fit in
#: :data:`EVENT_RESULTS_MAX_BYTES`); above it the completion method reads them itself.
FULL_SUMMARY_LIMIT = 1000
#: The most bytes of summaries an event carries: events live in the metadata database.
EVENT_RESULTS_MAX_BYTES = 256 * 1024
#: The most failures (id and reason) an event names; the completion method lists the rest itself.
EVENT_FAILURES_MAX = 50
#: Characters of a failure reason an event keeps.
REASON_MAX_CHARS = 200


def _reason(reason: str | None) -> str | None:
    if reason is None or len(reason) <= REASON_MAX_CHARS:
        return reason
    return reason[: REASON_MAX_CHARS - 1] + "\u2026"


def build_event(status: str, tracker: BatchTracker, message: str) -> TriggerEvent:
    """
    The one event a trigger yields, bounded in size whatever the batch (well under 1 MB).

    Always: ``status``, ``message``, ``counts`` (``total``, ``completed``, ``failed``, ``pending``),
    ``pending_count`` and ``failures`` (id to reason, the first :data:`EVENT_FAILURES_MAX` in input order,
    with ``failures_complete`` saying whether that is all of them). ``results`` (one compact summary per
    id, in input order) only while the batch has at most :data:`FULL_SUMMARY_LIMIT` ids and they fit in
    :data:`EVENT_RESULTS_MAX_BYTES`; otherwise the completion method reads them from the API.
    """
    failures = tracker.failures()
    shown = dict(list(failures.items())[:EVENT_FAILURES_MAX])
    payload: dict[str, Any] = {
        "status": status,
        "message": message[:2000],
        "counts": tracker.counts(),
        "pending_count": len(tracker.pending),
        "failures": {aid: _reason(reason) for aid, reason in shown.items()},
        "failures_complete": len(shown) == len(failures),
    }
    if len(tracker.order) <= FULL_SUMMARY_LIMIT:
        results = tracker.summaries()
        if len(json.dumps(results)) <= EVENT_RESULTS_MAX_BYTES:
            payload["results"] = results
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


class AnalysisCompletedTrigger(_TriggerBase):  # type: ignore[misc]
    """
    Wait until every listed analysis is ``completed`` or ``failed``, or until ``end_time``.

    Polling a batch costs at most :attr:`max_requests_per_cycle` requests a cycle, however many ids it
    waits on (see :mod:`callcov_provider.tracking`): list pages of the ``processing``, ``failed`` and
    ``completed`` analyses instead of one GET per id. One id is read with one GET. The wait is the
    provider's one :class:`~callcov_provider.waiting.Waiter`: connection errors, timeouts and 5xx do not
    end it, :attr:`max_consecutive_failures` failed cycles in a row do; a 429 is waited out for as long
    as the API asked and never counted; an authentication error or an unknown id end it at once, and so
    does the deadline. Exactly one event is yielded, with ``status`` one of ``success``, ``failed`` (some
    analyses failed; reasons included), ``timeout`` or ``error`` (see :func:`build_event`).

    The trigger holds ids, a connection id and times only: never a credential. The connection is fetched
    asynchronously in the triggerer.

    On Airflow 3.3+ the triggers of one connection and poll interval share one poll loop in the triggerer
    (:mod:`callcov_provider.triggers.shared`): 500 deferred tasks cost one batch's
    :attr:`max_requests_per_cycle` a cycle in total. Set :attr:`share_poll_loop` to ``False`` to opt out.

    :param analysis_ids: The ids to wait for.
    :param callcov_conn_id: The Airflow connection id.
    :param poll_interval: Seconds between poll cycles.
    :param end_time: Epoch seconds after which the wait ends with a ``timeout`` event.
    """

    max_requests_per_cycle: int = MAX_REQUESTS_PER_CYCLE
    max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES
    #: Seconds, at most, by which the first poll is put off (a random part of the poll interval).
    max_first_poll_splay: float = 10.0
    #: Share one poll loop per connection and poll interval (Airflow 3.3+ shared trigger streams).
    share_poll_loop: bool = True
    #: A deferral trigger keeps its task's triggerer queue (``BaseEventTrigger`` turns that off).
    supports_triggerer_queue: bool = True

    def __init__(
        self,
        analysis_ids: Sequence[str],
        callcov_conn_id: str,
        poll_interval: float,
        end_time: float,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.analysis_ids = [str(aid) for aid in analysis_ids]
        self.callcov_conn_id = callcov_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Serialise ids, connection id, poll interval and deadline: nothing secret."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "analysis_ids": self.analysis_ids,
                "callcov_conn_id": self.callcov_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    async def _splay(self) -> None:
        """
        Wait a random part of the poll interval before the first poll.

        The task checked the status just before deferring, so nothing is lost; and triggers started
        together (a batch of mapped tasks, a triggerer restart) do not poll in lockstep, which would
        send their requests, and handle their answers, in one burst.
        """
        delay = random.uniform(0.0, min(self.poll_interval, self.max_first_poll_splay))
        if delay > 0 and self.end_time - time.time() > delay:
            await asyncio.sleep(delay)

    def _hook(self) -> CallCovHook:
        return CallCovHook(self.callcov_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the batch finishes, fails, errs or runs out of time; yield exactly one event."""
        hook = self._hook()
        waiter = Waiter(
            self.analysis_ids, budget=self.max_requests_per_cycle, max_failures=self.max_consecutive_failures
        )
        tracker = waiter.tracker
        await self._splay()
        try:
            try:
                done = await waiter.await_done(
                    hook,
                    poll_interval=self.poll_interval,
                    end_time=self.end_time,
                    sleep=asyncio.sleep,
                    log=self.log,
                )
            except CallCovError as err:
                yield build_event("error", tracker, f"{type(err).__name__}: {err}")
                return
            counts = tracker.counts()
            if not done:
                yield build_event(
                    "timeout",
                    tracker,
                    f"{counts['pending']} of {counts['total']} analyses still processing at the deadline",
                )
            elif counts["failed"]:
                yield build_event("failed", tracker, f"{counts['failed']} of {counts['total']} failed")
            else:
                yield build_event("success", tracker, f"all {counts['total']} analyses completed")
        finally:
            await hook.aclose()

    # -- Airflow 3.3+ shared stream (see callcov_provider.triggers.shared) --------------------------------

    def shared_stream_key(self) -> Hashable | None:
        """The group this trigger polls with: one per connection and poll interval (``None``: alone)."""
        if not (AIRFLOW_V_3_3_PLUS and self.share_poll_loop):
            return None
        from callcov_provider.triggers.shared import shared_key

        return shared_key(self.callcov_conn_id, self.poll_interval)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """The group's one poll loop, over every id its triggers wait for."""
        from callcov_provider.triggers.shared import open_stream

        async for cycle in open_stream(kwargs, cls.max_requests_per_cycle):
            yield cycle

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """This trigger's one event, from the group's cycles."""
        from callcov_provider.triggers.shared import filter_stream

        async for event in filter_stream(self, shared_stream):
            yield event
