"""
Row 7: a day of calls through real Airflow processes at the API's submission quota.

Ours: ``callcov_daily_batch`` (``SubmitAnalysisBatchOperator`` mapped over chunks of 250 calls, paced by
the hook) over a day of 2,000 calls, with the emulator's quota scaled to 600 submissions and 1,200
requests a minute. Baseline: the same day submitted the way the provider offered before, one mapped
``SubmitAnalysisOperator`` task instance per call, at 1,000 calls (Airflow maps at most 1,024). Both run
on ``airflow standalone`` (scheduler, dag-processor, triggerer, api-server; LocalExecutor; Airflow's
default parallelism 32 and 16 active tasks per DAG) against the emulator in its own process.

Figures: wall time of the run against the quota-bound ideal (calls / quota), 429 answers to
submissions, analyses created per call, task instances, and the CPU time of all Airflow processes per
call. A last scenario runs a 60-call day at the documentation's default quota of 20 submissions a
minute, where what counts is the rate achieved against the quota.
"""

from __future__ import annotations

import collections
import csv
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import Figure, RowResult, fmt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: The scaled quota of the main scenario, per minute.
SUBMISSIONS_PER_MINUTE = 600
REQUESTS_PER_MINUTE = 1200
#: The documentation's default submission quota, for the small-day scenario.
DEFAULT_SUBMISSIONS_PER_MINUTE = 20
API_KEY = "sk_test_bench_volume_0123456789"

#: The per-call DAG of the baseline: what the daily DAG did before the batch operator.
PER_CALL_DAG = textwrap.dedent(
    '''
    """One mapped SubmitAnalysisOperator per call (the baseline of benchmark row 7)."""
    from __future__ import annotations

    import os
    from pathlib import Path

    import pendulum
    from airflow.providers.common.compat.sdk import DAG, task

    from callcov_provider.operators.submit import SubmitAnalysisOperator
    from callcov_provider.sensors.analysis import AnalysisCompletedSensor

    with DAG("bench_per_call", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):

        @task
        def discover(ds: str | None = None) -> list[dict]:
            from callcov_provider.reporting.manifest import read_manifest

            calls, _ = read_manifest(Path(os.environ["CALLCOV_RECORDINGS_ROOT"]) / ds)
            return calls

        submitted = SubmitAnalysisOperator.partial(task_id="submit", retries=3).expand_kwargs(discover())
        AnalysisCompletedSensor(
            task_id="wait", analysis_id=submitted.output, deferrable=True, fail_on_failed=False,
            poke_interval=float(os.environ.get("CALLCOV_POLL_INTERVAL", "5")), timeout=3600,
            trigger_rule="none_skipped",
        )
    '''
)


@dataclass
class DayRun:
    """What one DAG run over a day cost."""

    calls: int
    quota: int
    wall: float
    submit_phase: float
    submissions: int
    rate_limited: int
    analyses: int
    task_instances: int
    cpu: float
    state: str
    #: Seconds from the first start to the last end of each task's instances, in task order.
    phases: dict[str, float]

    @property
    def ideal(self) -> float:
        return self.calls / self.quota * 60.0


def _write_day(root: Path, day: str, count: int) -> None:
    from callcov_provider.testing.audio import write_wav

    folder = root / day
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "calls.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "agent_id", "contact_id", "call_direction", "call_timestamp"])
        for index in range(count):
            name = f"call_{index:04d}.wav"
            write_wav(folder / name, 0.05, seed=index + 1)
            stamp = f"{day}T{8 + (index // 60) % 12:02d}:{index % 60:02d}:00Z"
            writer.writerow([name, f"agent_{index % 40:02d}", f"customer_{index:05d}", "inbound", stamp])


