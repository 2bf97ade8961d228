"""
DAGs the reliability tests run on real Airflow processes (scheduler, dag-processor, triggerer, API
server, LocalExecutor): a worker-side durable wait to crash, a batch submission to crash half way, and
a deferred batch sensor whose triggerer is restarted. Inputs arrive in the run's conf.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from callcov_provider.operators.batch import SubmitAnalysisBatchOperator
from callcov_provider.operators.submit import SubmitAnalysisOperator
from callcov_provider.sensors.analysis import AnalysisCompletedSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG("reliability_worker_crash", schedule=None, start_date=START, catchup=False) as worker_crash:
    SubmitAnalysisOperator(
        task_id="submit_and_wait",
        agent_id="agent_crash",
        contact_id="customer_crash",
        audio_file="{{ dag_run.conf['audio_file'] }}",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.5,
        timeout=600,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )


@task
def calls_from_conf(dag_run: Any = None) -> list[dict[str, Any]]:
    """The calls to submit, from the run's conf."""
    return list(dag_run.conf["calls"])


with DAG("reliability_triggerer_restart", schedule=None, start_date=START, catchup=False) as restart:
    submitted = SubmitAnalysisOperator.partial(task_id="submit").expand_kwargs(calls_from_conf())
    AnalysisCompletedSensor(
        task_id="wait_for_analyses",
        analysis_id=submitted.output,
        deferrable=True,
        poke_interval=0.5,
        timeout=600,
    )


with DAG("reliability_batch_crash", schedule=None, start_date=START, catchup=False) as batch_crash:
    # A batch slow enough to be killed half way; progress reaches the task_state_store every second.
    SubmitAnalysisBatchOperator(
        task_id="submit",
        calls=calls_from_conf(),
        max_in_flight=2,
        progress_interval=1.0,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
