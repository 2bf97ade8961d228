"""
4. Emulator restart: the API goes away twice in the middle of a daily batch and comes back with its
state (``--db``). Once while the calls are being submitted, once while the batch sensor is deferred and
polling. Connection refused is transient for both the hook (submissions) and the trigger (polling): the
run succeeds, and the emulator's database holds exactly one analysis per call.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from callcov_provider.testing.client import EmulatorControl
from callcov_provider.testing.server import EmulatorLauncher
from tests.integration.conftest import RunResult, load_dag
from tests.reliability.conftest import (
    logical_date,
    read_scorecards,
    wait_for,
    write_day,
    yesterday,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]

CALLS = 12
KEY = "sk_test_restart_2c1b"
#: Seconds the API stays down while the trigger polls (several poll intervals of 0.5 s).
OUTAGE_SECONDS = 2.0


class Chaos(threading.Thread):
    """Restart the emulator mid-submission, then take it down for a while mid-poll."""

    def __init__(self, emulator: EmulatorLauncher) -> None:
        super().__init__(name="emulator-chaos", daemon=True)
        self.emulator = emulator
        self.events: list[str] = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def _requests(self, **filters: Any) -> list[dict[str, Any]]:
        with EmulatorControl(self.emulator.root_url, timeout=5) as control:
            return control.requests(**filters)

    def _processing_polls(self) -> int:
        """List requests of the batch sensor in this life of the emulator (its request log is in memory)."""
        return sum("status_filter=processing" in (r.get("query") or "") for r in self._requests(method="GET"))

    def run(self) -> None:
        try:
            # 1. Mid-submission: a third of the calls are in, restart at once.
            wait_for(
                lambda: len(self._requests(method="POST")) >= CALLS // 3, timeout=120, what="submissions"
            )
            self.emulator.restart()
            self.events.append("restarted during submissions")
            # 2. Mid-poll: the sensor lists processing analyses; go down for a while, then come back.
            wait_for(
                lambda: self._processing_polls() >= 2, timeout=120, what="the deferred batch sensor to poll"
            )
            self.emulator.stop()
            self.events.append("stopped during polling")
            threading.Event().wait(OUTAGE_SECONDS)
            self.emulator.start()
            self.events.append("started again")
            # The wait goes on against the restarted API: let the analyses finish now.
            wait_for(lambda: self._processing_polls() >= 1, timeout=60, what="polling to resume")
            with EmulatorControl(self.emulator.root_url, timeout=5) as control:
                self.events.append(f"completed {control.complete_all()} after the restart")
        except BaseException as err:
            self.error = err
        finally:
            self.done.set()


def test_daily_batch_rides_through_emulator_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    day = yesterday()
    write_day(tmp_path / "recordings", day, CALLS)
    # Analyses take an hour: the run can only finish after the restarts, when the test completes them.
    emulator = EmulatorLauncher(
        (KEY,),
        3600.0,
        in_subprocess=True,  # a free port, kept across the restarts
        startup_timeout=30,
        log_path=tmp_path / "emulator.log",
        db=str(tmp_path / "emulator.sqlite"),
    )
    emulator.start()
    chaos = Chaos(emulator)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emulator.connection_json(max_retries=10))
        monkeypatch.setenv("CALLCOV_POLL_INTERVAL", "0.5")
        dag = load_dag("callcov_daily_batch.py", "callcov_daily_batch")
        chaos.start()
        dag_run = dag.test(
            logical_date=logical_date(day),
            run_conf={"root": str(tmp_path / "recordings"), "reports_root": str(tmp_path / "reports")},
        )
        result = RunResult(dag_run)
        assert chaos.done.wait(30)
        with EmulatorControl(emulator.root_url) as control:
            analyses = control.analyses()
    finally:
        emulator.stop()
        chaos.join(10)

    output = capfd.readouterr()
    logs = output.out + output.err
    assert chaos.error is None, chaos.error
    # The outages were met: refused connections were retried, not fatal.
    refused = logs.count("connect error; retry")
    assert refused >= 1
    assert emulator.starts == 3, chaos.events
    assert result.state == "success", result.states
    ids = [o["analysis_id"] for o in result.batch_outcomes()]
    # One analysis per call, kept across both restarts by the database: none lost, none duplicated.
    assert len(set(ids)) == CALLS
    assert sorted(a["id"] for a in analyses) == sorted(ids)
    statuses = result.xcom("wait_for_analyses")
    assert [s["id"] for s in statuses] == ids
    assert {s["status"] for s in statuses} == {"completed"}
    cards = read_scorecards(Path(result.xcom("report")["csv"]))
    assert cards["TOTAL"]["completed"] == str(CALLS)
    print("emulator restart events:", chaos.events, "refused connections retried:", refused)
