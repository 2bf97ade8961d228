"""A DAG for the shared-poll-loop e2e test: deferrable submissions mapped over the calls in the run's conf."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from callcov_provider.operators.submit import SubmitAnalysisOperator

with DAG(
    "callcov_shared_wait", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False
) as dag:

    @task
    def calls(dag_run: Any = None) -> list[dict[str, Any]]:
        return list(dag_run.conf["calls"])

    SubmitAnalysisOperator.partial(
        task_id="submit",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=2,
        timeout=900,
        callcov_conn_id="callcov_shared",
    ).expand_kwargs(calls())
