"""
The batch path with ``dag.test()`` against the emulator: a day larger than Airflow's mapping limit runs
through ``callcov_daily_batch`` at the submission quota, and a batch that fails half way is finished by
its retry without a second analysis of any call.
"""

from __future__ import annotations

import collections
import csv
from pathlib import Path
from typing import Any

import pytest

from callcov_provider.testing.server import EmulatorHandle, run_emulator
from tests.integration.conftest import load_dag, run_dag
from tests.reliability.conftest import logical_date, write_day, yesterday

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

#: More calls than Airflow maps task instances (1,024): one mapped task per call could not run this day.
DAY_CALLS = 1500
#: Submissions a minute: the day needs two quota windows, so the quota is met at least once.
SUBMIT_QUOTA = 1000
#: Requests a minute (submissions, polls and listings all count).
REQUEST_QUOTA = 3000
#: The manifest row (0-based call) whose recording the API refuses.
REFUSED_CALL = 700


def test_a_day_beyond_the_mapping_limit_runs_at_the_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Any
) -> None:
    day = yesterday()
    rows = write_day(tmp_path / "recordings", day, DAY_CALLS, seconds=0.05)
    # Not audio at all, under a .wav name: the API refuses it at submission (400 invalid_file_format).
    (tmp_path / "recordings" / day / rows[REFUSED_CALL]["file"]).write_bytes(b"not a recording\n" * 64)
    # 429s exactly as the documentation shows them: no Retry-After, the wait only in the message, and
    # X-RateLimit-* describing the request quota while submissions run out first.
    with run_emulator(
        processing_seconds="0.2-1",
        quota_mode="documented",
        submit_rate_limit=SUBMIT_QUOTA,
        rate_limit=REQUEST_QUOTA,
    ) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emu.connection_json())
        monkeypatch.setenv("CALLCOV_POLL_INTERVAL", "1")
        dag = load_dag("callcov_daily_batch.py", "callcov_daily_batch")
        result = run_dag(
            dag,
            logical_date=logical_date(day),
            run_conf={"root": str(tmp_path / "recordings"), "reports_root": str(tmp_path / "reports")},
        )
        log = emu.control.requests()
        analyses = emu.control.analyses()

    assert result.state == "success", result.states
    chunks = {k: v for k, v in result.states.items() if k[0] == "submit"}
    assert len(chunks) == 6  # 250 calls a chunk
    assert set(chunks.values()) == {"success"}

    outcomes = result.batch_outcomes()
    assert [o["contact_id"] for o in outcomes] == [row["contact_id"] for row in rows]
    refused = [i for i, o in enumerate(outcomes) if o["analysis_id"] is None]
    assert refused == [REFUSED_CALL]
    assert outcomes[REFUSED_CALL]["error"]

    # Exactly one analysis per accepted call.
    assert len(analyses) == DAY_CALLS - 1
    assert {a["id"] for a in analyses} == {o["analysis_id"] for o in outcomes if o["analysis_id"]}
    by_key: dict[str, set[str]] = collections.defaultdict(set)
    posts = [e for e in log if e["method"] == "POST"]
    for entry in posts:
        if entry.get("analysis_id"):
            by_key[entry["idempotency_key"]].add(entry["analysis_id"])
    assert all(len(found) == 1 for found in by_key.values())

    # The quota was met, and paced: 429s stay rare.
    limited = [e for e in posts if e["status"] == 429]
    assert limited, "the day never met the submission quota"
    record_property("submissions_429", len(limited))
    assert len(limited) <= 0.02 * DAY_CALLS + 8  # a few in-flight submissions meet each window's end

    # The report counts every call, the refused one included.
    with (Path(result.xcom("report")["csv"])).open(newline="", encoding="utf-8") as handle:
        total = next(row for row in csv.DictReader(handle) if row["scope"] == "total")
    assert int(total["calls"]) == DAY_CALLS
    assert int(total["rejected"]) == 1
    assert int(total["completed"]) + int(total["failed"]) == DAY_CALLS - 1


def test_a_batch_that_fails_half_way_is_finished_by_its_retry(
    emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    emulator.control.reset()
    # No retries inside the hook, and no replaying ambiguous POSTs: a lost answer fails the call.
    monkeypatch.setenv(
        "AIRFLOW_CONN_CALLCOV_DEFAULT", emulator.connection_json(max_retries=0, retry_ambiguous_posts=False)
    )
    rows = write_day(tmp_path, "day", 40, seconds=0.05)
    calls = [
        {
            "agent_id": r["agent_id"],
            "contact_id": r["contact_id"],
            "audio_file": str(tmp_path / "day" / r["file"]),
        }
        for r in rows
    ]
    # Three submissions are accepted and their answers lost: the first try fails with those unsent.
    emulator.control.set_faults(lose_next=3)
    result = run_dag(load_dag("it_callcov_dags.py", "it_batch_retry"), run_conf={"calls": calls})
    assert result.state == "success", result.states

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter_by(dag_id="it_batch_retry", task_id="submit", run_id=result.run_id)
            .one()
        )
        assert ti.try_number == 2
    outcomes = result.xcom("submit")
    assert all(o["analysis_id"] for o in outcomes)
    analyses = emulator.control.analyses()
    # The lost three were created on the first try and replayed on the second: 40, not 43.
    assert len(analyses) == 40
    assert {a["id"] for a in analyses} == {o["analysis_id"] for o in outcomes}
