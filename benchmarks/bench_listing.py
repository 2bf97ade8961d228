"""
Row 4: requests to read 10,000 analyses, and one day's window holding 5% of them.

The emulator is seeded with analyses spread evenly over 20 days (so each day holds 5%).
Ours: ``CallCovHook.iter_analyses()`` (pages of 1000) for the full read; ``ListAnalysesOperator`` with
``fetch_all=True`` and ``created_after``/``created_before`` for a day (it stops paging at the window's start).
Baseline: the listing reference's ``get_all_analyses`` (limit 100, the whole history), filtered afterwards for
the day.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from datetime import UTC, datetime

from common import Figure, RowResult, fmt

DAYS = 20


def _requests(emu: object, since: int) -> int:
    return sum(1 for e in emu.control.requests(since=since) if e["method"] == "GET")  # type: ignore[attr-defined]


def _last(emu: object) -> int:
    log = emu.control.requests()  # type: ignore[attr-defined]
    return int(log[-1]["seq"]) if log else 0


def run(quick: bool, repeats: int) -> RowResult:
    from doc_samples import get_all_analyses

    from callcov_provider.hooks.callcov import CallCovHook
    from callcov_provider.operators.list_analyses import ListAnalysesOperator
    from callcov_provider.testing.server import run_emulator

    total = 1000 if quick else 10_000
    counts: dict[str, list[float]] = {k: [] for k in ("ours", "base", "ours_s", "base_s")}
    windows: dict[str, dict[str, list[float]]] = {}
    with run_emulator(in_subprocess=True, request_log_limit=100_000) as emu:
        os.environ["AIRFLOW_CONN_CALLCOV_DEFAULT"] = emu.connection_json()
        now = emu.control.health().get("now", time.time())
        end = float(now) - 60.0
        start = end - DAYS * 86400.0
        emu.control.seed(total, created_from=start, created_to=end)
        hook = CallCovHook()
        for _ in range(repeats):
            since = _last(emu)
            began = time.perf_counter()
            ours_items = list(hook.iter_analyses())
            counts["ours_s"].append(time.perf_counter() - began)
            counts["ours"].append(_requests(emu, since))
            since = _last(emu)
            began = time.perf_counter()
            base_items = get_all_analyses(emu.api_key, emu.base_url)
            counts["base_s"].append(time.perf_counter() - began)
            counts["base"].append(_requests(emu, since))
            assert len(ours_items) == len(base_items) == total, (len(ours_items), len(base_items))

            # Two one-day windows: the latest day (yesterday's report) and one in the middle of the history.
            for name, days_back in (("latest day", 1), ("a day 10 days back", 10)):
                after = end - days_back * 86400.0
                before = after + 86400.0
                window = windows.setdefault(name, {"ours": [], "base": [], "needed": [], "rows": []})
                since = _last(emu)
                operator = ListAnalysesOperator(
                    task_id="list_day",
                    fetch_all=True,
                    created_after=datetime.fromtimestamp(after, tz=UTC),
                    created_before=datetime.fromtimestamp(before, tz=UTC),
                    fields=["id", "created"],
                )
                rows = operator.execute({})  # type: ignore[arg-type]
                window["ours"].append(_requests(emu, since))
                since = _last(emu)
                every = get_all_analyses(emu.api_key, emu.base_url)
                in_day = [a for a in every if after <= a["created"] < before]
                window["base"].append(_requests(emu, since))
                assert isinstance(rows, list)
                assert len(rows) == len(in_day), (name, len(rows), len(in_day))
                newer = sum(1 for a in every if a["created"] >= after)
                # The pages that hold the window and everything newer, plus the one that shows it has ended.
                window["needed"].append(math.ceil(newer / 1000) + (1 if newer % 1000 == 0 else 0))
                window["rows"].append(len(rows))

    ratio = statistics.median(counts["base"]) / statistics.median(counts["ours"])
    figures = [
        Figure(
            row="4",
            what=f"requests to read {total:,} analyses",
            unit="requests",
            ours=counts["ours"],
            baseline=counts["base"],
            target="10x fewer",
            met=ratio >= 10,
        ),
        Figure(
            row="4",
            what=f"time to read {total:,} analyses",
            unit="s",
            ours=counts["ours_s"],
            baseline=counts["base_s"],
        ),
    ]
    details = [
        f"{total:,} analyses seeded evenly over {DAYS} days ({total // DAYS:,} a day, 5%).",
        "",
        "| window | analyses in it | ours: requests | pages needed | baseline: requests |",
        "|---|---|---|---|---|",
    ]
    for name, window in windows.items():
        needed = max(window["needed"])
        figures.append(
            Figure(
                row="4",
                what=f"requests for one day's window ({name})",
                unit="requests",
                ours=window["ours"],
                baseline=window["base"],
                target="only the pages it needs",
                met=max(window["ours"]) <= needed,
                note=f"needed: {needed}",
            )
        )
        details.append(
            f"| {name} | {fmt(statistics.median(window['rows']))} | "
            f"{fmt(statistics.median(window['ours']))} | {needed} | "
            f"{fmt(statistics.median(window['base']))} |"
        )
    details += [
        "",
        "Pages needed = the 1000-analysis pages holding the window and everything newer than it (the API "
        "lists newest first and has no time filter, so a window in the past costs the pages in front of it).",
    ]
    return RowResult("4", "reading 10,000 analyses, and one day's window", figures, details)
