"""
The daily batch, submitting by signed URL: for the secrets test of ``tests/reliability``.

The calls (non-secret: agent, contact, file name) arrive in the run's conf; each recording's URL is built
at render time from two Airflow variables, the storage base URL and the signature (a SAS-style query
string), which a deployment keeps in its secrets backend (the test sets them in the environment). The
rest is the daily batch: a deferrable batch sensor, the list of completed analyses and the scorecards.
Beside it, ``submit_batch`` sends the same recordings (fixed names, ``call_0.wav`` ...) in one batch task
whose calls are templated the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, TriggerRule, task

from callcov_provider.operators.batch import SubmitAnalysisBatchOperator
from callcov_provider.operators.list_analyses import ListAnalysesOperator
from callcov_provider.operators.submit import SubmitAnalysisOperator
from callcov_provider.sensors.analysis import AnalysisCompletedSensor

POLL_INTERVAL = float(os.environ.get("CALLCOV_POLL_INTERVAL", "30"))

#: A signed URL per call: storage base, the call's file, and the signature from the secrets backend.
SIGNED_AUDIO_URL = (
    "{{ var.value.callcov_audio_base }}/{{ task.metadata['source_file'] }}?{{ var.value.callcov_audio_sas }}"
)

#: The recordings ``submit_batch`` sends, by file name: the first four the test's storage serves.
BATCH_FILES = [f"call_{i}.wav" for i in range(4)]
SIGNED_BATCH_URL = "{{ var.value.callcov_audio_base }}/%s?{{ var.value.callcov_audio_sas }}"

with DAG(
    dag_id="reliability_secrets",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 0},
    tags=["callcov", "test"],
) as dag:

    @task
    def discover(dag_run: Any = None) -> list[dict[str, Any]]:
        """The calls of the run's conf, as submission arguments (without the URL, built at render time)."""
        return [
            {
                "agent_id": call["agent_id"],
                "contact_id": call["contact_id"],
                "call_direction": call.get("call_direction"),
                "call_timestamp": call.get("call_timestamp"),
                "metadata": {"source_file": call["file"]},
            }
            for call in dag_run.conf["calls"]
        ]

    discovered = discover()

    submitted = SubmitAnalysisOperator.partial(task_id="submit", audio_url=SIGNED_AUDIO_URL).expand_kwargs(
        discovered
    )

    wait = AnalysisCompletedSensor(
        task_id="wait_for_analyses",
        analysis_id=submitted.output,
        deferrable=True,
        fail_on_failed=False,
        poke_interval=POLL_INTERVAL,
        timeout=600,
        trigger_rule=TriggerRule.ALL_DONE,
    )

    completed = ListAnalysesOperator(
        task_id="list_completed",
        status_filter="completed",
        fetch_all=True,
        fields=["id", "status", "created", "call.agent_id", "call.contact_id", "results.coaching"],
    )

    @task
    def report(
        calls: list[dict[str, Any]],
        statuses: list[dict[str, Any]],
        analyses: list[dict[str, Any]],
        dag_run: Any = None,
    ) -> dict[str, str]:
        """The day's scorecards, as the daily batch writes them."""
        from callcov_provider.reporting import build_daily_report, format_table, write_report

        daily = build_daily_report(day="2026-01-01", calls=calls, statuses=statuses, analyses=analyses)
        paths = write_report(daily, Path(dag_run.conf["reports_root"]))
        print(format_table(daily))
        return paths

    wait >> completed

    SubmitAnalysisBatchOperator(
        task_id="submit_batch",
        calls=[
            {"agent_id": "agent_batch", "contact_id": f"batch_{i}", "audio_url": SIGNED_BATCH_URL % name}
            for i, name in enumerate(BATCH_FILES)
        ],
    )
    report(discovered, wait.output, completed.output)
