"""
1. Fault storm: the daily batch DAG over 100 calls while the emulator faults about 30% of requests.

Faults: 500/502/503/504, bursts of 429 (Retry-After 1 s), dropped connections, added latency, and
submissions accepted and then their response lost (as a 503, or as a dropped connection). The run must
succeed on the hook's own retries (every chunk's submit task on its first try), the emulator must hold
exactly 100 analyses, one per idempotency key, and the report must cover all 100 calls.
"""

from __future__ import annotations

import collections
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from callcov_provider.testing.server import run_emulator
from tests.integration.conftest import RunResult, load_dag
from tests.reliability.conftest import logical_date, read_scorecards, write_day, yesterday

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]

CALLS = 100
#: Four chunks of the batch operator, two sending at a time.
CHUNK_SIZE = 25
#: Per request: 4 x 3% injected 5xx, 4% dropped connections; per submission another 10% accepted-then-lost.
ERROR_RATES = {500: 0.03, 502: 0.03, 503: 0.03, 504: 0.03}
DROP_RATE = 0.04
LOSE_RATE = 0.10
#: A burst of 429s is injected every this many API requests.
BURST_EVERY = 60
BURST_SIZE = 3


def classify(entry: dict[str, Any]) -> list[str]:
    """The faults the emulator injected into one logged request."""
    label = entry.get("fault") or ""
    kinds = []
    for part in label.split(","):
        if part.startswith("status="):
            kinds.append(part.removeprefix("status="))
        elif part == "drop":
            kinds.append("drop")
        elif part.startswith("lose="):
            kinds.append(f"lose-{part.removeprefix('lose=')}")
        elif part.startswith("latency="):
            kinds.append("latency")
    return kinds


class Conductor(threading.Thread):
    """Injects a burst of 429s every ``BURST_EVERY`` requests and flips the lose mode between bursts."""

    def __init__(self, control: Any) -> None:
        super().__init__(name="fault-conductor", daemon=True)
        self.control = control
        self.stop = threading.Event()
        self.bursts = 0

    def run(self) -> None:
        next_burst = BURST_EVERY
        seen, last_seq = 0, 0
        while not self.stop.wait(0.1):
            try:
                new = self.control.requests(since=last_seq)
            except httpx.HTTPError:
                continue  # the control API is never faulted, but a busy machine may time a read out
            if new:
                seen += len(new)
                last_seq = new[-1]["seq"]
            if seen >= next_burst:
                self.bursts += 1
                mode = "drop" if self.bursts % 2 else "503"
                self.control.set_faults(burst_429=BURST_SIZE, lose_mode=mode)
                next_burst = seen + BURST_EVERY


