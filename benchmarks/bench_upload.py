"""
Row 3: peak RSS and throughput while submitting a 100 MB WAV.

Each submission runs in a fresh interpreter (``child`` mode below) that imports what it needs, builds its
client, resets its peak RSS (``/proc/self/clear_refs``; a child inherits its parent's ``ru_maxrss``), reads
its idle RSS, uploads, and reports the peak (``VmHWM``) minus the idle RSS.

Ours: ``CallCovHook.submit_analysis(audio_file=...)``, which streams the file from disk.
Baseline: the older generation's ``requests.post(files={"audio_file": open(...)})``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import Figure, RowResult, fmt, run_child

MB = 1_000_000


def write_audio(path: Path, size: int) -> Path:
    """A real (non-sparse, non-silent) 16 kHz mono WAV of exactly ``size`` bytes."""
    from callcov_provider.testing.audio import wav_bytes, wav_header

    tone = wav_bytes(1.0)[44:]
    remaining = size - 44
    with path.open("wb") as handle:
        handle.write(wav_header(remaining))
        while remaining > 0:
            chunk = tone[: min(len(tone), remaining)]
            handle.write(chunk)
            remaining -= len(chunk)
    return path


def run(quick: bool, repeats: int) -> RowResult:
    from callcov_provider.testing.server import run_emulator

    size = 10 * MB if quick else 100 * MB
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="callcov-bench-upload-") as tmp:
        audio = write_audio(Path(tmp) / "call_recording.wav", size)
        with run_emulator(processing_seconds=1.0, in_subprocess=True) as emu:
            env = {"AIRFLOW_CONN_CALLCOV_DEFAULT": emu.connection_json()}
            for _ in range(repeats):
                for label in ("ours", "baseline"):
                    emu.control.reset()
                    result = run_child("bench_upload.py", [label, str(audio), emu.base_url, emu.api_key], env)
                    result["accepted"] = len(emu.control.analyses())
                    runs[label].append(result)

    def values(label: str, key: str) -> list[float]:
        return [float(r[key]) for r in runs[label]]

    added = values("ours", "added_mib")
    ours_tp, base_tp = values("ours", "mb_per_s"), values("baseline", "mb_per_s")
    tp_ratio = statistics.median(ours_tp) / statistics.median(base_tp)
    accepted = all(r["accepted"] == 1 and r["status"] == "processing" for rs in runs.values() for r in rs)
    figures = [
        Figure(
            row="3",
            what=f"peak RSS over idle while submitting a {size // MB} MB WAV",
            unit="MiB",
            ours=added,
            baseline=values("baseline", "added_mib"),
            target="ours <= 25 MB",
            met=max(added) * 1.048576 <= 25,
        ),
        Figure(
            row="3",
            what=f"upload throughput, {size // MB} MB WAV",
            unit="MB/s",
            ours=ours_tp,
            baseline=base_tp,
            target=">= 0.8x baseline",
            met=tp_ratio >= 0.8,
        ),
    ]
    details = [
        f"A {size:,}-byte WAV (16 kHz mono tone, under the 100 MiB WAV limit), uploaded to `/analysis/` "
        "(ours) and `/calls/analyze` (the older generation) on loopback; every upload was accepted by the "
        "emulator: "
        f"{'yes' if accepted else 'NO'}.",
        "",
        "| run | idle RSS MiB | peak RSS MiB | added MiB | seconds | MB/s |",
        "|---|---|---|---|---|---|",
    ]
    for label, results in runs.items():
        for r in results:
            details.append(
                f"| {label} | {fmt(r['idle_mib'])} | {fmt(r['peak_mib'])} | {fmt(r['added_mib'])} | "
                f"{fmt(r['seconds'])} | {fmt(r['mb_per_s'])} |"
            )
    return RowResult("3", "peak RSS while submitting a 100 MB WAV", figures, details)


# -- child --------------------------------------------------------------------------------------------------


def _child(label: str, path: str, base_url: str, api_key: str) -> dict[str, Any]:
    import time

    import requests
    from common import read_status_kb, reset_peak_rss

    size = os.path.getsize(path)
    if label == "ours":
        import requests_toolbelt.multipart.encoder  # noqa: F401 - the hook imports them on first use
        import tenacity  # noqa: F401

        from callcov_provider.hooks.callcov import CallCovHook

        hook = CallCovHook()
        _ = hook.settings  # read the connection before measuring

        def submit() -> str:
            analysis = hook.submit_analysis(agent_id="AGENT_001", contact_id="CONTACT_12345", audio_file=path)
            return analysis.status.value

    else:
        from doc_samples import upload_file

        def submit() -> str:
            return str(upload_file(base_url, api_key, path)["status"])

    reset_peak_rss()
    idle = read_status_kb("VmRSS")
    started = time.perf_counter()
    status = submit()
    seconds = time.perf_counter() - started
    peak = read_status_kb("VmHWM")
    assert requests  # imported before the idle reading in both modes
    return {
        "status": status,
        "idle_mib": idle / 1024,
        "peak_mib": peak / 1024,
        "added_mib": (peak - idle) / 1024,
        "seconds": seconds,
        "mb_per_s": size / MB / seconds,
    }


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    from common import quiet_logging, setup_environment

    setup_environment()
    quiet_logging()
    print(json.dumps(_child(*sys.argv[2:6])))
