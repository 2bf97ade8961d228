"""Fixtures for running DAGs with ``dag.test()`` against the emulator over loopback."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callcov_provider.testing.server import EmulatorHandle, run_emulator

DAGS_DIR = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    """An emulator whose analyses take a second to finish."""
    with run_emulator(processing_seconds=1.0) as emu:
        yield emu


@pytest.fixture
def connected(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> EmulatorHandle:
    """The emulator, reset, with ``callcov_default`` pointing at it."""
    emulator.control.reset()
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emulator.connection_json())
    return emulator


def load_dag(file_name: str, dag_id: str) -> Any:
    """Import a DAG file of ``tests/dags`` and return one of its DAGs."""
    path = DAGS_DIR / file_name
    spec = importlib.util.spec_from_file_location(f"_it_dags_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for value in vars(module).values():
        if getattr(value, "dag_id", None) == dag_id and hasattr(value, "test"):
            return value
    raise LookupError(f"{file_name} defines no DAG {dag_id!r}")


def _decode(value: Any) -> Any:
    """XCom rows hold JSON text on some versions and decoded values on others."""
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _xcom_rows_and_decoder() -> tuple[Any, Any]:
    """
    The XCom table's model and how to read a row's value, which differ by Airflow version.

    Airflow 3 keeps XComs in ``XComModel`` as JSON (text or decoded, by version); Airflow 2.11 keeps them
    in ``XCom`` (``BaseXCom``) as serialised bytes, which the model's load hook (``init_on_load``, through
    ``BaseXCom.orm_deserialize_value``) has already turned back into the value.
    """
    from callcov_provider.version_compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        from airflow.models.xcom import XComModel

        return XComModel, lambda row: _decode(row.value)
    from airflow.models.xcom import XCom

    return XCom, lambda row: row.value


class RunResult:
    """Task states and XComs of one finished ``dag.test()`` run."""

    def __init__(self, dag_run: Any) -> None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        xcom_model, read_value = _xcom_rows_and_decoder()
        self.dag_id: str = dag_run.dag_id
        self.run_id: str = dag_run.run_id
        self.state = str(dag_run.state)
        self.states: dict[tuple[str, int], str] = {}
        self.next_methods: dict[tuple[str, int], Any] = {}
        self.xcoms: dict[tuple[str, int, str], Any] = {}
        with create_session() as session:
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            ):
                self.states[(ti.task_id, ti.map_index)] = str(ti.state)
            for row in session.query(xcom_model).filter(
                xcom_model.dag_id == dag_run.dag_id, xcom_model.run_id == dag_run.run_id
            ):
                self.xcoms[(row.task_id, row.map_index, row.key)] = read_value(row)

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        return self.xcoms[(task_id, map_index, key)]

    def batch_outcomes(self, task_id: str = "submit") -> list[dict[str, Any]]:
        """The outcomes of a batch operator mapped over chunks, chunk after chunk, in input order."""
        indexes = sorted(i for (task, i, key) in self.xcoms if task == task_id and key == "return_value")
        return [outcome for i in indexes for outcome in self.xcom(task_id, map_index=i)]


def activate_outlet_assets(dag: Any) -> None:
    """
    Register the DAG's outlet assets as active, as the DAG processor does when it parses the DAG file.

    Airflow 3.0's ``dag.test()`` does not (2.11 has no such check; 3.3 registers them itself), so there a
    task with an asset outlet fails with ``AirflowInactiveAssetInInletOrOutletException``.
    """
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        for task in dag.tasks:
            for asset in task.outlets:
                model = session.query(AssetModel).filter_by(name=asset.name, uri=asset.uri).one_or_none()
                if model is None:
                    model = AssetModel.from_public(asset)
                    session.add(model)
                    session.flush()
                if session.query(AssetActive).filter_by(name=asset.name, uri=asset.uri).one_or_none() is None:
                    session.add(AssetActive.for_asset(model))


def run_dag(dag: Any, **kwargs: Any) -> RunResult:
    """
    Run ``dag.test()`` and collect what it left in the metadata database.

    The same call on every supported Airflow: the run's date is ``logical_date`` (Airflow 2 calls it
    ``execution_date``), a run of the same date may already exist, and on 3.0 the DAG's outlet assets
    are registered first.
    """
    from callcov_provider.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS

    if not AIRFLOW_V_3_0_PLUS:
        if "logical_date" in kwargs:
            kwargs["execution_date"] = kwargs.pop("logical_date")
        # 2.11's dag.test() deletes an earlier run of the same date; the delete cascades to the run's note,
        # whose foreign key names FAB's user table, which SQLAlchemy must know: its models define it.
        importlib.import_module("airflow.providers.fab.auth_manager.models")
    if AIRFLOW_V_3_0_PLUS and not AIRFLOW_V_3_1_PLUS:
        activate_outlet_assets(dag)
    return RunResult(dag.test(**kwargs))
