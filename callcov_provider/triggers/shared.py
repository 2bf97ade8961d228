"""
One poll loop per connection for many deferred waits (Airflow 3.3+ shared trigger streams).

A DAG that maps a deferrable ``SubmitAnalysisOperator`` over 500 calls defers 500
:class:`~callcov_provider.triggers.analysis.AnalysisCompletedTrigger` instances. On Airflow 3.3+ they
declare the same ``shared_stream_key`` (connection id and poll interval), so the triggerer runs **one**
producer (:func:`open_stream`) for all of them and broadcasts its raw events; each trigger picks its own
ids out of them (:func:`filter_stream`). The triggerer routes any ``BaseEventTrigger`` with a key through
its ``SharedStreamManager``, deferral triggers included (``TriggerRunner.run_trigger``).

The producer learns which ids to poll from a registry in the triggerer's process: a trigger adds its ids
when its filter starts and removes them when it ends. Each cycle the producer drives one
:class:`~callcov_provider.tracking.BatchTracker` over every id still pending, with the tracker's
per-cycle request budget, so the whole group costs what one batch wait costs, however many tasks wait.
The producer never raises on an API error (that would fail every trigger of the group): it reports the
error in the cycle, and each trigger applies the same rules as its standalone ``run()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callcov_provider.exceptions import CallCovError, NotFoundError, RateLimitedError
from callcov_provider.hooks.retry import UNANNOUNCED_QUOTA_WAIT
from callcov_provider.models import Analysis
from callcov_provider.tracking import BatchTracker, GetRequest

if TYPE_CHECKING:
    from airflow.triggers.base import TriggerEvent

    from callcov_provider.hooks.callcov import CallCovHook
    from callcov_provider.triggers.analysis import AnalysisCompletedTrigger

#: The first element of every key, so CallCov groups never collide with another provider's.
KEY_PREFIX = "callcov.analysis-completed"

#: shared key -> subscriber token -> the ids it waits for (in the triggerer's process; the triggerer runs
#: every trigger, and every shared-stream producer, in one event loop).
_WANTED: dict[Hashable, dict[int, tuple[str, ...]]] = {}


def shared_key(callcov_conn_id: str, poll_interval: float) -> tuple[str, str, float]:
    """The key of a group: triggers on one connection with one poll interval share a poll loop."""
    return (KEY_PREFIX, callcov_conn_id, float(poll_interval))


def wanted(key: Hashable) -> list[str]:
    """Every id some live trigger of the group waits for, in registration order."""
    ids: dict[str, None] = {}
    for subscriber in _WANTED.get(key, {}).values():
        ids.update(dict.fromkeys(subscriber))
    return list(ids)


@dataclass
class Cycle:
    """
    The raw event of one producer cycle, broadcast to every trigger of the group.

    :param finished: Finished analyses, by id, of every id still wanted (not only this cycle's).
    :param missing: Ids the API does not know, with the reason.
    :param error: The cycle's API error, if any.
    :param fatal: Whether that error ends the waits (authentication, configuration), as in ``run()``.
    :param requests: Requests the cycle made, for all triggers together.
    """

    finished: dict[str, Analysis] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    fatal: bool = False
    requests: int = 0


class Producer:
    """The poll loop of one group: a batch tracker over the union of the ids its triggers wait for."""

    def __init__(self, hook: CallCovHook, key: Hashable, budget: int) -> None:
        self.hook = hook
        self.key = key
        self.budget = budget
        self.finished: dict[str, Analysis] = {}
        self.missing: dict[str, str] = {}
        self.tracker: BatchTracker | None = None
        #: Epoch seconds before which the API asked for no request (a 429 outlasting the hook's retries).
        self.resume_at = 0.0

    async def cycle(self) -> Cycle:
        """Make one cycle's requests (at most ``budget``) and say what is known about the wanted ids."""
        ids = wanted(self.key)
        keep = set(ids)
        self.finished = {aid: a for aid, a in self.finished.items() if aid in keep}
        self.missing = {aid: r for aid, r in self.missing.items() if aid in keep}
        pending = [aid for aid in ids if aid not in self.finished and aid not in self.missing]
        made = 0
        error: str | None = None
        fatal = False
        if pending:
            if self.tracker is None or self.tracker.pending != set(pending):
                # The group changed (a trigger joined or left): a new sweep over exactly the pending ids.
                self.tracker = BatchTracker(pending)
            from callcov_provider.triggers.analysis import TRANSIENT_ERRORS

            try:
                while made < self.budget:
                    request = self.tracker.next_request()
                    if request is None:
                        break
                    made += 1
                    if isinstance(request, GetRequest):
                        try:
                            answer: Any = await self.hook.aget_analysis(request.analysis_id)
                        except NotFoundError as err:
                            # One trigger's unknown id must not end the others' waits.
                            self.missing[request.analysis_id] = f"{type(err).__name__}: {err}"
                            self.tracker = None
                            break
                    else:
                        answer = await self.hook.alist_analyses(
                            status_filter=request.status_filter, limit=request.limit, offset=request.offset
                        )
                    self.tracker.feed(answer)
            except RateLimitedError as err:
                # A paced wait, never a failure (the waiter's rule): no request until the API's time.
                wait = err.retry_after if err.retry_after is not None else UNANNOUNCED_QUOTA_WAIT
                self.resume_at = time.time() + wait
                self.tracker = None
            except TRANSIENT_ERRORS as err:
                error = str(err)
                self.tracker = None  # the sweep was cut mid-way: start a fresh one next cycle
            except CallCovError as err:
                error, fatal = f"{type(err).__name__}: {err}", True
                self.tracker = None
            if self.tracker is not None:
                self.finished.update(self.tracker.finished)
        return Cycle(dict(self.finished), dict(self.missing), error, fatal, made)


def make_hook(callcov_conn_id: str) -> CallCovHook:
    """The producer's hook (a seam for tests)."""
    from callcov_provider.hooks.callcov import CallCovHook

    return CallCovHook(callcov_conn_id)


async def open_stream(kwargs: dict[str, Any], budget: int) -> AsyncIterator[Cycle]:
    """The group's producer: one cycle per poll interval, forever (the triggerer stops it)."""
    conn_id = str(kwargs["callcov_conn_id"])
    interval = float(kwargs["poll_interval"])
    producer = Producer(make_hook(conn_id), shared_key(conn_id, interval), budget)
    try:
        while True:
            yield await producer.cycle()
            await asyncio.sleep(max(interval, producer.resume_at - time.time()))
    finally:
        await producer.hook.aclose()


async def filter_stream(
    trigger: AnalysisCompletedTrigger, stream: AsyncIterator[Cycle]
) -> AsyncIterator[TriggerEvent]:
    """One trigger's view of the group's cycles: exactly one event, by the rules of its ``run()``."""
    from callcov_provider.triggers.analysis import build_event

    key = shared_key(trigger.callcov_conn_id, trigger.poll_interval)
    token = id(trigger)
    _WANTED.setdefault(key, {})[token] = tuple(trigger.analysis_ids)
    tracker = BatchTracker(trigger.analysis_ids)
    failures_in_row = 0
    try:
        async for cycle in stream:
            for aid in list(tracker.pending):
                if aid in cycle.finished:
                    tracker.observe(cycle.finished[aid])
            # The same progress line as the standalone run(), in this trigger's own log.
            trigger.log.info(
                "CallCov: %d of %d analyses finished (%d requests this cycle for the whole group)",
                len(tracker.finished),
                len(tracker.order),
                cycle.requests,
            )
            unknown: Sequence[str] = [aid for aid in tracker.order if aid in cycle.missing]
            if unknown:
                yield build_event("error", tracker, cycle.missing[unknown[0]])
                return
            if tracker.done:
                failures = tracker.failures()
                if failures:
                    yield build_event("failed", tracker, f"{len(failures)} of {len(tracker.order)} failed")
                else:
                    yield build_event("success", tracker, f"all {len(tracker.order)} analyses completed")
                return
            if cycle.error is not None:
                failures_in_row += 1
                if cycle.fatal:
                    yield build_event("error", tracker, cycle.error)
                    return
                if failures_in_row >= trigger.max_consecutive_failures:
                    yield build_event(
                        "error", tracker, f"{failures_in_row} poll failures in a row: {cycle.error}"
                    )
                    return
            else:
                failures_in_row = 0
            if time.time() >= trigger.end_time:
                yield build_event(
                    "timeout",
                    tracker,
                    f"{len(tracker.pending)} of {len(tracker.order)} analyses still processing "
                    "at the deadline",
                )
                return
    finally:
        group = _WANTED.get(key, {})
        group.pop(token, None)
        if not group:
            _WANTED.pop(key, None)
