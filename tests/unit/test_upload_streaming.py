"""An upload streams the file from disk: memory does not grow with the file's size."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import requests_mock as rm

from callcov_provider.formats import MIB
from callcov_provider.hooks.callcov import CallCovHook
from tests.unit.conftest import ANALYSIS_001, API

FILE_SIZE = 90 * MIB
CHUNK = 64 * 1024
#: What the whole upload may allocate at its peak: a small fraction of the file.
MEMORY_BUDGET = 8 * MIB


def test_a_90_mib_upload_is_streamed_not_built_in_memory(
    hook: CallCovHook, requests_mock: rm.Mocker, tmp_path: Path
) -> None:
    audio = tmp_path / "long_call.wav"
    with audio.open("wb") as handle:
        handle.write(b"RIFF\x24\x00\x00\x00WAVEfmt ")
        handle.truncate(FILE_SIZE - 8)
        handle.seek(FILE_SIZE - 8)
        handle.write(b"TAILMARK")
    assert audio.stat().st_blocks * 512 < MIB  # sparse: no real disk used

    received: dict[str, Any] = {"total": 0, "chunks": 0, "head": b"", "tail": b"", "zeros": 0}

    def consume(request: Any, context: Any) -> dict[str, Any]:
        # Read the body the way a socket would: in chunks, keeping only the ends.
        body = request.body
        assert hasattr(body, "read"), "the body was built in memory instead of streamed"
        while True:
            chunk = body.read(CHUNK)
            if not chunk:
                break
            if received["total"] < 4096:
                received["head"] += chunk[:4096]
            received["tail"] = (received["tail"] + chunk)[-4096:]
            received["total"] += len(chunk)
            received["chunks"] += 1
            received["zeros"] += chunk.count(0)
        context.status_code = 201
        return ANALYSIS_001

    requests_mock.post(f"{API}/analysis/", json=consume)

    tracemalloc.start()
    try:
        result = hook.submit_analysis(
            agent_id="agent_007",
            contact_id="contact_42",
            audio_file=str(audio),
            call_direction="inbound",
            metadata={"batch": "2024-01"},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.id == ANALYSIS_001["id"]
    assert peak < MEMORY_BUDGET, f"peak allocation {peak / MIB:.1f} MiB for a {FILE_SIZE // MIB} MiB file"
    request = requests_mock.last_request
    # Every byte of the file and the form arrived, in many chunks, matching the declared length.
    assert received["total"] == int(request.headers["Content-Length"])
    assert FILE_SIZE < received["total"] < FILE_SIZE + 4096
    assert received["chunks"] > 1000
    assert received["zeros"] >= FILE_SIZE - 100
    head, tail = received["head"], received["tail"]
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    boundary = request.headers["Content-Type"].split("boundary=")[1].encode()
    assert head.startswith(b"--" + boundary + b"\r\n")
    for name, value in [
        (b"agent_id", b"agent_007"),
        (b"contact_id", b"contact_42"),
        (b"call_direction", b"inbound"),
        (b"metadata", b'{"batch": "2024-01"}'),
    ]:
        assert b'name="' + name + b'"\r\n\r\n' + value + b"\r\n" in head
    assert (
        b'name="audio_file"; filename="long_call.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        b"RIFF\x24\x00\x00\x00WAVEfmt " in head
    )
    assert tail.endswith(b"TAILMARK\r\n--" + boundary + b"--\r\n")
