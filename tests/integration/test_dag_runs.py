"""Small DAGs run with ``dag.test()`` against the emulator over real HTTP on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callcov_provider.testing.audio import write_wav
from callcov_provider.testing.server import EmulatorHandle
from tests.integration.conftest import load_dag, run_dag

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


def make_calls(tmp_path: Path, count: int, silent: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    calls = []
    for i in range(count):
        path = write_wav(tmp_path / f"call_{i}.wav", 1.0, seed=i, silent=i in silent)
        calls.append({"agent_id": f"agent_{i % 2}", "contact_id": f"customer_{i}", "audio_file": str(path)})
    return calls


def test_mapped_submit_feeds_deferrable_sensor_and_list(connected: EmulatorHandle, tmp_path: Path) -> None:
    calls = make_calls(tmp_path, 4)
    result = run_dag(load_dag("it_callcov_dags.py", "it_batch_deferrable_strict"), run_conf={"calls": calls})
    assert result.state == "success", result.states
    ids = [result.xcom("submit", map_index=i) for i in range(4)]
    summaries = result.xcom("wait")
    assert [s["id"] for s in summaries] == ids
    assert all(s["status"] == "completed" for s in summaries)
    assert [s["contact_id"] for s in summaries] == [c["contact_id"] for c in calls]
    listed = result.xcom("list")
    assert {row["id"] for row in listed} == set(ids)
    assert set(listed[0]) == {"id", "status", "call", "results"}
    assert len(connected.control.analyses()) == 4
    # The sensor polled with list requests, not one GET per id per poll. A sweep never costs more than
    # reading the pending ids one by one (see docs/waiting.md), so a few single GETs are the cheaper read
    # at times: the one that bounds how far back the listings look, and the last ids of the batch.
    requests = connected.control.requests(method="GET")
    assert any("status_filter=processing" in str(r["query"]) for r in requests)
    gets = [r for r in requests if r["path"] != "/api/v1/analysis/"]
    assert len(gets) < 2 * len(ids)


def test_same_sensor_in_poke_mode(connected: EmulatorHandle, tmp_path: Path) -> None:
    calls = make_calls(tmp_path, 3)
    result = run_dag(load_dag("it_callcov_dags.py", "it_batch_poke_strict"), run_conf={"calls": calls})
    assert result.state == "success", result.states
    assert [s["status"] for s in result.xcom("wait")] == ["completed"] * 3


@pytest.mark.parametrize("mode", ["deferrable", "poke"])
def test_failed_analysis_fails_the_sensor_with_its_reason(
    connected: EmulatorHandle, tmp_path: Path, mode: str
) -> None:
    calls = make_calls(tmp_path, 3, silent=(1,))
    result = run_dag(load_dag("it_callcov_dags.py", f"it_batch_{mode}_strict"), run_conf={"calls": calls})
    assert result.states[("wait", -1)] == "failed"
    assert result.state == "failed"


def test_failed_analysis_is_returned_when_not_strict(connected: EmulatorHandle, tmp_path: Path) -> None:
    calls = make_calls(tmp_path, 3, silent=(1,))
    result = run_dag(load_dag("it_callcov_dags.py", "it_batch_deferrable"), run_conf={"calls": calls})
    assert result.state == "success", result.states
    statuses = result.xcom("wait")
    assert [s["status"] for s in statuses] == ["completed", "failed", "completed"]
    assert statuses[1]["error_message"]


@pytest.mark.parametrize("mode", ["deferrable", "worker"])
def test_wait_for_completion(connected: EmulatorHandle, tmp_path: Path, mode: str) -> None:
    calls = make_calls(tmp_path, 1)
    result = run_dag(load_dag("it_callcov_dags.py", f"it_wait_{mode}"), run_conf={"calls": calls})
    assert result.state == "success", result.states
    analysis_id = result.xcom("submit")
    analysis = result.xcom("submit", key="analysis")
    assert analysis["id"] == analysis_id
    assert analysis["status"] == "completed"
    assert analysis["results"]["coaching"]["customer_effort_score"] in range(1, 6)
    assert result.xcom("submit", key="callcov_analysis_url").endswith(f"/analyses/{analysis_id}")
    assert len(connected.control.analyses()) == 1