def test_daily_batch_survives_a_fault_storm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    day = yesterday()
    write_day(tmp_path / "recordings", day, CALLS)
    faults = {
        "error_rates": ERROR_RATES,
        "drop_rate": DROP_RATE,
        "lose_rate": LOSE_RATE,
        "lose_mode": "503",
        "latency": "0.01-0.15",
        "latency_rate": 0.15,
        "burst_429": BURST_SIZE,
        "retry_after": 1,
    }
    with run_emulator(processing_seconds="0.5-2", faults=faults, seed=7) as emu:
        # The hook's retries must absorb the storm: more attempts than the default five, so that a run of
        # bad luck (0.3^11) cannot fail a request; the deadline stays bounded.
        monkeypatch.setenv(
            "AIRFLOW_CONN_CALLCOV_DEFAULT", emu.connection_json(max_retries=10, retry_deadline=120)
        )
        monkeypatch.setenv("CALLCOV_POLL_INTERVAL", "0.5")
        monkeypatch.setenv("CALLCOV_CHUNK_SIZE", str(CHUNK_SIZE))
        dag = load_dag("callcov_daily_batch.py", "callcov_daily_batch")
        conductor = Conductor(emu.control)
        conductor.start()
        try:
            dag_run = dag.test(
                logical_date=logical_date(day),
                run_conf={"root": str(tmp_path / "recordings"), "reports_root": str(tmp_path / "reports")},
            )
            result = RunResult(dag_run)
        finally:
            conductor.stop.set()
            conductor.join(10)
        log = emu.control.requests()
        analyses = emu.control.analyses()

    output = capfd.readouterr()
    retry_lines = re.findall(r"CallCov (GET|POST) [^:]*: ([^;]*); retry \d+ of", output.out + output.err)
    assert result.state == "success", result.states
    submits = {k: v for k, v in result.states.items() if k[0] == "submit"}
    assert len(submits) == CALLS // CHUNK_SIZE
    assert set(submits.values()) == {"success"}

    # Every submit succeeded on its first try: the hook's retries absorbed the faults, not task retries.
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tries = {
            ti.map_index: ti.try_number
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == "callcov_daily_batch", TaskInstance.task_id == "submit"
            )
            if ti.run_id == dag_run.run_id
        }
    assert set(tries.values()) <= {1}, tries

    # Exactly 100 analyses: none lost, none created twice.
    assert len(analyses) == CALLS
    outcomes = result.batch_outcomes()
    assert [o["error"] for o in outcomes] == [None] * CALLS
    ids = {o["analysis_id"] for o in outcomes}
    assert ids == {a["id"] for a in analyses}
    posts = [e for e in log if e["method"] == "POST"]
    keys = {e["idempotency_key"] for e in posts}
    assert len(keys) == CALLS
    assert None not in keys
    # Each key ended in exactly one analysis, whatever its attempts saw.
    by_key: dict[str, set[str]] = collections.defaultdict(set)
    for entry in posts:
        if entry.get("analysis_id"):
            by_key[entry["idempotency_key"]].add(entry["analysis_id"])
    assert all(len(found) == 1 for found in by_key.values()), by_key
    assert len(by_key) == CALLS

    # The storm happened: every kind of fault, on about 30% of the requests.
    kinds = collections.Counter(kind for entry in log for kind in classify(entry))
    failing = [e for e in log if set(classify(e)) - {"latency"}]
    for kind in ("500", "502", "503", "504", "429", "drop", "latency"):
        assert kinds[kind] > 0, kinds
    assert kinds["lose-503"] + kinds["lose-drop"] > 0, kinds
    share = len(failing) / len(log)
    assert 0.2 <= share <= 0.45, (share, kinds)
    replayed = sum(1 for e in posts if e.get("replayed"))
    # Every faulted attempt was retried by the hook (the logs say so), none by Airflow.
    assert len(retry_lines) >= len(failing)
    lost = kinds["lose-503"] + kinds["lose-drop"]
    assert replayed >= 1

    # The report covers all 100 calls, all completed.
    statuses = result.xcom("wait_for_analyses")
    assert len(statuses) == CALLS
    assert {s["status"] for s in statuses} == {"completed"}
    listed = result.xcom("list_completed")
    assert {row["id"] for row in listed} == ids
    paths = result.xcom("report")
    cards = read_scorecards(Path(paths["csv"]))
    assert cards["TOTAL"]["calls"] == str(CALLS)
    assert cards["TOTAL"]["completed"] == str(CALLS)
    assert sum(int(row["calls"]) for agent, row in cards.items() if agent != "TOTAL") == CALLS

    figures = {
        "requests": len(log),
        "faulted_requests": len(failing),
        "fault_share": round(share, 3),
        "faults": dict(kinds),
        "submission_attempts": len(posts),
        "lost_responses": lost,
        "replayed_submissions": replayed,
        "hook_retries": len(retry_lines),
        "hook_retries_by_reason": dict(collections.Counter(reason for _, reason in retry_lines)),
        "analyses": len(analyses),
    }
    record_property("figures", figures)
    print("fault storm figures:", figures)
