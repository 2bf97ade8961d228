"""
A deferrable sensor run by ``airflow dags test`` in a throwaway ``AIRFLOW_HOME`` (see
``tests/integration/test_connection_sources.py``): submit one call, wait for it on the trigger, and write
the result where the run's conf says, so the test can check the outcome the same way on every version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from callcov_provider.operators.submit import SubmitAnalysisOperator
from callcov_provider.sensors.analysis import AnalysisCompletedSensor

with DAG("it_conn_sources", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    submitted = SubmitAnalysisOperator(
        task_id="submit",
        agent_id="agent_1",
        contact_id="customer_1",
        audio_file="{{ dag_run.conf['audio_file'] }}",
    )
    waited = AnalysisCompletedSensor(
        task_id="wait", analysis_id=submitted.output, deferrable=True, poke_interval=0.5, timeout=60
    )

    @task
    def record(result: Any, dag_run: Any = None) -> None:
        Path(dag_run.conf["result_file"]).write_text(json.dumps({"status": result["status"]}))

    record(waited.output)
