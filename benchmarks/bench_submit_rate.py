"""
Row 6: 200 submissions from 8 concurrent workers under an emulator limit of 1200/min.

Ours: ``CallCovHook.submit_analysis`` in 8 threads (one hook per thread), which retries 429 after
``Retry-After`` and replays lost answers with the same ``Idempotency-Key``.
Baseline: the older generation's batch ``ThreadPoolExecutor`` sample with its ``create_retry_session``
(``Retry`` on 500/502/503/504 only, and never for a POST), 8 workers.

Two scenarios: the plain limit (1200 requests and submissions a minute), and the same with a burst of 429s
(``Retry-After: 1``) and 5% of submissions accepted with their answer lost (503), which is when retries
matter. Failures are submissions the caller did not get an analysis for; duplicates are analyses the
emulator holds beyond the 200 submitted.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from common import Figure, RowResult, fmt

from callcov_provider.exceptions import CallCovError

WORKERS = 8
LIMIT = 1200


def _ours(files: list[Path]) -> tuple[int, int]:
    from callcov_provider.hooks.callcov import CallCovHook

    local = threading.local()

    def submit(index: int, path: Path) -> str:
        if not hasattr(local, "hook"):
            local.hook = CallCovHook()
        return local.hook.submit_analysis(
            agent_id=f"AGENT_{index % 7:03d}", contact_id=f"CONTACT_{index:05d}", audio_file=str(path)
        ).id

    ok = failed = 0
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [pool.submit(submit, i, p) for i, p in enumerate(files)]
        for future in as_completed(futures):
            try:
                future.result()
                ok += 1
            except CallCovError:
                failed += 1
    return ok, failed


def _baseline(emu: Any, files: list[Path]) -> tuple[int, int]:
    from doc_samples import batch_submit

    calls = [(str(p), f"AGENT_{i % 7:03d}", f"CONTACT_{i:05d}") for i, p in enumerate(files)]
    results, errors = batch_submit(emu.base_url, emu.api_key, calls, max_workers=WORKERS)
    return len(results), len(errors)


def run(quick: bool, repeats: int) -> RowResult:
    from callcov_provider.testing.audio import write_wav
    from callcov_provider.testing.server import run_emulator

    count = 16 if quick else 200
    scenarios = {
        "limit only": {},
        "limit + 429 burst + 5% lost answers": {
            "burst_429": 4 if quick else 40,
            "retry_after": 1,
            "lose_rate": 0.05,
            "lose_mode": "503",
        },
    }
    data: dict[str, dict[str, dict[str, list[float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="callcov-bench-submit-") as tmp:
        files = [write_wav(Path(tmp) / f"call_{i:04d}.wav", seconds=0.1, seed=i) for i in range(count)]
        with run_emulator(
            processing_seconds=1.0, in_subprocess=True, rate_limit=LIMIT, submit_rate_limit=LIMIT, seed=7
        ) as emu:
            os.environ["AIRFLOW_CONN_CALLCOV_DEFAULT"] = emu.connection_json()
            for _ in range(repeats):
                for name, faults in scenarios.items():
                    for label in ("ours", "baseline"):
                        emu.control.reset()
                        if faults:
                            emu.control.set_faults(**faults)
                        began = time.perf_counter()
                        ok, failed = _ours(files) if label == "ours" else _baseline(emu, files)
                        seconds = time.perf_counter() - began
                        held = len(emu.control.analyses())
                        refused = sum(1 for e in emu.control.requests(method="POST") if e["status"] == 429)
                        slot = data.setdefault(name, {}).setdefault(label, {})
                        for key, value in (
                            ("failures", failed),
                            ("duplicates", max(0, held - count)),
                            ("orphans", max(0, held - ok)),
                            ("seconds", seconds),
                            ("429s", refused),
                        ):
                            slot.setdefault(key, []).append(float(value))

    ideal = count / (LIMIT / 60)
    figures = []
    details = [
        f"{count} WAV files of 0.1 s, {WORKERS} workers, emulator limits {LIMIT} requests and {LIMIT} "
        f"submissions a minute (fixed one-minute windows); {count}/limit = {fmt(ideal)} s.",
        "",
        "| scenario | who | failures | duplicates | analyses the caller never learnt of | 429 answers "
        "| seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_label in data.items():
        ours, base = by_label["ours"], by_label["baseline"]
        figures.append(
            Figure(
                row="6",
                what=f"failed submissions ({name})",
                unit="of " + str(count),
                ours=ours["failures"],
                baseline=base["failures"],
                target="0",
                met=max(ours["failures"]) == 0,
            )
        )
        figures.append(
            Figure(
                row="6",
                what=f"duplicate analyses ({name})",
                unit="analyses",
                ours=ours["duplicates"],
                baseline=base["duplicates"],
                target="0",
                met=max(ours["duplicates"]) == 0,
            )
        )
        figures.append(
            Figure(
                row="6",
                what=f"total time ({name})",
                unit="s",
                ours=ours["seconds"],
                baseline=base["seconds"],
                target=f"<= 1.3 x {fmt(ideal)} s",
                met=statistics.median(ours["seconds"]) <= 1.3 * ideal,
            )
        )
        for label, slot in by_label.items():
            details.append(
                f"| {name} | {label} | {fmt(statistics.median(slot['failures']))} | "
                f"{fmt(statistics.median(slot['duplicates']))} | {fmt(statistics.median(slot['orphans']))} | "
                f"{fmt(statistics.median(slot['429s']))} | {fmt(statistics.median(slot['seconds']))} |"
            )
    details += [
        "",
        f"With fixed one-minute windows, {count} submissions never reach a limit of {LIMIT}/min, so the "
        "first scenario has no 429 at all and measures the plain submit path; the second forces the 429s "
        "(Retry-After: 1) and lost answers that a limit and a flaky network produce.",
    ]
    return RowResult("6", "200 submissions from 8 workers under a 1200/min limit", figures, details)
