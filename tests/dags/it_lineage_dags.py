"""A DAG for the OpenLineage test: submit one recording (from the run's conf), then list into a file."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from callcov_provider.operators.list_analyses import ListAnalysesOperator
from callcov_provider.operators.submit import SubmitAnalysisOperator

with DAG(
    "it_lineage", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False
) as dag:
    submit = SubmitAnalysisOperator(
        task_id="submit",
        agent_id="agent_lineage",
        contact_id="customer_lineage",
        audio_file="{{ dag_run.conf['audio_file'] }}",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.5,
        timeout=120,
    )
    listed = ListAnalysesOperator(
        task_id="list",
        agent_id="agent_lineage",
        fields=["id", "status"],
        output_uri="{{ dag_run.conf['output_uri'] }}",
    )
    submit >> listed
