"""
Row 8: 500 deferred single-id waits, one shared poll loop (Airflow 3.3+) vs one poll loop per trigger.

Ours: 500 ``AnalysisCompletedTrigger`` instances driven as the triggerer drives a trigger with a
``shared_stream_key``: subscribed to Airflow's own ``SharedStreamManager`` and read through
``filter_shared_stream`` (``callcov_provider/triggers/shared.py``), so one producer polls for all of them.
Baseline: the same 500 triggers with ``share_poll_loop = False``: each ``run()`` polls on its own (one GET
per trigger per cycle), which is what every Airflow below 3.3 does.

Both run in one asyncio loop in this process against the emulator (its own process, loopback). Requests
are counted from the emulator's request log; a "cycle" is a window of one poll interval.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from typing import Any

from common import Figure, RowResult, fmt, submit_small


async def _drive(ids: list[str], poll: float, shared: bool, cap: float) -> dict[str, Any]:
    from airflow.triggers.shared_stream import SharedStreamManager

    from callcov_provider.triggers.analysis import AnalysisCompletedTrigger

    manager = SharedStreamManager()
    triggers = []
    for aid in ids:
        trigger = AnalysisCompletedTrigger(
            analysis_ids=[aid],
            callcov_conn_id="callcov_default",
            poll_interval=poll,
            end_time=time.time() + cap,
        )
        trigger.share_poll_loop = shared
        triggers.append(trigger)

    async def one(trigger_id: int, trigger: AnalysisCompletedTrigger) -> str:
        key = trigger.shared_stream_key()
        if key is None:
            async for event in trigger.run():
                return str(event.payload["status"])
            return "none"
        stream = manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=key)
        try:
            async for event in trigger.filter_shared_stream(stream):
                return str(event.payload["status"])
            return "none"
        finally:
            await manager.unsubscribe(trigger_id, key)

    started = time.monotonic()
    try:
        statuses = await asyncio.gather(*(one(i, t) for i, t in enumerate(triggers)))
    finally:
        await manager.stop_all()
    return {"wall_s": time.monotonic() - started, "statuses": Counter(statuses)}


def _cycle_counts(requests: list[dict[str, Any]], poll: float) -> list[int]:
    if not requests:
        return [0]
    t0 = min(float(r["time"]) for r in requests)
    buckets = Counter(int((float(r["time"]) - t0) // poll) for r in requests)
    return [buckets.get(i, 0) for i in range(max(buckets) + 1)]


def run(quick: bool, repeats: int) -> RowResult:
    from callcov_provider.testing.server import run_emulator
    from callcov_provider.triggers.analysis import AnalysisCompletedTrigger

    n = 20 if quick else 500
    poll = 0.5 if quick else 2.0
    processing = "1-2" if quick else "3-9"
    cap = 120.0 if quick else 300.0
    runs: dict[str, list[dict[str, Any]]] = {"shared": [], "per_trigger": []}
    with run_emulator(processing_seconds=processing, in_subprocess=True) as emu:
        import os

        os.environ["AIRFLOW_CONN_CALLCOV_DEFAULT"] = emu.connection_json()
        for label in ["shared", "per_trigger"] * repeats:
            emu.control.reset()
            ids = submit_small(emu.base_url, emu.api_key, n)
            emu.control.clear_requests()
            result = asyncio.run(_drive(ids, poll, label == "shared", cap))
            requests = [
                r for r in emu.control.requests(method="GET") if r["path"].startswith("/api/v1/analysis")
            ]
            per_cycle = _cycle_counts(requests, poll)
            result.update(
                requests=len(requests),
                max_per_cycle=max(per_cycle),
                cycles=len(per_cycle),
                per_trigger_per_cycle=max(per_cycle) / n,
            )
            runs[label].append(result)

    def values(label: str, key: str) -> list[float]:
        return [float(r[key]) for r in runs[label]]

    budget = AnalysisCompletedTrigger.max_requests_per_cycle
    shared_max = values("shared", "max_per_cycle")
    figures = [
        Figure(
            row="8",
            what=f"max API requests in one poll cycle, {n} deferred waits",
            unit="requests/cycle",
            ours=shared_max,
            baseline=values("per_trigger", "max_per_cycle"),
            target=f"<= max_requests_per_cycle = {budget} in total",
            met=max(shared_max) <= budget,
        ),
        Figure(
            row="8",
            what=f"API requests until all {n} waits ended",
            unit="requests",
            ours=values("shared", "requests"),
            baseline=values("per_trigger", "requests"),
        ),
        Figure(
            row="8",
            what=f"wall time until all {n} waits ended",
            unit="s",
            ours=values("shared", "wall_s"),
            baseline=values("per_trigger", "wall_s"),
            note="both bounded below by the slowest analysis plus a poll interval",
        ),
    ]
    details = [
        f"{n} single-id waits on one connection, poll interval {poll} s, emulator processing {processing} s. "
        "A cycle is a window of one poll interval from the first request; requests are the emulator's "
        "log of GETs on /api/v1/analysis*.",
        "",
        "| run | events (status: count) | requests | max requests/cycle | per trigger per cycle | cycles "
        "| wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, results in runs.items():
        for r in results:
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
            details.append(
                f"| {label} | {statuses} | {r['requests']} | {r['max_per_cycle']} | "
                f"{fmt(r['per_trigger_per_cycle'])} | {r['cycles']} | {fmt(r['wall_s'])} |"
            )
    ok = all(set(r["statuses"]) == {"success"} for rs in runs.values() for r in rs)
    details += [
        "",
        f"Every wait ended with success: {ok}. Median shared wall time "
        f"{fmt(statistics.median(values('shared', 'wall_s')))} s.",
    ]
    return RowResult("8", f"{n} deferred waits: one shared poll loop vs one per trigger", figures, details)
