"""
Event-driven scheduling on CallCov: a trigger for an ``AssetWatcher`` that announces finished analyses.

A DAG scheduled on an asset watched by :class:`AnalysisEventTrigger` runs when analyses finish, instead of
a sensor waiting in a worker slot. Airflow 3.0+ only: Airflow 2 has no asset watchers.

How "newly finished" is decided (:class:`Watermark`, pure logic): the API lists analyses by creation time,
newest first, and has no "finished since" filter. The watermark is a creation-time ``floor`` plus the ids
already announced at or above it. Everything created below the floor was either announced or had finished
before the watch began; the floor never passes an analysis still ``processing``, so one that finishes late
is still found above it. Each cycle reads one ``processing`` page and, per watched status, newest-first
pages down to the floor (at most :attr:`AnalysisEventTrigger.max_pages_per_status`), so a cycle's cost
does not grow with the account.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow.providers.common.compat.triggers import BaseEventTrigger
from airflow.triggers.base import TriggerEvent

from callcov_provider.constants import DEFAULT_CONN_ID
from callcov_provider.exceptions import CallCovError
from callcov_provider.models import LIST_LIMIT_MAX, Analysis, AnalysisStatus
from callcov_provider.triggers.analysis import TRANSIENT_ERRORS

#: Analyses announced in one event, at most; the rest wait for the next cycle (the floor stays below them).
MAX_EVENT_ANALYSES = 1000
#: Seconds of slack below a candidate floor, so clock rounding and near-simultaneous creations are kept.
FLOOR_SLACK_SECONDS = 5.0
#: The key of the watermark in the asset's state store.
STATE_KEY = "callcov_event_watermark"

_FINISHED = (AnalysisStatus.COMPLETED.value, AnalysisStatus.FAILED.value)


def _created(analysis: Analysis) -> float:
    created = analysis.created_timestamp
    # An analysis without a creation time is treated as brand new: it is announced, never skipped.
    return created if created is not None else float("inf")


@dataclass
class Watermark:
    """
    What has been announced: a creation-time floor and the announced ids at or above it.

    :param floor: Epoch seconds; ``None`` until the first cycle set a baseline.
    :param seen: Announced (or baseline) ids with their creation time, all at or above ``floor``.
    """

    floor: float | None = None
    seen: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in the asset's state store."""
        return {"floor": self.floor, "seen": dict(self.seen)}

    @classmethod
    def from_json(cls, value: Any) -> Watermark:
        """Read a stored watermark; anything unreadable gives a fresh one (a new baseline)."""
        if not isinstance(value, dict):
            return cls()
        floor = value.get("floor")
        seen = value.get("seen")
        if not isinstance(floor, int | float) or not isinstance(seen, dict):
            return cls()
        return cls(float(floor), {str(k): float(v) for k, v in seen.items() if isinstance(v, int | float)})

    def is_new(self, analysis: Analysis) -> bool:
        """Whether a finished analysis has not been announced yet."""
        return self.floor is not None and analysis.id not in self.seen and _created(analysis) >= self.floor

    def baseline(self, finished: Sequence[Analysis], processing: Sequence[Analysis]) -> None:
        """
        Start watching: nothing finished so far is announced; analyses still processing will be.

        The floor goes to the oldest analysis still processing, or else the newest finished one (the
        server's clock, never the local one, which may differ), and the finished analyses above it are
        recorded as seen. An empty account starts at floor 0: everything is new.
        """
        if processing:
            self.floor = min(_created(a) for a in processing) - FLOOR_SLACK_SECONDS
        else:
            newest = [_created(a) for a in finished if a.created_timestamp is not None]
            self.floor = max(newest, default=FLOOR_SLACK_SECONDS) - FLOOR_SLACK_SECONDS
        self.seen = {a.id: _created(a) for a in finished if _created(a) >= self.floor}

    def advance(
        self,
        announced: Sequence[Analysis],
        held_back: Sequence[Analysis],
        processing: Sequence[Analysis],
        newest_finished: float | None,
        complete: bool,
    ) -> None:
        """
        Record what was announced and move the floor as far as is safe.

        :param announced: The analyses of this cycle's event.
        :param held_back: New finished analyses left for the next event (over the per-event cap).
        :param processing: The analyses still processing (one newest-first page).
        :param newest_finished: The newest creation time among the finished analyses read.
        :param complete: Whether every listing reached the floor (and all processing ones were seen):
            if not, the floor stays, since unseen analyses may lie between it and the candidates.
        """
        assert self.floor is not None
        for analysis in announced:
            self.seen[analysis.id] = _created(analysis)
        if not complete:
            return
        candidates = [_created(a) for a in processing]
        candidates += [_created(a) for a in held_back]
        if newest_finished is not None:
            candidates.append(newest_finished)
        if not candidates:
            return
        floor = min(candidates) - FLOOR_SLACK_SECONDS
        if floor > self.floor:
            self.floor = floor
            # Ids below the floor can never be listed as new again: the set stays the size of a boundary.
            self.seen = {aid: created for aid, created in self.seen.items() if created >= floor}


def build_events_payload(analyses: Sequence[Analysis]) -> dict[str, Any]:
    """The payload of one event: compact summaries (at most :data:`MAX_EVENT_ANALYSES`) and their count."""
    summaries = [a.summary() for a in analyses[:MAX_EVENT_ANALYSES]]
    return {"analyses": summaries, "count": len(summaries)}


