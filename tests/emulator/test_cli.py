"""The ``callcov-emulator`` console script and the subprocess mode of ``run_emulator``."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from callcov_provider.formats import MIB
from callcov_provider.testing.audio import write_sized_wav
from callcov_provider.testing.cli import build_parser, config_from_args
from callcov_provider.testing.server import READY_PREFIX, run_emulator

SCRIPT = Path(sys.executable).with_name("callcov-emulator")


class Running:
    """A started console script, its stdout lines in a queue."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [str(SCRIPT), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, prefix: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if line.startswith(prefix):
                return line
        stderr = self.process.stderr.read() if self.process.poll() is not None and self.process.stderr else ""
        pytest.fail(f"no line starting {prefix!r}; stdout: {self.output}; stderr: {stderr}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.reader.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for item in started:
        item.stop()


def test_console_script_is_installed() -> None:
    assert SCRIPT.exists(), "pip install -e . registers the callcov-emulator console script"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_starts_prints_ready_serves_and_stops_cleanly(running: list[Running], signum: int) -> None:
    emulator = Running("--api-key", "sk_cli_one", "--api-key", "sk_cli_two", "--processing-seconds", "1-5")
    running.append(emulator)
    ready = emulator.wait_for_line(READY_PREFIX)
    base_url = ready[len(READY_PREFIX) :]
    assert base_url.startswith("http://127.0.0.1:")
    assert base_url.endswith("/api/v1")
    assert any(base_url.rsplit("/api/v1", 1)[0] in line for line in emulator.output[:-1])
    answer = requests.get(base_url + "/analysis/", headers={"Authorization": "Bearer sk_cli_two"}, timeout=10)
    assert answer.status_code == 200
    config = requests.get(base_url.replace("/api/v1", "/_emulator/config"), timeout=10).json()
    assert config["accounts"] == ["acct_1", "acct_2"]
    assert config["processing"] == {"min_seconds": 1.0, "max_seconds": 5.0, "failure_rate": 0.0}
    os.killpg(emulator.process.pid, signum)
    assert emulator.process.wait(15) == 0
    emulator.wait_for_line("callcov-emulator stopped")
    assert "sk_cli" not in " ".join(emulator.output)


def test_cli_takes_keys_from_the_environment_and_faults_from_flags(running: list[Running]) -> None:
    emulator = Running(
        "--fault",
        "503=0.25",
        "--fault",
        "latency=0.01-0.02",
        "--rate-limit",
        "100",
        "--submit-rate-limit",
        "20",
        env={"CALLCOV_EMULATOR_API_KEYS": "sk_env_a,sk_env_b"},
    )
    running.append(emulator)
    base_url = emulator.wait_for_line(READY_PREFIX)[len(READY_PREFIX) :]
    root = base_url.rsplit("/api/v1", 1)[0]
    config = requests.get(root + "/_emulator/config", timeout=10).json()
    assert config["accounts"] == ["acct_1", "acct_2"]
    assert config["faults"]["error_rates"] == {"503": 0.25}
    assert (config["faults"]["latency_min"], config["faults"]["latency_max"]) == (0.01, 0.02)
    assert config["rate_limits"] == {
        "requests_per_minute": 100,
        "submissions_per_minute": 20,
        "mode": "friendly",
        "plan": None,
        "concurrent_processing": None,
        "reset_format": "epoch",
    }
    statuses = {
        requests.get(base_url + "/analysis/", headers={"X-API-Key": "sk_env_b"}, timeout=10).status_code
        for _ in range(12)
    }
    assert statuses <= {200, 503}
    assert 200 in statuses


def test_cli_refuses_bad_flags() -> None:
    parser = build_parser()
    with pytest.raises(ValueError):
        config_from_args(parser.parse_args(["--fault", "teapot=1"]), environ={})
    with pytest.raises(ValueError):
        config_from_args(parser.parse_args(["--processing-seconds", "5-1"]), environ={})
    config = config_from_args(
        parser.parse_args(["--seed", "7", "--allow-host", "files.internal"]), environ={}
    )
    assert config.seed == 7
    assert "files.internal" in config.allow_hosts
    assert "127.0.0.1" in config.allow_hosts
    completed = subprocess.run([str(SCRIPT), "--fault", "nope"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "NAME=VALUE" in completed.stderr


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for peak RSS")
def test_a_100_mb_upload_does_not_cost_100_mb_of_memory(tmp_path: Path) -> None:
    size = 100 * MIB  # exactly the WAV limit
    path = write_sized_wav(tmp_path / "big.wav", size)  # silent, so it ends failed: the upload is the point
    with run_emulator(("k",), in_subprocess=True) as emu:
        assert emu.pid is not None
        requests.get(emu.base_url + "/analysis/", headers={"X-API-Key": "k"}, timeout=10)
        before = _peak_rss(emu.pid)
        with path.open("rb") as handle:
            response = requests.post(
                emu.base_url + "/analysis/",
                headers={"X-API-Key": "k"},
                files={"audio_file": ("big.wav", handle)},
                data={"agent_id": "a", "contact_id": "c"},
                timeout=120,
            )
        assert response.status_code == 201, response.text
        assert response.json()["audio"]["size_bytes"] == size
        growth = _peak_rss(emu.pid) - before
        assert growth < 30 * MIB, f"peak RSS grew by {growth / MIB:.1f} MiB for a {size / MIB:.0f} MiB upload"
        pid = emu.pid
    # The process group is gone after the context manager exits.
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
