"""
Daily CallCov batch: analyse the day's call recordings and publish per-agent scorecards.

The day's recordings sit in `<root>/<YYYY-MM-DD>/` with a `calls.csv` manifest (columns `file`,
`agent_id`, `contact_id`, `call_direction`, `call_timestamp`). The DAG

1. discovers the calls, skipping (and logging) rows that are malformed or name a missing or unsupported
   file, and splits them into chunks of `CALLCOV_CHUNK_SIZE` calls (250 by default); an empty day ends
   the run as skipped;
2. submits each chunk with one `SubmitAnalysisBatchOperator` task instance, mapped over the
   chunks (Airflow maps at most 1,024 task instances, so 250-call chunks cover 256,000 calls a day);
   each paces itself to the API's quota, and at most two chunks of a run send at once (put them in a
   pool, `CALLCOV_POOL`, to share the quota with other DAGs); a call the API refuses is reported in
   the chunk's result and the day goes on;
3. waits for the whole batch with one deferrable `AnalysisCompletedSensor` (failed analyses are
   reported, not fatal);
4. lists the completed analyses with `ListAnalysesOperator`, only the fields the report needs;
5. writes per-agent scorecards as CSV and a self-contained HTML page, and updates an asset so that
   `callcov_weekly_trend` runs when a day's report is ready.

The report is `<reports_root>/<YYYY-MM-DD>/report.html` (and `scorecards.csv`); it counts every
call of the day, those the API refused included, and links to the weekly trend. The reporting
code is `callcov_provider.reporting`; what each number means is stated on the page.

Point it at the real API by setting the `callcov_default` connection's host and key; `make demo` runs
it against the embedded emulator instead. The schedule has data intervals: the run for a day starts
when the day is over, and `ds` is that day.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, AirflowSkipException, Param, TriggerRule, task
from airflow.timetables.interval import CronDataIntervalTimetable

from callcov_provider.operators.batch import SubmitAnalysisBatchOperator
from callcov_provider.operators.list_analyses import ListAnalysesOperator
from callcov_provider.reporting.assets import DAILY_REPORT_ASSET, default_reports_root
from callcov_provider.sensors.analysis import AnalysisCompletedSensor

#: Where the demo writes its recordings; set CALLCOV_RECORDINGS_ROOT or the ``root`` param for yours.
DEFAULT_RECORDINGS_ROOT = os.environ.get(
    "CALLCOV_RECORDINGS_ROOT", str(Path(__file__).resolve().parents[1] / ".demo" / "recordings")
)

#: Calls per submitting task instance: 1,024 chunks (Airflow's mapping limit) of 250 is 256,000 calls.
CHUNK_SIZE = int(os.environ.get("CALLCOV_CHUNK_SIZE", "250"))

#: The Airflow pool the chunks take a slot of; create one (``airflow pools set callcov 1 "CallCov quota"``)
#: so every DAG that talks to the same account shares the quota instead of competing for it.
POOL = os.environ.get("CALLCOV_POOL", "default_pool")

#: Seconds between status checks of the batch (the demo polls faster than a real day needs).
POLL_INTERVAL = float(os.environ.get("CALLCOV_POLL_INTERVAL", "30"))

#: The fields of an analysis the scorecards read; everything else stays out of XCom.
REPORT_FIELDS = [
    "id",
    "status",
    "created",
    "call.agent_id",
    "call.contact_id",
    "results.compliance",
    "results.quality.greeting",
    "results.quality.sentiment_analysis",
    "results.coaching",
    "metadata.error_message",
]

with DAG(
    dag_id="callcov_daily_batch",
    description="Analyse the day's call recordings with CallCov and publish per-agent scorecards",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "callcov_conn_id": "callcov_default"},
    params={
        "root": Param(DEFAULT_RECORDINGS_ROOT, type="string", description="Folder of per-day recordings"),
        "reports_root": Param(
            str(default_reports_root()), type="string", description="Where the reports are written"
        ),
    },
    tags=["callcov", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def discover(params: dict[str, Any], ds: str, ti: Any = None) -> list[list[dict[str, Any]]]:
        """
        Read the day's manifest: return the valid calls in chunks of `CHUNK_SIZE`; the skipped rows go
        to the XCom "skipped".
        """
        from callcov_provider.reporting.manifest import read_manifest

        day_dir = Path(params["root"]) / ds
        calls, skipped = read_manifest(day_dir)
        for problem in skipped:
            print(f"Skipping manifest row {problem['row']}: {problem['reason']}")
        if not calls:
            raise AirflowSkipException(f"No calls to analyse in {day_dir}")
        ti.xcom_push(key="skipped", value=skipped)
        chunks = [calls[start : start + CHUNK_SIZE] for start in range(0, len(calls), CHUNK_SIZE)]
        print(f"{len(calls)} calls to analyse in {len(chunks)} chunk(s), {len(skipped)} rows skipped")
        return chunks

    discovered = discover()

    submitted = SubmitAnalysisBatchOperator.partial(
        task_id="submit",
        pool=POOL,
        # Chunks of one run share the account's quota: two at a time keep it busy without a crowd of 429s.
        max_active_tis_per_dagrun=2,
        retries=3,
        retry_delay=timedelta(seconds=20),
    ).expand(calls=discovered)

    wait = AnalysisCompletedSensor(
        task_id="wait_for_analyses",
        analysis_id=submitted.output,
        deferrable=True,
        fail_on_failed=False,
        poke_interval=POLL_INTERVAL,
        timeout=6 * 60 * 60,
        # The chunks' outcomes, as they are: refused calls have no analysis and are not waited for.
        # NONE_SKIPPED (not ALL_DONE): wait once every chunk is done, whatever its outcome (a chunk that
        # failed after its retries leaves its accepted calls to wait for), but skip when the chunks were
        # skipped (an empty day), so that the whole run ends as skipped.
        trigger_rule=TriggerRule.NONE_SKIPPED,
    )

    completed = ListAnalysesOperator(
        task_id="list_completed",
        status_filter="completed",
        fetch_all=True,
        # Analyses of a day's calls are created after the day ends: no need to page further back.
        created_after="{{ data_interval_end }}",
        fields=REPORT_FIELDS,
    )

    @task(outlets=[DAILY_REPORT_ASSET])
    def report(
        chunks: list[list[dict[str, Any]]],
        statuses: list[dict[str, Any]],
        analyses: list[dict[str, Any]],
        params: dict[str, Any],
        ds: str,
        ti: Any = None,
    ) -> dict[str, str]:
        """Write the day's per-agent scorecards (CSV and HTML) and log them as a table."""
        from callcov_provider.reporting import build_daily_report, format_table, write_report

        skipped = ti.xcom_pull(task_ids="discover", key="skipped") or []
        daily = build_daily_report(
            day=ds,
            calls=[call for chunk in chunks for call in chunk],
            statuses=statuses,
            analyses=analyses,
            skipped=skipped,
        )
        paths = write_report(daily, Path(params["reports_root"]) / ds)
        print(format_table(daily))
        print(f"Report written to {paths['html']}")
        return paths

    wait >> completed
    report(discovered, wait.output, completed.output)
