"""
What ``dag.test()`` shows of deferral, mapping, templating, extra links and XCom on each Airflow version.

The provider behaves the same everywhere; where Airflow itself works differently (how ``dag.test()`` runs
a trigger, where an extra link's URL is kept), these tests assert each version's own way instead of
skipping it.
"""

from __future__ import annotations

import asyncio
import csv
import filecmp
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callcov_provider.links import CallCovAnalysisLink
from callcov_provider.testing.audio import write_wav
from callcov_provider.testing.server import EmulatorHandle
from callcov_provider.triggers.analysis import AnalysisCompletedTrigger
from callcov_provider.version_compat import AIRFLOW_V_3_0_PLUS
from tests.integration.conftest import DAGS_DIR, load_dag, run_dag
from tests.integration.test_dag_runs import make_calls

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


@pytest.fixture
def trigger_runs(connected: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """
    The ids of every ``AnalysisCompletedTrigger`` run in this process.

    Analyses keep processing until a trigger starts, which then finishes them all: so a deferrable task
    always defers (however slowly ``dag.test()`` reaches it), and its trigger always has work to see.
    """
    runs: list[list[str]] = []
    original = AnalysisCompletedTrigger.run

    async def spy(self: AnalysisCompletedTrigger) -> AsyncIterator[Any]:
        runs.append(list(self.analysis_ids))
        await asyncio.to_thread(connected.control.complete_all)
        async for event in original(self):
            yield event

    monkeypatch.setattr(AnalysisCompletedTrigger, "run", spy)
    connected.control.set_processing(seconds=600)
    yield runs
    connected.control.set_processing(seconds=1.0)


def link_urls(result: Any, dag: Any, map_indexes: list[int]) -> list[str]:
    """
    The "CallCov Analysis" link of each mapped ``submit`` instance, the way each version's UI reads it.

    Airflow 3 resolves extra links in the task runner when the task ends and keeps each URL in XCom under
    the link's ``xcom_key``, which the API server reads. Airflow 2.11 keeps no such XCom: its webserver
    calls ``get_link(operator, ti_key=...)`` when the page is shown, which reads our own XCom back.
    """
    link = CallCovAnalysisLink()
    if AIRFLOW_V_3_0_PLUS:
        return [result.xcom("submit", key=link.xcom_key, map_index=i) for i in map_indexes]
    from airflow.models.taskinstancekey import TaskInstanceKey

    assert not any(key[2].startswith("_link_") for key in result.xcoms)
    operator = dag.get_task("submit")
    return [
        link.get_link(operator, ti_key=TaskInstanceKey(result.dag_id, "submit", result.run_id, 1, i))
        for i in map_indexes
    ]


def test_mapped_deferrable_batch_links_and_xcom(
    connected: EmulatorHandle, tmp_path: Path, trigger_runs: list[list[str]]
) -> None:
    calls = make_calls(tmp_path, 3)
    dag = load_dag("it_callcov_dags.py", "it_batch_deferrable_strict")
    result = run_dag(dag, run_conf={"calls": calls})
    assert result.state == "success", result.states
    # Mapping: one submit per call, each with its own id in XCom.
    ids = [result.xcom("submit", map_index=i) for i in range(3)]
    assert len(set(ids)) == 3
    # Deferral: dag.test() has no triggerer, so every version runs the trigger inline, in this process
    # (2.11: asyncio.run, and only while no triggerer job is alive; 3.0: asyncio.run; 3.3+: an in-process
    # trigger supervisor), then resumes the sensor with the trigger's event as a triggerer would.
    assert trigger_runs == [ids]
    assert [s["id"] for s in result.xcom("wait")] == ids
    # Extra links: the dashboard page of each mapped instance's own analysis.
    urls = link_urls(result, dag, [0, 1, 2])
    assert [url.rsplit("/", 1)[1] for url in urls] == ids


@pytest.mark.parametrize("mode", ["deferrable", "worker"])
def test_templated_single_submission_and_its_link(
    connected: EmulatorHandle, tmp_path: Path, trigger_runs: list[list[str]], mode: str
) -> None:
    if mode == "worker":  # no trigger to finish the analysis: let it finish by itself
        connected.control.set_processing(seconds=1.0)
    calls = make_calls(tmp_path, 1)
    dag = load_dag("it_callcov_dags.py", f"it_wait_{mode}")
    result = run_dag(dag, run_conf={"calls": calls})
    assert result.state == "success", result.states
    analysis_id = result.xcom("submit")
    # Templating: agent and contact came from the run's conf through Jinja.
    analysis = result.xcom("submit", key="analysis")
    assert analysis["call"]["contact_id"] == "customer_0"
    # Only the deferrable task defers; the worker wait polls in the task (durably on 3.3+).
    assert trigger_runs == ([[analysis_id]] if mode == "deferrable" else [])
    assert link_urls(result, dag, [-1]) == [result.xcom("submit", key="callcov_analysis_url")]


def test_example_daily_batch_dag_runs(
    connected: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The example daily batch DAG, end to end: its report task's outlet is an ``Asset`` on Airflow 3 and a
    ``Dataset`` on 2.11. ``dag.test()`` takes the run's date as ``logical_date`` on Airflow 3 and as
    ``execution_date`` on 2.11 (``run_dag`` translates); on 3.3+ the DAG must live in the DAGs folder,
    hence the copy there; on 3.0 the asset must be registered first (``run_dag`` does it).
    """
    example = DAGS_DIR.parents[1] / "example_dags" / "callcov_daily_batch.py"
    assert filecmp.cmp(example, DAGS_DIR / "callcov_daily_batch.py", shallow=False), (
        "tests/dags/callcov_daily_batch.py must be a copy of example_dags/callcov_daily_batch.py"
    )
    when = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    day = when.strftime("%Y-%m-%d")
    folder = tmp_path / "recordings" / day
    folder.mkdir(parents=True)
    rows = []
    for i in range(3):
        write_wav(folder / f"call_{i}.wav", 1.0, seed=i)
        rows.append({"file": f"call_{i}.wav", "agent_id": f"agent_{i % 2}", "contact_id": f"customer_{i}"})
    with (folder / "calls.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    monkeypatch.setenv("CALLCOV_POLL_INTERVAL", "0.5")
    dag = load_dag("callcov_daily_batch.py", "callcov_daily_batch")
    outlet = dag.get_task("report").outlets[0]
    assert type(outlet).__name__ == ("Asset" if AIRFLOW_V_3_0_PLUS else "Dataset")
    conf = {"root": str(tmp_path / "recordings"), "reports_root": str(tmp_path / "reports")}
    result = run_dag(dag, run_conf=conf, logical_date=when)
    assert result.state == "success", result.states
    assert [s["status"] for s in result.xcom("wait_for_analyses")] == ["completed"] * 3
    paths = result.xcom("report")
    assert Path(paths["csv"]).is_file()
    assert Path(paths["html"]).is_file()