def _airflow_cpu(group: Any) -> float:
    """CPU seconds of every process of the Airflow group, their reaped children included."""
    import psutil

    total = 0.0
    for proc in group.members():
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _run_day(dag_id: str, calls: int, quota: int, requests_quota: int, work: Path) -> DayRun:
    """Start the emulator and ``airflow standalone``, run ``dag_id`` over a day of ``calls``, measure."""
    from callcov_provider.testing.server import run_emulator
    from tests.e2e.helpers import (
        VENV_BIN,
        AirflowApi,
        ProcessGroup,
        airflow_environment,
        copy_example_dags,
        free_port,
        wait_for,
    )

    day = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d")
    recordings, reports, home = work / "recordings", work / "reports", work / "airflow"
    home.mkdir(parents=True)
    _write_day(recordings, day, calls)
    dags = copy_example_dags(work / "dags")
    (dags / "bench_per_call.py").write_text(PER_CALL_DAG)
    api_port = free_port()
    with run_emulator(
        api_keys=(API_KEY,),
        processing_seconds="1-3",
        in_subprocess=True,
        startup_timeout=60,
        submit_rate_limit=quota,
        rate_limit=requests_quota,
        # 429s exactly as the documentation shows them: no Retry-After, the wait only in the message.
        quota_mode="documented",
    ) as emulator:
        env = airflow_environment(
            home,
            dags,
            api_port,
            {
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # Airflow's defaults, which bound what a DAG can do.
                "AIRFLOW__CORE__PARALLELISM": "32",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "16",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                "AIRFLOW_CONN_CALLCOV_DEFAULT": emulator.connection_json(),
                "CALLCOV_RECORDINGS_ROOT": str(recordings),
                "CALLCOV_REPORTS_ROOT": str(reports),
                "CALLCOV_POLL_INTERVAL": "5",
            },
        )
        airflow = ProcessGroup([str(VENV_BIN / "airflow"), "standalone"], env, work / "standalone.log", work)
        try:
            api = AirflowApi(f"http://127.0.0.1:{api_port}")

            def ready() -> bool:
                # Connection errors while the API server starts are retried by wait_for.
                api.login()
                return api.get(f"/api/v2/dags/{dag_id}").status_code == 200

            wait_for(f"{dag_id} to be parsed", ready, 240, interval=2)
            api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
            emulator.control.reset()
            cpu_before = _airflow_cpu(airflow)
            response = api.post(
                f"/api/v2/dags/{dag_id}/dagRuns",
                json={
                    "logical_date": f"{day}T00:00:00Z",
                    "conf": {"root": str(recordings), "reports_root": str(reports)},
                },
            )
            response.raise_for_status()
            run_id = response.json()["dag_run_id"]

            def finished() -> dict[str, Any] | None:
                airflow.remember_descendants()
                run = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
                return run if run.get("state") in ("success", "failed") else None

            run = wait_for(f"{dag_id} to finish", finished, 3600, interval=2)
            cpu = _airflow_cpu(airflow) - cpu_before
            every_ti = _task_instances(api, dag_id, run_id)
            task_instances = len(every_ti)
            phases = _phases(every_ti)
            unsuccessful = sorted({ti["task_id"] for ti in every_ti if ti.get("state") != "success"})
            log = emulator.control.requests(method="POST")
            analyses = len(emulator.control.analyses())
        finally:
            airflow.stop()
    start = datetime.fromisoformat(run["start_date"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(run["end_date"].replace("Z", "+00:00"))
    accepted = [entry["time"] for entry in log if entry["status"] in (200, 201)]
    statuses = collections.Counter(entry["status"] for entry in log)
    return DayRun(
        calls=calls,
        quota=quota,
        wall=(end - start).total_seconds(),
        submit_phase=(max(accepted) - min(entry["time"] for entry in log)) if accepted else float("nan"),
        submissions=len(log),
        rate_limited=statuses[429],
        analyses=analyses,
        task_instances=task_instances,
        cpu=cpu,
        # A run whose leaf succeeded may still have lost a task on the way: say which.
        state=str(run["state"]) + (f" (not successful: {', '.join(unsuccessful)})" if unsuccessful else ""),
        phases=phases,
    )


def _task_instances(api: Any, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every task instance of the run, page by page (the API answers at most 100 at a time)."""
    found: list[dict[str, Any]] = []
    while True:
        page = api.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
            params={"limit": 100, "offset": len(found)},
        ).json()
        found.extend(page["task_instances"])
        if not page["task_instances"] or len(found) >= page["total_entries"]:
            return found


def _phases(task_instances: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds each task took, from its first instance's start to its last instance's end."""
    spans: dict[str, list[datetime]] = {}
    for ti in task_instances:
        if ti.get("start_date") and ti.get("end_date"):
            start = datetime.fromisoformat(ti["start_date"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(ti["end_date"].replace("Z", "+00:00"))
            span = spans.setdefault(ti["task_id"], [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    return {task: (end - start).total_seconds() for task, (start, end) in ordered}


def run(quick: bool, repeats: int) -> RowResult:
    batch_calls, per_call_calls, small_calls = (200, 100, 25) if quick else (2000, 1000, 60)
    runs: dict[str, DayRun] = {}
    with tempfile.TemporaryDirectory(prefix="callcov-bench-volume-") as tmp:
        scenarios = {
            "batch": ("callcov_daily_batch", batch_calls, SUBMISSIONS_PER_MINUTE, REQUESTS_PER_MINUTE),
            "per_call": ("bench_per_call", per_call_calls, SUBMISSIONS_PER_MINUTE, REQUESTS_PER_MINUTE),
            "default_quota": ("callcov_daily_batch", small_calls, DEFAULT_SUBMISSIONS_PER_MINUTE, 100),
        }
        for name, (dag_id, calls, quota, requests_quota) in scenarios.items():
            started = time.monotonic()
            runs[name] = _run_day(dag_id, calls, quota, requests_quota, Path(tmp) / name)
            print(f"   {name}: {runs[name]} in {time.monotonic() - started:.0f}s", flush=True)
    return summarise(runs)


def summarise(runs: dict[str, DayRun], note: str = "") -> RowResult:
    """The row's figures and details from the three runs (``batch``, ``per_call``, ``default_quota``)."""
    batch, per_call, small = runs["batch"], runs["per_call"], runs["default_quota"]
    bound = 1.15 * batch.ideal + 30.0
    # The last accepted submission uses one quota interval too: n calls at the quota take n intervals.
    small_rate = 60.0 * small.calls / (small.submit_phase + 60.0 / small.quota)
    figures = [
        Figure(
            "7",
            f"wall time, {batch.calls} calls at {batch.quota}/min (ideal {batch.ideal:.0f} s)",
            "s",
            [batch.wall],
            [per_call.wall],
            f"<= 1.15 x ideal + 30 s = {bound:.0f} s",
            batch.wall <= bound,
        ),
        Figure(
            "7",
            "429s per submission",
            "%",
            [100.0 * batch.rate_limited / max(batch.submissions, 1)],
            [100.0 * per_call.rate_limited / max(per_call.submissions, 1)],
            "<= 2%",
            batch.rate_limited <= 0.02 * batch.calls,
        ),
        Figure(
            "7",
            "analyses per call",
            "analyses",
            [batch.analyses / batch.calls],
            [per_call.analyses / per_call.calls],
            "exactly 1",
            batch.analyses == batch.calls,
        ),
        Figure(
            "7",
            "task instances per call",
            "TIs",
            [batch.task_instances / batch.calls],
            [per_call.task_instances / per_call.calls],
        ),
        Figure(
            "7",
            "Airflow CPU per call",
            "ms",
            [1000.0 * batch.cpu / batch.calls],
            [1000.0 * per_call.cpu / per_call.calls],
        ),
        Figure(
            "7",
            f"submission rate, {small.calls} calls at {small.quota}/min",
            "per min",
            [small_rate],
            [],
            f">= 0.9 x {small.quota}",
            small_rate >= 0.9 * small.quota and small.analyses == small.calls,
        ),
    ]
    details = [
        "| run | calls | quota/min | state | wall s | ideal s | submission phase s | submissions | 429s "
        "| analyses | task instances | Airflow CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {name} | {r.calls} | {r.quota} | {r.state} | {fmt(r.wall)} | {fmt(r.ideal)} | "
            f"{fmt(r.submit_phase)} | {r.submissions} | {r.rate_limited} | {r.analyses} | {r.task_instances} "
            f"| {fmt(r.cpu)} |"
            for name, r in runs.items()
        ),
        "",
        *(
            f"- {name}: " + ", ".join(f"{task} {fmt(seconds)} s" for task, seconds in r.phases.items())
            for name, r in runs.items()
        ),
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. The baseline column of every figure "
        "but the last is the per-call DAG at "
        f"{per_call.calls} calls (the most one mapped task can do); the emulator answered 429s as the "
        "documentation shows them (no Retry-After, the wait only in the message).",
        *([note] if note else []),
    ]
    return RowResult("7", "a day of calls through real Airflow processes at the quota", figures, details)
