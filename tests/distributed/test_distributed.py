"""
``callcov_daily_batch`` on the production shape (PostgreSQL, CeleryExecutor with two workers, two
triggerers), each scenario asserted from the emulator's audit and from Airflow's own state:

* a day of calls with the submissions spread over both workers: success, one analysis per call, the report
  complete;
* the triggerer holding the batch sensor's trigger SIGKILLed: the other takes the trigger over, the run
  succeeds, the sensor resumes once;
* a Celery worker SIGKILLed in the middle of a submission: the retry completes it, one analysis per call;
* the API key (stored encrypted by ``airflow connections add``) in no log file and nowhere in a
  ``pg_dump`` of the metadata database (XComs, trigger rows, rendered fields, connection row).
"""

from __future__ import annotations

import csv
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callcov_provider.testing.audio import write_wav
from tests.distributed.conftest import API_KEY, TRIGGERERS, WORKERS, DistributedStack
from tests.e2e.helpers import read_csv, wait_for

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

DAG_ID = "callcov_daily_batch"
#: Calls of the daily-batch scenario: a real day, beyond Airflow's 1,024 mapped task instances; the DAG
#: submits them in chunks of 250, which the two workers share.
CALLS = int(os.environ.get("CALLCOV_DISTRIBUTED_CALLS", "2000"))
#: Calls of the failure scenarios: enough to keep both workers and the trigger busy.
SMALL_DAY = 6
PARSE_TIMEOUT = 180.0
DEFER_TIMEOUT = 300.0
RUN_TIMEOUT = 420.0
FINISHED = {"success", "failed"}


def _day(offset: int) -> str:
    return (datetime.now(UTC) - timedelta(days=offset)).strftime("%Y-%m-%d")


def _write_day(stack: DistributedStack, day: str, calls: int, tag: str) -> set[str]:
    """``calls`` short recordings and their manifest; return the contact ids (unique to ``tag``)."""
    folder = stack.recordings / day
    folder.mkdir(parents=True)
    contacts = [f"{tag}_{index:05d}" for index in range(calls)]
    with (folder / "calls.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle, ["file", "agent_id", "contact_id", "call_direction", "call_timestamp"]
        )
        writer.writeheader()
        for index, contact in enumerate(contacts):
            name = f"call_{index:05d}.wav"
            write_wav(folder / name, seconds=1.0, seed=index + 1)
            writer.writerow(
                {
                    "file": name,
                    "agent_id": f"agent_{index % 4}",
                    "contact_id": contact,
                    "call_direction": "inbound",
                    "call_timestamp": f"{day}T10:00:00Z",
                }
            )
    return set(contacts)


def _tis(stack: DistributedStack, run_id: str) -> list[dict[str, Any]]:
    response = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 5000})
    response.raise_for_status()
    tis: list[dict[str, Any]] = response.json()["task_instances"]
    return tis


