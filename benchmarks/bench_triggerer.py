"""
Row 2: triggerer health with 1000 single-id triggers in one event loop, the emulator adding 50 ms latency.

Each measurement runs in a fresh interpreter (``child`` mode below): Airflow and the provider are imported,
then (unless ``--no-freeze``) ``gc.collect(); gc.freeze()`` moves what the imports left behind out of the
collector's reach, the peak RSS is reset, and the N triggers run in one ``asyncio`` loop beside a heartbeat
coroutine that sleeps 10 ms and records how late it wakes up (the event-loop stall).

Ours: ``AnalysisCompletedTrigger.run()`` as the triggerer runs it (httpx, async): every hook on the loop
shares one ``httpx.AsyncClient`` with at most ``MAX_IN_FLIGHT`` requests in flight
(``callcov_provider/hooks/async_pool.py``), and each trigger waits a random part of its poll interval (at
most ``max_first_poll_splay``) before its first poll. Measured with GC frozen and not frozen.
Baseline: the same triggers with the HTTP call made synchronously (``requests`` inside the coroutine).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from typing import Any

from common import Figure, RowResult, fmt, run_child, submit_small

HEARTBEAT = 0.010
#: Seconds the async runs may take before the still-waiting triggers are cancelled: far above the first-poll
#: splay (at most one poll interval) plus the longest processing time plus a few poll cycles.
OURS_CAP = 300.0


def run(quick: bool, repeats: int) -> RowResult:
    from callcov_provider.hooks.async_pool import MAX_IN_FLIGHT
    from callcov_provider.testing.server import run_emulator
    from callcov_provider.triggers.analysis import AnalysisCompletedTrigger

    n = 20 if quick else 1000
    poll = 0.5 if quick else 2.0
    processing = "1-2" if quick else "3-9"
    sync_cap = 5.0 if quick else 20.0
    splay = min(poll, AnalysisCompletedTrigger.max_first_poll_splay)
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "ours_unfrozen": [], "sync": []}
    with run_emulator(processing_seconds=processing, in_subprocess=True) as emu:
        env = {"AIRFLOW_CONN_CALLCOV_DEFAULT": emu.connection_json()}
        plan = [("ours", "freeze"), ("ours_unfrozen", "no-freeze")] * repeats + [("sync", "freeze")]
        for label, freeze in plan:
            emu.control.reset()
            ids = submit_small(emu.base_url, emu.api_key, n)
            emu.control.set_faults(latency=0.05)
            mode = "ours" if label == "ours_unfrozen" else label
            args = [mode, freeze, str(poll), str(sync_cap if mode == "sync" else OURS_CAP), ",".join(ids)]
            runs[label].append(run_child("bench_triggerer.py", args, env))

    def values(label: str, key: str) -> list[float]:
        return [float(r[key]) for r in runs[label]]

    ours_stall = values("ours", "max_stall_ms")
    figures = [
        Figure(
            row="2",
            what=f"max event-loop stall, {n} triggers, GC frozen",
            unit="ms",
            ours=ours_stall,
            baseline=values("sync", "max_stall_ms"),
            target="< 100 ms",
            met=statistics.median(ours_stall) < 100 and max(ours_stall) < 100,
            note="baseline run once, stopped after its first poll pass",
        ),
        Figure(
            row="2",
            what=f"max event-loop stall, {n} triggers, GC not frozen",
            unit="ms",
            ours=values("ours_unfrozen", "max_stall_ms"),
            target="(reported beside)",
        ),
        Figure(
            row="2",
            what="p99 heartbeat lateness, GC frozen",
            unit="ms",
            ours=values("ours", "p99_stall_ms"),
            baseline=values("sync", "p99_stall_ms"),
        ),
        Figure(
            row="2",
            what="CPU per API request (whole process, until every trigger fired)",
            unit="ms",
            ours=values("ours", "cpu_ms_per_request"),
            note="the sync baseline's figure covers only the requests made before it was stopped",
            baseline=values("sync", "cpu_ms_per_request"),
        ),
        Figure(
            row="2",
            what="peak RSS added per trigger",
            unit="KiB",
            ours=values("ours", "kib_per_trigger"),
            baseline=values("sync", "kib_per_trigger"),
            target="printed",
        ),
    ]
    details = [
        f"{n} single-id triggers, poll interval {poll} s, processing {processing} s, 50 ms added latency on "
        f"every API request; heartbeat every {HEARTBEAT * 1000:.0f} ms. The triggers run as the provider "
        f"ships them: one shared `httpx.AsyncClient` per event loop, at most {MAX_IN_FLIGHT} requests in "
        f"flight per loop, and a random first-poll delay of up to {splay:g} s (a random part of the poll "
        f"interval, at most `max_first_poll_splay` = {AnalysisCompletedTrigger.max_first_poll_splay:g} s); "
        f"the async runs are given {OURS_CAP:g} s before any trigger still waiting is cancelled.",
        "",
        "| run | max stall ms | p99 ms | events | GETs | wall s | CPU s | peak RSS added MiB | KiB/trigger "
        "| gen-2 GCs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, results in runs.items():
        if not results:
            continue
        for r in results:
            details.append(
                f"| {label} | {fmt(r['max_stall_ms'])} | {fmt(r['p99_stall_ms'])} | {r['events']} | "
                f"{r['requests']} | {fmt(r['wall_s'])} | {fmt(r['cpu_s'])} | {fmt(r['peak_added_mib'])} | "
                f"{fmt(r['kib_per_trigger'])} | {r['gen2_collections']} |"
            )
    details += [
        "",
        f"The sync baseline is stopped {sync_cap:g} s after it starts (it cannot be stopped sooner: its "
        "first pass blocks the loop for about N x 50 ms), so its events count is what finished by then. "
        "It subclasses the provider's trigger, so it waits the same first-poll splay.",
    ]
    return RowResult("2", "triggerer health: 1000 single-id triggers in one event loop", figures, details)


# -- child --------------------------------------------------------------------------------------------------


def _child(mode: str, freeze: str, poll: float, cap: float, ids: list[str]) -> dict[str, Any]:
    import asyncio
    import gc
    import time

    import httpx  # noqa: F401 - imported before measuring: the hook imports them on first use
    import requests  # noqa: F401
    import tenacity  # noqa: F401
    from airflow.providers.common.compat.connection import get_async_connection  # noqa: F401
    from common import read_status_kb, reset_peak_rss

    from callcov_provider.hooks.async_pool import shared_ssl_context
    from callcov_provider.hooks.callcov import CallCovHook
    from callcov_provider.models import Analysis
    from callcov_provider.triggers.analysis import AnalysisCompletedTrigger

    shared_ssl_context()

    class SyncHook(CallCovHook):
        async def aget_analysis(self, analysis_id: str) -> Analysis:
            return self.get_analysis(analysis_id)  # blocks the event loop for the whole request

    class SyncTrigger(AnalysisCompletedTrigger):
        def _hook(self) -> CallCovHook:
            return SyncHook(self.callcov_conn_id)

    trigger_class = SyncTrigger if mode == "sync" else AnalysisCompletedTrigger
    if freeze == "freeze":
        gc.collect()
        gc.freeze()
    gen2_before = gc.get_stats()[2]["collections"]
    rss_before = read_status_kb("VmRSS")
    reset_peak_rss()
    cpu_before = time.process_time()
    lateness: list[float] = []

    async def heartbeat(stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(HEARTBEAT)
            lateness.append(time.perf_counter() - started - HEARTBEAT)

    async def one(trigger: AnalysisCompletedTrigger) -> str:
        async for event in trigger.run():
            return str(event.payload["status"])
        return "none"

    async def main() -> list[str]:
        stop = asyncio.Event()
        beat = asyncio.create_task(heartbeat(stop))
        await asyncio.sleep(0.05)
        end = time.time() + 600
        tasks = [asyncio.create_task(one(trigger_class([aid], "callcov_default", poll, end))) for aid in ids]
        done, pending = await asyncio.wait(tasks, timeout=cap)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        stop.set()
        await beat
        return [t.result() for t in done]

    wall = time.perf_counter()
    statuses = asyncio.run(main())
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu_before
    peak = read_status_kb("VmHWM")
    ordered = sorted(lateness)
    requests_made = int(os.environ.get("CALLCOV_BENCH_REQUESTS", "0"))
    return {
        "max_stall_ms": 1000 * max(ordered),
        "p99_stall_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "events": len(statuses),
        "successes": statuses.count("success"),
        "requests": requests_made,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_ms_per_request": 1000 * cpu / max(1, requests_made),
        "cpu_ms_per_trigger": 1000 * cpu / len(ids),
        "peak_added_mib": (peak - rss_before) / 1024,
        "kib_per_trigger": (peak - rss_before) / len(ids),
        "gen2_collections": gc.get_stats()[2]["collections"] - gen2_before,
    }


def _count_requests_into_env() -> None:
    """Count the API requests this child makes (both transports) for the report."""
    import httpx
    import requests

    count = [0]
    original_async = httpx.AsyncClient.send
    original_sync = requests.Session.send

    async def counting_async(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        os.environ["CALLCOV_BENCH_REQUESTS"] = str(count[0])
        return await original_async(self, *args, **kwargs)

    def counting_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        os.environ["CALLCOV_BENCH_REQUESTS"] = str(count[0])
        return original_sync(self, *args, **kwargs)

    httpx.AsyncClient.send = counting_async  # type: ignore[method-assign]
    requests.Session.send = counting_sync  # type: ignore[method-assign]


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    from common import quiet_logging, setup_environment

    setup_environment()
    quiet_logging()
    _count_requests_into_env()
    mode_, freeze_, poll_, cap_, ids_ = sys.argv[2:7]
    print(json.dumps(_child(mode_, freeze_, float(poll_), float(cap_), ids_.split(","))))
