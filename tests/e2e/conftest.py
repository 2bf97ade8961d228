"""
The real Airflow stack of the end-to-end tests, started once per module: the CallCov emulator (its own
process group) and ``airflow standalone`` (scheduler, dag-processor, triggerer and api-server, in one
process group of their own) in a temporary AIRFLOW_HOME with SQLite and LocalExecutor.

Teardown ends both groups (SIGTERM, then SIGKILL) even when a test fails, and fails if any process of
theirs is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import pytest

from callcov_provider.testing.server import EmulatorHandle, run_emulator
from tests.e2e.helpers import (
    VENV_BIN,
    AirflowApi,
    ProcessGroup,
    airflow_environment,
    copy_example_dags,
    free_port,
    load_demo,
    tail,
    wait_for,
)

API_KEY = "sk_test_e2e_0123456789abcdef"
#: Generous (the machine is shared and has 2 cores); the usual start-up takes about 30 s.
STARTUP_TIMEOUT = 180.0
#: Components whose health the monitor endpoint reports.
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


@dataclass
class Stack:
    """A running Airflow with the example DAGs and the emulator, plus where things are."""

    api: AirflowApi
    emulator: EmulatorHandle
    airflow: ProcessGroup
    work: Path
    home: Path
    recordings: Path
    reports: Path
    #: The day under test: far enough back not to be the day the unpaused DAG schedules by itself.
    day: str
    timings: dict[str, float] = field(default_factory=dict)

    def log_tail(self, chars: int = 6000) -> str:
        return f"\n--- end of {self.airflow.log_path} ---\n{tail(self.airflow.log_path, chars)}"


def _healthy(stack_api: AirflowApi, airflow: ProcessGroup) -> dict[str, object] | None:
    if airflow.process.poll() is not None:
        raise AssertionError(f"airflow standalone exited with {airflow.process.returncode}")
    airflow.remember_descendants()
    response = stack_api.get("/api/v2/monitor/health", timeout=10)
    if not response.ok:
        return None
    health = response.json()
    states = {name: (health.get(name) or {}).get("status") for name in COMPONENTS}
    return health if all(state == "healthy" for state in states.values()) else None


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    started = time.monotonic()
    failures_before = request.session.testsfailed
    work = Path(tempfile.mkdtemp(prefix="callcov-e2e-"))
    home, recordings, reports = work / "airflow", work / "recordings", work / "reports"
    home.mkdir()
    dags = copy_example_dags(work / "dags")
    day = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%d")
    load_demo().generate_recordings(day, recordings)
    api_port = free_port()
    airflow: ProcessGroup | None = None
    running: Stack | None = None
    # A SIGTERM to pytest ends the test like Ctrl-C does, so the teardown below still runs.
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    left: list[str] = []
    try:
        # Analyses stay "processing" until the test completes them through the emulator's control API, so
        # the sensor always finds work left and defers (no race with how fast the batch was submitted).
        with run_emulator(
            api_keys=(API_KEY,), processing_seconds=3600.0, in_subprocess=True, startup_timeout=60
        ) as emulator:
            try:
                env = airflow_environment(
                    home,
                    dags,
                    api_port,
                    {
                        # Not the fixed default ports: other Airflows may run on this machine.
                        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                        "AIRFLOW_CONN_CALLCOV_DEFAULT": emulator.connection_json(),
                        "CALLCOV_RECORDINGS_ROOT": str(recordings),
                        "CALLCOV_REPORTS_ROOT": str(reports),
                        "CALLCOV_POLL_INTERVAL": "2",
                    },
                )
                airflow = ProcessGroup(
                    [str(VENV_BIN / "airflow"), "standalone"], env, work / "standalone.log", work
                )
                api = AirflowApi(f"http://127.0.0.1:{api_port}")
                wait_for(
                    "airflow standalone to become healthy",
                    lambda: _healthy(api, airflow),
                    STARTUP_TIMEOUT,
                    interval=2,
                    on_timeout=f"\n{tail(airflow.log_path)}",
                )
                api.login()
                running = Stack(api, emulator, airflow, work, home, recordings, reports, day)
                running.timings["healthy"] = time.monotonic() - started
                yield running
            finally:
                stopping = time.monotonic()
                if running is not None:
                    running.api.session.close()  # no keep-alive connection holds up the api-server
                if airflow is not None:
                    left = airflow.stop()
                    if airflow.killed:
                        print(f"\ncallcov e2e: SIGKILLed after the grace period: {airflow.killed}")
                if running is not None:
                    running.timings["teardown"] = time.monotonic() - stopping
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    emulator_left = _group_alive(emulator.pid)
    if request.session.testsfailed > failures_before or left or emulator_left:
        print(f"\ncallcov e2e: kept {work} for inspection")
    else:
        shutil.rmtree(work, ignore_errors=True)
    timings = {name: round(value, 1) for name, value in (running.timings if running else {}).items()}
    print(f"\ncallcov e2e: {time.monotonic() - started:.0f}s in all; {timings}")
    assert not left, f"processes of airflow standalone still running after teardown: {left}"
    assert not emulator_left, f"the emulator's process group {emulator.pid} is still alive"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _group_alive(pgid: int | None) -> bool:
    """Whether any process is left in the process group ``pgid``."""
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
