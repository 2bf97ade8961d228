"""
End to end on real Airflow processes: ``airflow standalone`` (scheduler, dag-processor, triggerer,
api-server; LocalExecutor, SQLite) runs the example DAGs against the CallCov emulator.

* The connection form metadata the UI reads (``GET /ui/connections/hook_meta``) carries the CallCov
  extra fields, labels and hidden fields.
* The connection-test endpoint (``POST /api/v2/connections/test``) tells a good key, a refused key and
  an unreachable host apart, and never echoes a key.
* ``callcov_daily_batch`` triggered through the REST API succeeds: its sensor defers, its trigger runs
  in the triggerer, and the day's report covers every call of the manifest. The run the scheduler
  creates by itself when the DAG is unpaused (an empty day) ends cleanly with the day skipped.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import pytest

from callcov_provider.connection_form import CONN_FIELDS, UI_FIELD_BEHAVIOUR
from tests.e2e.conftest import API_KEY, Stack
from tests.e2e.helpers import free_port, manifest_counts, read_csv, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "callcov_daily_batch"
TRIGGER_CLASSPATH = "callcov_provider.triggers.analysis.AnalysisCompletedTrigger"
FINISHED = {"success", "failed"}
#: Generous upper bounds on a shared 2-core machine; the whole run usually takes about 30 s.
PARSE_TIMEOUT = 120.0
DEFER_TIMEOUT = 180.0
RUN_TIMEOUT = 180.0


# -- connection form ---------------------------------------------------------------------------------


def test_connection_form_metadata_is_served(stack: Stack) -> None:
    response = stack.api.get("/ui/connections/hook_meta")
    assert response.status_code == 200, response.text
    by_type = {meta["connection_type"]: meta for meta in response.json()}
    assert "callcov" in by_type, sorted(t for t in by_type if t)
    meta = by_type["callcov"]
    assert meta["hook_name"] == "CallCov"
    assert meta["hook_class_name"] == "callcov_provider.hooks.callcov.CallCovHook"

    standard = meta["standard_fields"]
    assert standard["host"]["title"] == UI_FIELD_BEHAVIOUR["relabeling"]["host"] == "API base URL"
    assert standard["password"]["title"] == UI_FIELD_BEHAVIOUR["relabeling"]["password"]
    assert standard["host"]["placeholder"] == UI_FIELD_BEHAVIOUR["placeholders"]["host"]
    for name in ("url_schema", "login"):
        assert standard[name] is not None, name
        assert standard[name]["hidden"] is True, (name, standard[name])
    # The port stays visible (optional, placeholder 443): Airflow 3.3.2's Test button needs one.
    assert not (standard["port"] or {}).get("hidden")
    assert standard["port"]["title"] == UI_FIELD_BEHAVIOUR["relabeling"]["port"]
    assert standard["port"]["placeholder"] == "443"
    assert not (standard["host"] or {}).get("hidden")
    assert not (standard["password"] or {}).get("hidden")

    extra = {
        name.removeprefix("extra__callcov__"): field for name, field in (meta["extra_fields"] or {}).items()
    }
    for name in ("auth_type", "connect_timeout", "read_timeout", "submit_path", "dashboard_url"):
        assert name in extra, (name, sorted(extra))
    assert set(CONN_FIELDS) <= set(extra), sorted(extra)
    for name, spec in CONN_FIELDS.items():
        field = extra[name]
        assert field["schema"]["title"] == spec["label"], (name, field)
        assert field["value"] == spec["schema"].get("default"), (name, field)
    assert extra["auth_type"]["schema"]["enum"] == ["api_key", "bearer"]


# -- connection test ---------------------------------------------------------------------------------


def _test_connection(stack: Stack, host: str, key: str) -> dict[str, Any]:
    body = {
        "connection_id": "callcov_e2e_connection_test",
        "conn_type": "callcov",
        "host": host,
        "password": key,
        "extra": '{"auth_type": "api_key", "connect_timeout": 5, "read_timeout": 10}',
    }
    response = stack.api.post("/api/v2/connections/test", json=body)
    assert response.status_code == 200, response.text
    assert key not in response.text, "the connection test echoed the key"
    result: dict[str, Any] = response.json()
    return result


def test_connection_test_endpoint(stack: Stack) -> None:
    good = _test_connection(stack, stack.emulator.base_url, API_KEY)
    assert good["status"] is True, good
    assert stack.emulator.base_url in good["message"]

    wrong_key = "sk_test_e2e_WRONG_key_5f1c0b"
    refused = _test_connection(stack, stack.emulator.base_url, wrong_key)
    assert refused["status"] is False, refused
    assert "authentication" in refused["message"].lower(), refused

    closed = f"http://127.0.0.1:{free_port()}/api/v1"
    unreachable = _test_connection(stack, closed, API_KEY)
    assert unreachable["status"] is False, unreachable
    assert "cannot reach" in unreachable["message"].lower(), unreachable
    assert "authentication" not in unreachable["message"].lower(), unreachable

    # Neither the API server nor any other component logged the refused key.
    assert wrong_key not in stack.airflow.log_path.read_text(encoding="utf-8", errors="replace")


# -- the daily batch on the real scheduler and triggerer -----------------------------------------------


def _task_instances(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    response = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    response.raise_for_status()
    tis: list[dict[str, Any]] = response.json()["task_instances"]
    return tis


def _states(tis: list[dict[str, Any]]) -> dict[str, list[str | None]]:
    states: dict[str, list[str | None]] = {}
    for ti in sorted(tis, key=lambda t: (t["task_id"], t["map_index"])):
        states.setdefault(ti["task_id"], []).append(ti["state"])
    return states


def _run(stack: Stack, run_id: str) -> dict[str, Any]:
    response = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
    response.raise_for_status()
    run: dict[str, Any] = response.json()
    return run


def _wait_until_parsed(stack: Stack) -> dict[str, Any]:
    def parsed() -> dict[str, Any] | None:
        stack.airflow.remember_descendants()
        response = stack.api.get(f"/api/v2/dags/{DAG_ID}")
        return response.json() if response.ok else None

    try:
        return wait_for(f"the dag-processor to parse {DAG_ID}", parsed, PARSE_TIMEOUT, interval=1)
    except AssertionError as err:
        errors = stack.api.get("/api/v2/importErrors").text
        raise AssertionError(f"{err}\nimport errors: {errors}{stack.log_tail()}") from None


def _wait_for_deferral(stack: Stack, run_id: str, seen: list[str]) -> dict[str, Any]:
    """Wait until the sensor is deferred and the triggerer has taken its trigger; return the TI."""

    def deferred() -> dict[str, Any] | None:
        stack.airflow.remember_descendants()
        response = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait_for_analyses")
        if response.status_code == 404:  # not created yet
            return None
        response.raise_for_status()
        ti: dict[str, Any] = response.json()
        if not seen or seen[-1] != ti["state"]:
            seen.append(ti["state"])
        if ti["state"] in {"failed", "up_for_retry", "upstream_failed", "skipped", "success"}:
            states = _states(_task_instances(stack, run_id))
            raise AssertionError(f"the sensor ended {ti['state']} without waiting: {states}")
        trigger = ti.get("trigger") or {}
        if ti["state"] == "deferred" and trigger.get("triggerer_id") is not None:
            return ti
        return None

    try:
        return wait_for("the sensor to defer to the triggerer", deferred, DEFER_TIMEOUT, interval=0.5)
    except AssertionError as err:
        states = _states(_task_instances(stack, run_id))
        raise AssertionError(
            f"{err}\nsensor states seen: {seen}; tasks: {states}{stack.log_tail()}"
        ) from None


def _wait_for_run(stack: Stack, run_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        stack.airflow.remember_descendants()
        run = _run(stack, run_id)
        return run if run["state"] in FINISHED else None

    try:
        return wait_for(f"run {run_id} to finish", finished, RUN_TIMEOUT, interval=1)
    except AssertionError as err:
        states = _states(_task_instances(stack, run_id))
        raise AssertionError(f"{err}\ntasks: {states}{stack.log_tail()}") from None


def test_daily_batch_on_scheduler_and_triggerer(stack: Stack) -> None:
    started = time.monotonic()
    day_dir = stack.recordings / stack.day
    manifest = manifest_counts(day_dir)
    assert manifest == {"rows": 15, "usable": 13, "skipped": 2}, manifest

    dag = _wait_until_parsed(stack)
    assert dag["is_paused"] is True  # paused at creation
    stack.timings["parsed"] = time.monotonic() - started

    # Unpausing makes the scheduler create the run of the latest complete day (catchup=False): an empty
    # day here, which must end cleanly. Then the day under test, triggered with its logical date.
    response = stack.api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    assert response.status_code == 200, response.text
    response = stack.api.post(
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": f"{stack.day}T00:00:00Z", "conf": {}, "note": "callcov e2e"},
    )
    assert response.status_code == 200, response.text
    run = response.json()
    run_id = run["dag_run_id"]
    assert run["logical_date"].startswith(stack.day), run

    sensor_states: list[str] = []
    deferred_ti = _wait_for_deferral(stack, run_id, sensor_states)
    stack.timings["deferred"] = time.monotonic() - started
    trigger = deferred_ti["trigger"]
    assert trigger["classpath"] == TRIGGER_CLASSPATH, trigger
    assert deferred_ti["try_number"] == 1

    # Every analysis of the batch is still processing (the emulator holds them): finish them now. The
    # trigger's next poll sees them done and hands the batch back to the sensor.
    analyses = stack.emulator.control.analyses()
    assert len(analyses) == 12, [a.get("status") for a in analyses]
    assert stack.emulator.control.complete_all() == 12

    run = _wait_for_run(stack, run_id)
    stack.timings["run_finished"] = time.monotonic() - started
    tis = _task_instances(stack, run_id)
    states = _states(tis)
    assert run["state"] == "success", f"{states}{stack.log_tail()}"
    assert states["discover"] == ["success"]
    # One chunk of 13 calls: the call the API refused is reported in the chunk's outcomes, not fatal.
    assert states["submit"] == ["success"], states
    assert states["wait_for_analyses"] == ["success"]
    assert states["list_completed"] == ["success"]
    assert states["report"] == ["success"]

    # The sensor ran once, deferred, and resumed in the same try (no retry hid a failure).
    tries = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait_for_analyses/tries")
    assert tries.status_code == 200, tries.text
    assert [t["try_number"] for t in tries.json()["task_instances"]] == [1]
    assert "deferred" in sensor_states, sensor_states

    # The trigger ran in the triggerer: its log file is named after the triggerer job that ran it.
    jobs = stack.api.get("/api/v2/jobs", params={"job_type": "TriggererJob"})
    assert jobs.status_code == 200, jobs.text
    triggerer_ids = {job["id"] for job in jobs.json()["jobs"]}
    assert trigger["triggerer_id"] in triggerer_ids, (trigger, triggerer_ids)
    task_logs = stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=wait_for_analyses"
    trigger_log = task_logs / f"attempt=1.log.trigger.{trigger['triggerer_id']}.log"
    assert trigger_log.is_file(), sorted(p.name for p in task_logs.iterdir())
    trigger_text = trigger_log.read_text(encoding="utf-8")
    assert TRIGGER_CLASSPATH in trigger_text  # the trigger's own logger
    assert "CallCov: 12 of 12 analyses finished" in trigger_text
    assert "Trigger fired event" in trigger_text
    assert "Pausing task as DEFERRED" in (task_logs / "attempt=1.log").read_text(encoding="utf-8")

    _check_report(stack.reports / stack.day, day_dir, manifest)

    # The report task updated the asset the weekly trend DAG is scheduled on.
    events = stack.api.get("/api/v2/assets/events", params={"source_dag_id": DAG_ID, "source_run_id": run_id})
    assert events.status_code == 200, events.text
    assert [e["source_task_id"] for e in events.json()["asset_events"]] == ["report"]

    _check_empty_day_runs(stack, run_id)
    stack.timings["checked"] = time.monotonic() - started


def _check_report(report_dir: Path, day_dir: Path, manifest: dict[str, int]) -> None:
    """The report covers every call of the manifest: 12 submitted, 1 rejected, 2 rows skipped."""
    csv_path, html_path = report_dir / "scorecards.csv", report_dir / "report.html"
    assert csv_path.is_file(), sorted(p.name for p in report_dir.parent.rglob("*"))
    assert html_path.is_file()
    rows = read_csv(csv_path)
    totals = [row for row in rows if row["scope"] == "total"]
    agents = [row for row in rows if row["scope"] == "agent"]
    assert len(totals) == 1, rows
    total = {
        k: int(totals[0][k]) for k in ("calls", "submitted", "rejected", "completed", "failed", "pending")
    }
    assert total == {"calls": 13, "submitted": 12, "rejected": 1, "completed": 11, "failed": 1, "pending": 0}
    assert total["calls"] == manifest["usable"] == manifest["rows"] - manifest["skipped"]
    assert total["submitted"] + total["rejected"] == total["calls"]
    assert total["completed"] + total["failed"] + total["pending"] == total["submitted"]
    for column in total:
        assert sum(int(row[column]) for row in agents) == total[column], column
    expected_agents = {row["agent_id"] for row in read_csv(day_dir / "calls.csv")}
    assert {row["agent_id"] for row in agents} == expected_agents - {""}
    assert "call_13.wav" in totals[0]["failure_reasons"]  # the rejected file
    assert "silence" in totals[0]["failure_reasons"]  # the failed analysis

    page = html.unescape(html_path.read_text(encoding="utf-8"))
    assert page.count("<figure>") == 3  # effort, compliance and greeting charts, each on its own scale
    assert "call_14.wav" in page  # the two skipped rows: a missing file...
    assert "call_15.aac" in page  # ...and an unsupported format
    for agent in expected_agents:
        assert agent in page


def _check_empty_day_runs(stack: Stack, run_id: str) -> None:
    """The run the scheduler created on unpause (a day with no recordings) ends success, all skipped."""

    def scheduled_runs() -> list[dict[str, Any]] | None:
        response = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns", params={"run_type": "scheduled"})
        response.raise_for_status()
        runs: list[dict[str, Any]] = response.json()["dag_runs"]
        return runs if runs and all(r["state"] in FINISHED for r in runs) else None

    runs = wait_for("the scheduled (empty day) run to finish", scheduled_runs, RUN_TIMEOUT, interval=1)
    for run in runs:
        assert run["dag_run_id"] != run_id
        states = _states(_task_instances(stack, run["dag_run_id"]))
        assert run["state"] == "success", states
        assert states["discover"] == ["skipped"], states
        assert states["wait_for_analyses"] == ["skipped"], states
        assert states["report"] == ["skipped"], states
        assert not {"failed", "up_for_retry", "upstream_failed"} & {s for v in states.values() for s in v}
