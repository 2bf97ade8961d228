"""The trigger that waits, in the triggerer, for one or many CallCov analyses to finish."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from callcov_provider.exceptions import (
    APIConnectionError,
    CallCovError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.tracking import BatchTracker, poll_cycle_async
from callcov_provider.version_compat import AIRFLOW_V_3_3_PLUS

# Airflow 3.3+: the triggerer shares one poll loop between triggers of a BaseEventTrigger subclass that
# declare the same shared_stream_key, deferral triggers included (callcov_provider.triggers.shared).
if AIRFLOW_V_3_3_PLUS:
    from airflow.triggers.base import BaseEventTrigger as _TriggerBase
else:
    _TriggerBase = BaseTrigger  # type: ignore[misc,assignment]

#: Errors that do not end a wait: the next cycle tries again.
TRANSIENT_ERRORS = (APIConnectionError, ServerError, RateLimitedError, UnexpectedResponseError)

#: Above this many ids an event carries no per-id summaries, only the failures: the completion method
#: rebuilds the statuses from the ids it already has, so the event stays small in the metadata database.
FULL_SUMMARY_LIMIT = 1000


def build_event(status: str, tracker: BatchTracker, message: str) -> TriggerEvent:
    """
    The one event a trigger yields, with everything the completion method needs.

    ``results`` (one compact summary per id, in input order) is left out above
    :data:`FULL_SUMMARY_LIMIT` ids; ``failures`` (id to reason) is always there.
    """
    payload: dict[str, Any] = {
        "status": status,
        "message": message,
        "failures": tracker.failures(),
        "pending_count": len(tracker.pending),
    }
    if len(tracker.order) <= FULL_SUMMARY_LIMIT:
        payload["results"] = tracker.summaries()
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


class AnalysisCompletedTrigger(_TriggerBase):  # type: ignore[misc]
    """
    Wait until every listed analysis is ``completed`` or ``failed``, or until ``end_time``.

    Polling a batch costs at most :attr:`max_requests_per_cycle` requests a cycle, however many ids it
    waits on (see :mod:`callcov_provider.tracking`): list pages of the ``processing``, ``failed`` and
    ``completed`` analyses instead of one GET per id. One id is read with one GET. Connection errors,
    timeouts, 429 and 5xx do not end the wait; :attr:`max_consecutive_failures` of them in a row, an
    authentication error or an unknown id do. Exactly one event is yielded, with ``status`` one of
    ``success``, ``failed`` (some analyses failed; reasons included), ``timeout`` or ``error``.

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

    max_requests_per_cycle: int = 5
    max_consecutive_failures: int = 10
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
        tracker = BatchTracker(self.analysis_ids)
        failures_in_row = 0
        await self._splay()
        try:
            while True:
                try:
                    made = await poll_cycle_async(hook, tracker, self.max_requests_per_cycle)
                    failures_in_row = 0
                    self.log.info(
                        "CallCov: %d of %d analyses finished (%d requests this cycle)",
                        len(tracker.finished),
                        len(tracker.order),
                        made,
                    )
                except TRANSIENT_ERRORS as err:
                    failures_in_row += 1
                    self.log.warning(
                        "CallCov poll failed (%d in a row, limit %d): %s",
                        failures_in_row,
                        self.max_consecutive_failures,
                        err,
                    )
                    if failures_in_row >= self.max_consecutive_failures:
                        yield build_event(
                            "error", tracker, f"{failures_in_row} poll failures in a row: {err}"
                        )
                        return
                except CallCovError as err:
                    yield build_event("error", tracker, f"{type(err).__name__}: {err}")
                    return
                if tracker.done:
                    failures = tracker.failures()
                    if failures:
                        yield build_event(
                            "failed", tracker, f"{len(failures)} of {len(tracker.order)} failed"
                        )
                    else:
                        yield build_event("success", tracker, f"all {len(tracker.order)} analyses completed")
                    return
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    yield build_event(
                        "timeout",
                        tracker,
                        f"{len(tracker.pending)} of {len(tracker.order)} analyses still processing "
                        "at the deadline",
                    )
                    return
                await asyncio.sleep(min(self.poll_interval, remaining))
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
