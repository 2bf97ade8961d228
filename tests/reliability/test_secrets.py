"""
5. Secrets: a batch run with a distinctive key and signed audio URLs, then a search of everything the run
left behind: every file under ``AIRFLOW_HOME``, a dump of the metadata database (XCom, triggers,
rendered template fields, task instances, ...), the emulator's request log, analyses and output, the
run's own output and the text of every error raised. The key appears nowhere; the URL's token appears
only in the requests that needed it: the emulator's downloads of the audio.
"""

from __future__ import annotations

import http.server
import json
import os
import sqlite3
import threading
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests_mock as requests_mock_module

from callcov_provider.exceptions import CallCovError, InvalidRequestError
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.testing.audio import wav_bytes
from callcov_provider.testing.client import EmulatorControl
from callcov_provider.testing.server import EmulatorLauncher
from tests.integration.conftest import RunResult, load_dag

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

GOOD_CALLS = 4


class AudioServer(http.server.ThreadingHTTPServer):
    """Serves ``/calls/<name>.wav`` only to requests signed with ``sig=<token>``; records every request."""

    def __init__(self, token: str, files: dict[str, bytes]) -> None:
        self.token = token
        self.files = files
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), _AudioHandler)


class _AudioHandler(http.server.BaseHTTPRequestHandler):
    server: AudioServer

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        parts = urlsplit(self.path)
        name = parts.path.removeprefix("/calls/")
        if parts.query != f"sig={self.server.token}":
            self.send_response(403)
            self.end_headers()
            return
        body = self.server.files.get(name)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: this server is the one place that may see the token."""


@pytest.fixture
def audio_server() -> Iterator[AudioServer]:
    token = f"tok{uuid.uuid4().hex}"
    files = {f"call_{i}.wav": wav_bytes(0.25, seed=i) for i in range(GOOD_CALLS)}
    server = AudioServer(token, files)
    thread = threading.Thread(target=server.serve_forever, name="audio-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def occurrences(needle: str, haystack: bytes | str) -> int:
    data = haystack.encode() if isinstance(haystack, str) else haystack
    return data.count(needle.encode())


def error_texts(err: BaseException) -> str:
    """Everything an error shows: str, repr, its traceback, and its chained causes."""
    return "\n".join([str(err), repr(err), *traceback.format_exception(err)])


def test_key_and_signed_url_token_leak_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    audio_server: AudioServer,
) -> None:
    key = f"sk_live_LEAKCANARY_{uuid.uuid4().hex}"
    token = audio_server.token
    audio_base = f"http://127.0.0.1:{audio_server.server_address[1]}/calls"
    emulator = EmulatorLauncher(
        (key,),
        0.5,
        in_subprocess=True,
        startup_timeout=30,
        log_path=tmp_path / "emulator.log",
        access_log=True,
    )
    emulator.start()
    errors: list[BaseException] = []
    try:
        monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emulator.connection_json(max_retries=2))
        monkeypatch.setenv("AIRFLOW_VAR_CALLCOV_AUDIO_BASE", audio_base)
        monkeypatch.setenv("AIRFLOW_VAR_CALLCOV_AUDIO_SAS", f"sig={token}")
        monkeypatch.setenv("CALLCOV_POLL_INTERVAL", "0.5")
        calls = [
            {"agent_id": f"agent_{i % 2}", "contact_id": f"customer_{i}", "file": f"call_{i}.wav"}
            for i in range(GOOD_CALLS)
        ]
        # One recording the storage does not have: the API refuses it and its submit task fails.
        calls.append({"agent_id": "agent_0", "contact_id": "customer_gone", "file": "call_gone.wav"})
        dag = load_dag("reliability_secrets.py", "reliability_secrets")
        dag_run = dag.test(run_conf={"calls": calls, "reports_root": str(tmp_path / "reports")})
        result = RunResult(dag_run)

        # Errors raised straight from the hook, with the same key and a signed URL.
        hook = CallCovHook()
        signed_missing = f"{audio_base}/call_gone.wav?sig={token}"
        with pytest.raises(InvalidRequestError) as refused:
            hook.submit_analysis(agent_id="a", contact_id="c", audio_url=signed_missing)
        errors.append(refused.value)
        with pytest.raises(InvalidRequestError) as local:
            hook.submit_analysis(agent_id="a", contact_id="c", audio_url=f"ftp://host/x.wav?sig={token}")
        errors.append(local.value)
        # A server that echoes the key and the signed URL back in its error body.
        echo = {"detail": f"bad key {key} for {signed_missing}", "error": {"code": key, "message": token}}
        with requests_mock_module.Mocker() as mock, pytest.raises(CallCovError) as echoed:
            mock.post(requests_mock_module.ANY, status_code=400, json=echo)
            hook.submit_analysis(agent_id="a", contact_id="c", audio_url=signed_missing)
        errors.append(echoed.value)
        with EmulatorControl(emulator.root_url) as control:
            request_log = json.dumps(control.requests())
            analyses = json.dumps(control.analyses())
    finally:
        emulator.stop()
    captured = capfd.readouterr()

    # The run did its work: four analyses completed, the unsigned-for file refused.
    assert result.state == "success", result.states
    assert result.states[("submit", GOOD_CALLS)] == "failed"
    assert [s["status"] for s in result.xcom("wait_for_analyses")] == ["completed"] * GOOD_CALLS
    # The batch task sent the same recordings by their signed URLs, all accepted.
    assert result.states[("submit_batch", -1)] == "success"
    assert [o["error"] for o in result.xcom("submit_batch")] == [None] * GOOD_CALLS
    # The token was needed: the storage served each good call to the signed request only.
    signed = [p for p in audio_server.seen if p.endswith(f"sig={token}")]
    assert len(signed) == len(audio_server.seen) >= GOOD_CALLS + 1

    # Every file under AIRFLOW_HOME (logs, config, the database file itself).
    home = Path(os.environ["AIRFLOW_HOME"])
    scanned = 0
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            scanned += 1
            assert occurrences(key, data) == 0, path
            assert occurrences(token, data) == 0, path
    assert scanned > 0
    # A dump of the metadata database: XCom, trigger, rendered fields, task instances, logs table...
    with sqlite3.connect(home / "airflow.db") as db:
        dump = "\n".join(db.iterdump())
        rendered = db.execute(
            "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ? AND run_id = ?",
            ("reliability_secrets", dag_run.run_id),
        ).fetchall()
    assert "reliability_secrets" in dump
    assert occurrences(key, dump) == 0
    assert occurrences(token, dump) == 0
    # The signed URL was rendered and stored, with its signature masked.
    fields = [json.loads(row[0]) for row in rendered]
    urls = [f["audio_url"] for f in fields if f.get("audio_url")]
    assert len(urls) == GOOD_CALLS + 1
    assert all(u.startswith(audio_base) and u.endswith("?***") for u in urls), urls
    # The batch's calls were rendered and stored with each URL's query string redacted.
    batch_urls = [c["audio_url"] for f in fields for c in f.get("calls") or []]
    assert batch_urls == [f"{audio_base}/call_{i}.wav?<redacted>" for i in range(GOOD_CALLS)], batch_urls
    # The emulator: request log, analyses, its own output.
    for name, text in {
        "request log": request_log,
        "analyses": analyses,
        "emulator output": (tmp_path / "emulator.log").read_text(errors="replace"),
        "run output": captured.out + captured.err,
        "errors": "\n".join(error_texts(e) for e in errors),
    }.items():
        assert occurrences(key, text) == 0, name
        assert occurrences(token, text) == 0, name
    assert "call_gone.wav" in error_texts(errors[0])  # the errors still say what went wrong
    assert "ftp" in str(errors[1])
