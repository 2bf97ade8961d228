"""
Test-wide setup: every test session gets its own throwaway AIRFLOW_HOME (SQLite), set before Airflow is
imported, so the suite never touches a user's Airflow installation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="callcov-tests-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "tests" / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata database in the session's AIRFLOW_HOME (for ``dag.test()``)."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return Path(_AIRFLOW_HOME)


@pytest.fixture(autouse=True)
def _fresh_quota_pacers() -> None:
    """Each test starts with no learnt quota: pacers are per process and would carry waits across tests."""
    from callcov_provider.hooks.pacing import forget_pacers

    forget_pacers()