class AnalysisEventTrigger(BaseEventTrigger):  # type: ignore[misc]
    """
    Announce CallCov analyses as they finish, for an ``AssetWatcher`` (Airflow 3.0+).

    Each poll cycle that finds newly finished analyses yields one event,
    ``{"analyses": [summary, ...], "count": n}``, oldest first, at most 1,000 summaries (``id``, ``status``,
    ``agent_id``, ``contact_id``, ``error_message``); more wait for the next cycle. Every analysis is
    announced once: the watermark is kept in the asset's state store on Airflow 3.3+, so a triggerer
    restart resumes where it stopped. Below 3.3 it is kept in memory: after a restart the trigger takes a
    new baseline, so analyses that finished while it was down are not announced, and the ones of the
    event being handed over when it stopped can be announced a second time.

    A cycle costs one ``processing`` page plus, per watched status, newest-first pages down to the
    watermark, at most :attr:`max_pages_per_status`. Connection errors, 429 and 5xx are retried on the
    next cycle; the trigger does not end on them.

    :param callcov_conn_id: The Airflow connection id.
    :param status_filter: ``completed``, ``failed``, or a list of both (the default).
    :param agent_id: Only this agent's analyses.
    :param poll_interval: Seconds between poll cycles.
    """

    max_pages_per_status: int = 2

    def __init__(
        self,
        *,
        callcov_conn_id: str = DEFAULT_CONN_ID,
        status_filter: str | Sequence[str] = _FINISHED,
        agent_id: str | None = None,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        statuses = [status_filter] if isinstance(status_filter, str) else list(status_filter)
        unknown = [s for s in statuses if s not in _FINISHED]
        if not statuses or unknown:
            raise ValueError(f"status_filter must be 'completed', 'failed' or both, got {status_filter!r}")
        self.callcov_conn_id = callcov_conn_id
        # Sorted, so the same watch serialises (and hashes, for the watcher) the same way.
        self.status_filter = sorted(set(statuses))
        self.agent_id = agent_id or None
        self.poll_interval = float(poll_interval)
        self.watermark = Watermark()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Serialise the connection id, filters and interval: nothing secret, no state."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "callcov_conn_id": self.callcov_conn_id,
                "status_filter": self.status_filter,
                "agent_id": self.agent_id,
                "poll_interval": self.poll_interval,
            },
        )

    # -- state store ---------------------------------------------------------------------------------

    def _store(self) -> Any:
        """The asset's state store (Airflow 3.3+, watching exactly one asset), or ``None``."""
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return None
        try:
            store._single_accessor()
        except (ValueError, AttributeError):
            self.log.warning("CallCov: the watermark is kept in memory only (not exactly one watched asset)")
            return None
        return store

    async def _load(self) -> None:
        store = self._store()
        if store is not None:
            self.watermark = Watermark.from_json(await store.aget(STATE_KEY))

    async def _save(self) -> None:
        store = self._store()
        if store is not None:
            await store.aset(STATE_KEY, self.watermark.to_json())

    # -- polling -------------------------------------------------------------------------------------

    async def _list(self, hook: Any, status: str, offset: int) -> Any:
        return await hook.alist_analyses(
            status_filter=status, agent_id=self.agent_id, limit=LIST_LIMIT_MAX, offset=offset
        )

    async def poll_once(self, hook: Any) -> tuple[list[Analysis], int]:
        """
        One cycle: read the listings, update the watermark, return what to announce and the request count.

        On the first cycle without a stored watermark this only takes the baseline and announces nothing.
        """
        requests = 1
        processing_page = await self._list(hook, AnalysisStatus.PROCESSING.value, 0)
        processing = list(processing_page.data)
        # Beyond one page of processing analyses the oldest is unknown: the floor must not move.
        complete = not processing_page.has_more
        finished: list[Analysis] = []
        floor = self.watermark.floor
        for status in self.status_filter:
            offset = 0
            for _ in range(self.max_pages_per_status):
                page = await self._list(hook, status, offset)
                requests += 1
                finished.extend(page.data)
                oldest = min((_created(a) for a in page.data), default=None)
                if (
                    not page.has_more
                    or not page.item_count
                    or (floor is not None and oldest is not None and oldest < floor)
                ):
                    break
                offset += page.item_count
            else:
                complete = False
        if self.watermark.floor is None:
            self.watermark.baseline(finished, processing)
            return [], requests
        new: dict[str, Analysis] = {}
        for analysis in finished:
            if analysis.is_finished and self.watermark.is_new(analysis):
                new[analysis.id] = analysis
        ordered = sorted(new.values(), key=lambda a: (_created(a), a.id))
        announced, held_back = ordered[:MAX_EVENT_ANALYSES], ordered[MAX_EVENT_ANALYSES:]
        newest = max((_created(a) for a in finished if a.created_timestamp is not None), default=None)
        self.watermark.advance(announced, held_back, processing, newest, complete)
        return announced, requests

    def _hook(self) -> Any:
        from callcov_provider.hooks.callcov import CallCovHook

        return CallCovHook(self.callcov_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll forever; yield one event per cycle that found newly finished analyses."""
        hook = self._hook()
        await self._load()
        try:
            while True:
                try:
                    announced, made = await self.poll_once(hook)
                except TRANSIENT_ERRORS as err:
                    self.log.warning("CallCov event poll failed, retrying next cycle: %s", err)
                except CallCovError as err:
                    # An auth or configuration error will not heal by itself, but a watcher has no task to
                    # fail: log loudly and keep the cadence.
                    self.log.error("CallCov event poll failed: %s: %s", type(err).__name__, err)
                else:
                    self.log.info("CallCov: %d newly finished analyses (%d requests)", len(announced), made)
                    if announced:
                        yield TriggerEvent(build_events_payload(announced))  # type: ignore[no-untyped-call]
                    # Saved after the runner took the event: a crash in between repeats it, never loses it.
                    await self._save()
                await asyncio.sleep(self.poll_interval)
        finally:
            await hook.aclose()
