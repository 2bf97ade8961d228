"""
DAGs for the integration tests (run with ``dag.test()`` against the emulator). Their inputs arrive in
the run's conf, so one file serves every test: ``{"calls": [{agent_id, contact_id, audio_file}, ...]}``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from callcov_provider.operators.batch import SubmitAnalysisBatchOperator
from callcov_provider.operators.list_analyses import ListAnalysesOperator
from callcov_provider.operators.submit import SubmitAnalysisOperator
from callcov_provider.sensors.analysis import AnalysisCompletedSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@task
def calls_from_conf(dag_run: Any = None) -> list[dict[str, Any]]:
    """The calls to submit, from the run's conf."""
    return list(dag_run.conf["calls"])


for mode in ("deferrable", "poke"):
    for strict in (True, False):
        dag_id = f"it_batch_{mode}{'_strict' if strict else ''}"
        with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
            submitted = SubmitAnalysisOperator.partial(task_id="submit").expand_kwargs(calls_from_conf())
            wait = AnalysisCompletedSensor(
                task_id="wait",
                analysis_id=submitted.output,
                deferrable=(mode == "deferrable"),
                mode="poke",
                poke_interval=0.5,
                timeout=120,
                fail_on_failed=strict,
            )
            listed = ListAnalysesOperator(
                task_id="list",
                status_filter="completed",
                fetch_all=True,
                fields=["id", "status", "call.agent_id", "results.coaching.customer_effort_score"],
            )
            wait >> listed
        globals()[dag_id] = dag

for deferrable in (True, False):
    dag_id = f"it_wait_{'deferrable' if deferrable else 'worker'}"
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        SubmitAnalysisOperator(
            task_id="submit",
            agent_id="{{ dag_run.conf['calls'][0]['agent_id'] }}",
            contact_id="{{ dag_run.conf['calls'][0]['contact_id'] }}",
            audio_file="{{ dag_run.conf['calls'][0]['audio_file'] }}",
            wait_for_completion=True,
            deferrable=deferrable,
            poll_interval=0.5,
            timeout=120,
        )
    globals()[dag_id] = dag

with DAG("it_batch_retry", schedule=None, start_date=START, catchup=False) as dag:
    # One batch task that may fail half way (a fault the test injects) and is retried at once.
    SubmitAnalysisBatchOperator(
        task_id="submit", calls=calls_from_conf(), retries=1, retry_delay=timedelta(0)
    )
    globals()["it_batch_retry"] = dag
