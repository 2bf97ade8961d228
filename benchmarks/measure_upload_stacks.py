"""
Can one HTTP stack serve both paths? Peak RSS and throughput of a streamed multipart upload, per stack.

Not a row of ``run.py``: a one-off measurement behind ``docs/performance.md`` ("one HTTP stack or two").
Each upload runs in a fresh interpreter (``child`` mode), as in row 3: reset the peak RSS, read the idle
RSS, upload, report the peak (``VmHWM``) minus the idle RSS.

- ``toolbelt``: what the hook's sync path does today, ``requests`` with a ``requests_toolbelt``
  ``MultipartEncoder`` over the open file.
- ``httpx``: a sync ``httpx.Client`` given the open file in ``files=``, which httpx streams in 64 KiB reads.

Two targets: the emulator with a 100 MB WAV (row 3's upload, accepted as an analysis), and a sink on
loopback that reads and discards a 200 MB body (larger than the API accepts, to show memory stays flat).

Usage: ``python benchmarks/measure_upload_stacks.py [repeats]``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common import run_child, setup_environment

MB = 1_000_000
STACKS = ("toolbelt", "httpx")


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        remaining = int(self.headers["Content-Length"])
        while remaining:
            remaining -= len(self.rfile.read(min(remaining, 1 << 20)))
        body = json.dumps({"id": "sink", "status": "processing"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def main(repeats: int) -> None:
    from bench_upload import write_audio

    from callcov_provider.testing.server import run_emulator

    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="callcov-upload-stacks-") as tmp:
        wav100 = write_audio(Path(tmp) / "call_100.wav", 100 * MB)
        wav200 = write_audio(Path(tmp) / "call_200.wav", 200 * MB)
        sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        thread = threading.Thread(target=sink.serve_forever, daemon=True)
        thread.start()
        try:
            with run_emulator(processing_seconds=1.0, in_subprocess=True) as emu:
                targets = {
                    "emulator, 100 MB": (wav100, emu.base_url, emu.api_key),
                    "sink, 200 MB": (wav200, f"http://127.0.0.1:{sink.server_address[1]}/api/v1", "k"),
                }
                for _ in range(repeats):
                    for target, (path, url, key) in targets.items():
                        for stack in STACKS:
                            result = run_child("measure_upload_stacks.py", [stack, str(path), url, key])
                            results.setdefault((target, stack), []).append(result)
        finally:
            sink.shutdown()
            sink.server_close()
            thread.join(5)
    print("| target | stack | added MiB (median [min-max]) | MB/s (median) | status |")
    print("|---|---|---|---|---|")
    for (target, stack), runs in results.items():
        added = [r["added_mib"] for r in runs]
        speed = [r["mb_per_s"] for r in runs]
        print(
            f"| {target} | {stack} | {statistics.median(added):.2f} [{min(added):.2f}-{max(added):.2f}] | "
            f"{statistics.median(speed):.0f} | {runs[0]['status']} |"
        )


def _child(stack: str, path: str, base_url: str, api_key: str) -> dict[str, Any]:
    import time

    from common import read_status_kb, reset_peak_rss

    size = os.path.getsize(path)
    url = f"{base_url}/analysis/"
    headers = {"X-API-Key": api_key, "Idempotency-Key": f"stacks-{time.time_ns()}"}
    fields = {"agent_id": "AGENT_001", "contact_id": "CONTACT_12345"}
    if stack == "toolbelt":
        import requests
        from requests_toolbelt.multipart.encoder import MultipartEncoder

        session = requests.Session()

        def submit() -> tuple[int, str]:
            with open(path, "rb") as handle:
                encoder = MultipartEncoder({**fields, "audio_file": (Path(path).name, handle, "audio/wav")})
                response = session.post(
                    url, data=encoder, headers={**headers, "Content-Type": encoder.content_type}
                )
            return response.status_code, response.json().get("status", "?")

    else:
        import httpx

        client = httpx.Client(timeout=60)

        def submit() -> tuple[int, str]:
            with open(path, "rb") as handle:
                response = client.post(
                    url,
                    data=fields,
                    files={"audio_file": (Path(path).name, handle, "audio/wav")},
                    headers=headers,
                )
            return response.status_code, response.json().get("status", "?")

    reset_peak_rss()
    idle = read_status_kb("VmRSS")
    started = time.perf_counter()
    code, status = submit()
    seconds = time.perf_counter() - started
    peak = read_status_kb("VmHWM")
    return {
        "status": f"{code} {status}",
        "added_mib": (peak - idle) / 1024,
        "mb_per_s": size / MB / seconds,
    }


if __name__ == "__main__":
    setup_environment()
    if sys.argv[1:2] == ["child"]:
        print(json.dumps(_child(*sys.argv[2:6])))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
