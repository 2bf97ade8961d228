"""
Row 2: triggerer health with 1000 single-id triggers in one event loop, the emulator adding 50 ms latency.

Each measurement runs in a fresh interpreter (``child`` mode below): Airflow and the provider are imported,
then (unless ``--no-freeze``) ``gc.collect(); gc.freeze()`` moves what the imports left behind out of the
collector's reach, the peak RSS is reset, and the N triggers run in one ``asyncio`` loop beside a heartbeat
coroutine that sleeps 10 ms and records how late it wakes up (the event-loop stall).

Ours: ``AnalysisCompletedTrigger.run()`` as the triggerer runs it (httpx, async).
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
#: Requests in flight per event loop in the what-if runs.
IN_FLIGHT = 32


def run(quick: bool, repeats: int) -> RowResult:
    from callcov_provider.testing.server import run_emulator

    n = 20 if quick else 1000
    poll = 0.5 if quick else 2.0
    processing = "1-2" if quick else "3-9"
    sync_cap = 5.0 if quick else 20.0
    runs: dict[str, list[dict[str, Any]]] = {
        "ours": [], "ours_unfrozen": [], "shared": [], "shared_splay": [], "sync": []
    }
    with run_emulator(processing_seconds=processing, in_subprocess=True) as emu:
        env = {"AIRFLOW_CONN_CALLCOV_DEFAULT": emu.connection_json()}
        plan = [("ours", "freeze"), ("ours_unfrozen", "no-freeze")]
        if not quick:
            plan += [("shared", "freeze"), ("shared_splay", "freeze")]
        plan = plan * repeats + [("sync", "freeze")]
        for label, freeze in plan:
            emu.control.reset()
            ids = submit_small(emu.base_url, emu.api_key, n)
            emu.control.set_faults(latency=0.05)
            mode = "ours" if label == "ours_unfrozen" else label
            args = [mode, freeze, str(poll), str(sync_cap if mode == "sync" else 300), ",".join(ids)]
            runs[label].append(run_child("bench_triggerer.py", args, env))
        clients = run_child("bench_triggerer.py", ["clients", str(n)], env)

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
        f"every API request; heartbeat every {HEARTBEAT * 1000:.0f} ms.",
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
        "first pass blocks the loop for about N x 50 ms), so its events count is what finished by then.",
        "",
        f"One `httpx.AsyncClient` per hook, as the hook makes them: {n} clients built in one loop "
        f"iteration add {fmt(clients['added_mib'])} MiB ({fmt(clients['kib_per_client'])} KiB each) and "
        f"take {fmt(clients['build_ms'])} ms ({fmt(clients['build_ms'] * 1000 / n)} us each).",
        "",
        "`shared` and `shared_splay` are what-if runs, not the provider's code (patched in the child): one "
        "`httpx.AsyncClient` and one connection lookup per event loop for every hook, with at most "
        f"{IN_FLIGHT} requests in flight per loop (an `asyncio.Semaphore` in front of the client, since "
        "httpx's own pool cap queues 1000 waiters at a cost that stalls the loop for seconds); "
        "`shared_splay` also waits a random part of one poll interval before a trigger's first request.",
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

    from callcov_provider.hooks.callcov import CallCovHook, shared_ssl_context
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
    if mode in ("shared", "shared_splay"):
        _patch_shared_client()
    if mode == "shared_splay":
        _patch_splay(poll)
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


def _patch_shared_client() -> None:
    """What-if (not the provider's code): per loop one AsyncClient, one settings lookup, a request gate."""
    import asyncio

    from callcov_provider.hooks.callcov import CallCovHook, shared_ssl_context

    clients: dict[int, Any] = {}
    settings: dict[str, Any] = {}
    original_settings = CallCovHook.aget_settings

    async def shared_client(self: CallCovHook) -> Any:
        import httpx

        key = id(asyncio.get_running_loop())
        if key not in clients:
            settings = await self.aget_settings()
            clients[key] = httpx.AsyncClient(
                verify=shared_ssl_context(),
                timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
                # One pool for every trigger of the loop (httpx's own cap queues waiters at O(n) cost each).
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
                follow_redirects=False,
            )
        return clients[key]

    async def shared_settings(self: CallCovHook) -> Any:
        if self.callcov_conn_id not in settings:
            settings[self.callcov_conn_id] = await original_settings(self)
        self._settings = settings[self.callcov_conn_id]
        return self._settings

    gates: dict[int, asyncio.Semaphore] = {}
    original_asend = CallCovHook._asend

    async def gated(self: CallCovHook, method: str, path: str, **kwargs: Any) -> Any:
        # At most IN_FLIGHT requests of the loop at once, so at most that many answers land together.
        gate = gates.setdefault(id(asyncio.get_running_loop()), asyncio.Semaphore(IN_FLIGHT))
        async with gate:
            return await original_asend(self, method, path, **kwargs)

    async def keep_open(self: CallCovHook) -> None:
        return None  # the hook must not close the shared client

    CallCovHook._get_async_client = shared_client  # type: ignore[method-assign]
    CallCovHook.aclose = keep_open  # type: ignore[method-assign]
    CallCovHook._asend = gated  # type: ignore[method-assign]
    CallCovHook.aget_settings = shared_settings  # type: ignore[method-assign]


def _patch_splay(poll: float) -> None:
    """What-if: each trigger waits a random part of one poll interval before its first request."""
    import random

    from callcov_provider.triggers.analysis import AnalysisCompletedTrigger

    original_run = AnalysisCompletedTrigger.run

    async def splayed(self: AnalysisCompletedTrigger) -> Any:
        import asyncio

        await asyncio.sleep(random.uniform(0, poll))
        async for event in original_run(self):
            yield event

    AnalysisCompletedTrigger.run = splayed  # type: ignore[method-assign]


def _clients(n: int) -> dict[str, Any]:
    """RSS and time of building ``n`` AsyncClients the way ``CallCovHook._get_async_client`` does."""
    import gc
    import time

    import httpx
    from common import read_status_kb

    from callcov_provider.hooks.callcov import shared_ssl_context

    context = shared_ssl_context()
    gc.collect()
    gc.freeze()
    before = read_status_kb("VmRSS")
    started = time.perf_counter()
    clients = [
        httpx.AsyncClient(verify=context, timeout=httpx.Timeout(30, connect=10), follow_redirects=False)
        for _ in range(n)
    ]
    build = time.perf_counter() - started
    added = read_status_kb("VmRSS") - before
    assert len(clients) == n
    return {"added_mib": added / 1024, "kib_per_client": added / n, "build_ms": build * 1000}


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
    if sys.argv[2] == "clients":
        print(json.dumps(_clients(int(sys.argv[3]))))
    else:
        _count_requests_into_env()
        mode_, freeze_, poll_, cap_, ids_ = sys.argv[2:7]
        print(json.dumps(_child(mode_, freeze_, float(poll_), float(cap_), ids_.split(","))))