def _states(tis: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    states: dict[str, Counter[str]] = {}
    for ti in tis:
        states.setdefault(ti["task_id"], Counter())[ti["state"] or "none"] += 1
    return states


def _ensure_dag_ready(stack: DistributedStack) -> None:
    def parsed() -> dict[str, Any] | None:
        stack.remember()
        response = stack.api.get(f"/api/v2/dags/{DAG_ID}")
        return response.json() if response.ok else None

    dag = wait_for(f"the dag-processor to parse {DAG_ID}", parsed, PARSE_TIMEOUT, on_timeout=stack.log_tail())
    if dag["is_paused"]:
        response = stack.api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
        assert response.status_code == 200, response.text


def _trigger(stack: DistributedStack, day: str) -> str:
    _ensure_dag_ready(stack)
    response = stack.api.post(
        f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": f"{day}T00:00:00Z", "conf": {}}
    )
    assert response.status_code == 200, response.text
    run_id: str = response.json()["dag_run_id"]
    return run_id


def _sensor(stack: DistributedStack, run_id: str) -> dict[str, Any] | None:
    response = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait_for_analyses")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    ti: dict[str, Any] = response.json()
    return ti


def _wait_deferred(stack: DistributedStack, run_id: str) -> dict[str, Any]:
    def deferred() -> dict[str, Any] | None:
        stack.remember()
        ti = _sensor(stack, run_id)
        if ti is None:
            return None
        if ti["state"] in {"failed", "upstream_failed", "skipped", "success"}:
            raise AssertionError(f"the sensor ended {ti['state']}: {_states(_tis(stack, run_id))}")
        trigger = ti.get("trigger") or {}
        return ti if ti["state"] == "deferred" and trigger.get("triggerer_id") is not None else None

    try:
        return wait_for("the sensor to defer to a triggerer", deferred, DEFER_TIMEOUT, interval=1)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{_states(_tis(stack, run_id))}{stack.log_tail()}") from None


def _wait_run(stack: DistributedStack, run_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        stack.remember()
        response = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
        response.raise_for_status()
        run: dict[str, Any] = response.json()
        return run if run["state"] in FINISHED else None

    try:
        return wait_for(f"run {run_id} to finish", finished, RUN_TIMEOUT, interval=2)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{_states(_tis(stack, run_id))}{stack.log_tail()}") from None


def _analyses_per_contact(stack: DistributedStack, contacts: set[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for entry in stack.emulator.control.analyses():
        contact = ((entry.get("analysis") or {}).get("call") or {}).get("contact_id")
        if contact in contacts:
            counts[contact] += 1
    return counts


def _complete_batch(stack: DistributedStack, contacts: set[str]) -> None:
    """Every call of the day has exactly one analysis (processing until now); finish them all."""
    counts = _analyses_per_contact(stack, contacts)
    assert set(counts) == contacts, f"calls without an analysis: {sorted(contacts - set(counts))[:10]}"
    assert set(counts.values()) == {1}, f"duplicate analyses: {[c for c, n in counts.items() if n > 1]}"
    stack.emulator.control.complete_all()


def _check_report(stack: DistributedStack, day: str, calls: int) -> None:
    rows = read_csv(stack.reports / day / "scorecards.csv")
    totals = [row for row in rows if row["scope"] == "total"]
    assert len(totals) == 1, rows
    total = {
        k: int(totals[0][k]) for k in ("calls", "submitted", "rejected", "completed", "failed", "pending")
    }
    assert total == {
        "calls": calls,
        "submitted": calls,
        "rejected": 0,
        "completed": calls,
        "failed": 0,
        "pending": 0,
    }, total


def _tries(stack: DistributedStack, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}"
    path += f"/{map_index}/tries" if map_index >= 0 else "/tries"
    response = stack.api.get(path)
    response.raise_for_status()
    tries: list[dict[str, Any]] = response.json()["task_instances"]
    return tries


def _triggerer_jobs(stack: DistributedStack) -> dict[int, str]:
    response = stack.api.get("/api/v2/jobs", params={"job_type": "TriggererJob", "limit": 100})
    response.raise_for_status()
    return {job["id"]: job["hostname"] for job in response.json()["jobs"]}


# -- scenarios ---------------------------------------------------------------------------------------


def test_daily_batch_over_two_workers(dstack: DistributedStack) -> None:
    started = time.monotonic()
    day = _day(20)
    contacts = _write_day(dstack, day, CALLS, "daily")
    run_id = _trigger(dstack, day)
    _wait_deferred(dstack, run_id)
    _complete_batch(dstack, contacts)
    run = _wait_run(dstack, run_id)
    tis = _tis(dstack, run_id)
    states = _states(tis)
    assert run["state"] == "success", f"{states}{dstack.log_tail()}"
    # One submitting task instance per chunk of 250 calls: all succeed.
    assert states["submit"] == Counter({"success": -(-CALLS // 250)}), states
    for task_id in ("discover", "wait_for_analyses", "list_completed", "report"):
        assert states[task_id] == Counter({"success": 1}), states
    # The submissions ran on both Celery workers.
    hosts = Counter(ti["hostname"] for ti in tis if ti["task_id"] == "submit")
    assert set(hosts) == set(WORKERS), hosts
    assert set(_analyses_per_contact(dstack, contacts).values()) == {1}
    _check_report(dstack, day, CALLS)
    dstack.timings["daily_batch"] = time.monotonic() - started
    print(
        f"\ndaily batch: {CALLS} calls in {dstack.timings['daily_batch']:.0f}s, "
        f"submissions per worker {dict(hosts)}"
    )


def test_triggerer_killed_while_sensor_deferred(dstack: DistributedStack) -> None:
    started = time.monotonic()
    day = _day(21)
    contacts = _write_day(dstack, day, SMALL_DAY, "triggerer")
    run_id = _trigger(dstack, day)
    ti = _wait_deferred(dstack, run_id)
    first_job = ti["trigger"]["triggerer_id"]
    trigger_id = ti["trigger"]["id"]
    jobs = _triggerer_jobs(dstack)
    victim = jobs[first_job]
    assert victim in TRIGGERERS, jobs
    survivor = next(name for name in TRIGGERERS if name != victim)

    killed_at = time.monotonic()
    os.killpg(dstack.groups[victim].pgid, signal.SIGKILL)

    def taken_over() -> dict[str, Any] | None:
        dstack.remember()
        now = _sensor(dstack, run_id)
        assert now is not None
        assert now["state"] == "deferred", now["state"]
        trigger = now.get("trigger") or {}
        holder = trigger.get("triggerer_id")
        return now if holder is not None and holder != first_job else None

    moved = wait_for("the other triggerer to take the trigger over", taken_over, 120, interval=1)
    takeover = time.monotonic() - killed_at
    assert moved["trigger"]["id"] == trigger_id  # the same trigger row, not a new deferral
    assert _triggerer_jobs(dstack)[moved["trigger"]["triggerer_id"]] == survivor

    _complete_batch(dstack, contacts)
    run = _wait_run(dstack, run_id)
    states = _states(_tis(dstack, run_id))
    assert run["state"] == "success", f"{states}{dstack.log_tail()}"
    # No duplicate effect of the event: the sensor resumed once, in its first try; everything after it
    # ran once; no call was submitted twice.
    assert [t["try_number"] for t in _tries(dstack, run_id, "wait_for_analyses")] == [1]
    for task_id in ("wait_for_analyses", "list_completed", "report"):
        assert states[task_id] == Counter({"success": 1}), states
        assert [t["try_number"] for t in _tries(dstack, run_id, task_id)] == [1], task_id
    assert set(_analyses_per_contact(dstack, contacts).values()) == {1}
    _check_report(dstack, day, SMALL_DAY)

    dstack.start(victim)  # back to two triggerers for what follows
    dstack.timings["triggerer_kill"] = time.monotonic() - started
    print(f"\ntriggerer kill: {victim} killed, {survivor} took the trigger over in {takeover:.0f}s")


def test_worker_killed_mid_submission(dstack: DistributedStack) -> None:
    started = time.monotonic()
    day = _day(22)
    contacts = _write_day(dstack, day, SMALL_DAY, "worker")
    control = dstack.emulator.control
    since = control.requests()[-1]["seq"] if control.requests() else 0
    # Every request now takes 15 s: a submission is in flight long enough to kill its worker.
    control.set_faults(latency=15.0, latency_rate=1.0)
    try:
        run_id = _trigger(dstack, day)

        def submitting() -> dict[str, Any] | None:
            dstack.remember()
            running = [
                t for t in _tis(dstack, run_id) if t["task_id"] == "submit" and t["state"] == "running"
            ]
            return running[0] if running and running[0].get("hostname") in WORKERS else None

        victim_ti = wait_for("a submission to run on a worker", submitting, 240, interval=0.5)
        time.sleep(4)  # the upload has reached the emulator, which holds the answer back
        victim = victim_ti["hostname"]
        os.killpg(dstack.groups[victim].pgid, signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        control.clear_faults()
    dstack.start(victim)

    _wait_deferred(dstack, run_id)
    _complete_batch(dstack, contacts)
    run = _wait_run(dstack, run_id)
    states = _states(_tis(dstack, run_id))
    assert run["state"] == "success", f"{states}{dstack.log_tail()}"
    assert states["submit"] == Counter({"success": 1}), states  # one chunk
    tries = _tries(dstack, run_id, "submit", victim_ti["map_index"])
    assert [t["try_number"] for t in tries] == [1, 2], tries
    assert tries[0]["state"] in {"failed", "up_for_retry"}, tries
    assert tries[0]["hostname"] == victim
    # The emulator saw the killed try's submissions and the retry's under the same per-call idempotency
    # keys: the retry got the first analyses back, not second ones.
    posts = [
        r
        for r in control.requests(method="POST", since=since)
        if r["path"].rstrip("/") == "/api/v1/analysis"
    ]
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in posts:
        by_key.setdefault(str(r.get("idempotency_key")), []).append(r)
    assert len(by_key) == SMALL_DAY, sorted(by_key)
    replayed = [sent for sent in by_key.values() if len(sent) >= 2]
    assert replayed, posts
    assert all(r["status"] is None or r["status"] < 300 for sent in replayed for r in sent[1:]), replayed
    assert set(_analyses_per_contact(dstack, contacts).values()) == {1}
    _check_report(dstack, day, SMALL_DAY)
    dstack.timings["worker_kill"] = time.monotonic() - started
    print(f"\nworker kill: {victim} killed; the retry succeeded {time.monotonic() - killed_at:.0f}s later")


def test_api_key_in_no_log_and_nowhere_in_the_database(dstack: DistributedStack) -> None:
    started = time.monotonic()
    # The connection row is there, encrypted with the Fernet key.
    rows = dstack.postgres.query(
        "select is_encrypted, password from connection where conn_id = 'callcov_default'"
    )
    assert len(rows) == 1, rows
    assert rows[0][0] is True
    assert rows[0][1]
    assert API_KEY not in str(rows[0][1])
    # The other scenarios have run, and left XComs and rendered fields to search.
    assert dstack.postgres.query("select count(*) from xcom")[0][0] > 0  # type: ignore[operator]
    assert dstack.postgres.query("select count(*) from rendered_task_instance_fields")[0][0] > 0  # type: ignore[operator]

    dump = dstack.postgres.dump(dstack.work / "airflow.sql")
    text = dump.read_text(encoding="utf-8", errors="replace")
    # The dump has the data: the connection row, and the calls the XComs carried.
    assert "callcov_default" in text
    assert "daily_00000" in text
    assert API_KEY not in text, "the API key is in the metadata database"

    files = [p for p in dstack.work.rglob("*") if p.is_file() and p.suffix in {".log", ".json", ".txt"}]
    files += [p for p in (dstack.home / "logs").rglob("*") if p.is_file()]
    assert any("wait_for_analyses" in str(p) for p in files), "no task log found"
    leaking = [str(p) for p in set(files) if API_KEY in p.read_text(encoding="utf-8", errors="replace")]
    assert not leaking, f"the API key is in {leaking}"
    # Nor in any component's environment.
    for name, group in dstack.groups.items():
        environ = Path(f"/proc/{group.process.pid}/environ")
        if environ.exists():
            assert API_KEY.encode() not in environ.read_bytes(), name
    dstack.timings["secrets"] = time.monotonic() - started
    print(f"\nsecrets: searched {len(files)} log files and a {len(text) // 1024} KiB pg_dump")
