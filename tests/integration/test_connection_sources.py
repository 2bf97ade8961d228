"""
The deferred sensor finds its connection wherever Airflow keeps it: in an ``AIRFLOW_CONN_`` variable, in
the metadata database (``airflow connections add``) or in a secrets backend.

Each case is a real ``airflow dags test`` in a throwaway ``AIRFLOW_HOME``, the way a user tries a DAG
locally: it runs the deferred sensor's trigger in-process, where the asynchronous connection lookup of
Airflow 3.3 cannot reach the supervisor and so misses connections stored in the database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from callcov_provider.testing.audio import write_wav
from callcov_provider.testing.server import EmulatorHandle

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = Path(__file__).resolve().parent / "conn_dags" / "it_conn_sources.py"


def _airflow(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240) -> str:
    """Run the ``airflow`` command line of this interpreter with ``home`` as ``AIRFLOW_HOME``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    clean.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **(env or {}),
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0 or args[:2] == ("dags", "test"), output[-4000:]
    return output


@pytest.fixture(scope="module")
def migrated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``AIRFLOW_HOME`` with a migrated SQLite database and only the test DAG, shared by the cases."""
    home = tmp_path_factory.mktemp("airflow_home")
    (home / "dags").mkdir()
    shutil.copy(DAG_FILE, home / "dags")
    _airflow(home, "db", "migrate")
    return home


@pytest.fixture
def home(migrated_home: Path, tmp_path: Path) -> Path:
    """A copy of the migrated home per case, so a connection added by one case is unknown to the others."""
    copy = tmp_path / "home"
    shutil.copytree(migrated_home, copy)
    return copy


def _run(home: Path, tmp_path: Path, env: dict[str, str] | None = None) -> tuple[dict[str, str], str]:
    audio = write_wav(tmp_path / "call.wav", 1.0)
    result_file = tmp_path / "result.json"
    conf = json.dumps({"audio_file": str(audio), "result_file": str(result_file)})
    output = _airflow(home, "dags", "test", "it_conn_sources", "--conf", conf, env=env)
    assert result_file.exists(), f"the run did not finish its last task:\n{output[-6000:]}"
    return json.loads(result_file.read_text()), output


@pytest.fixture
def emulator_home(emulator: EmulatorHandle) -> EmulatorHandle:
    emulator.control.reset()
    return emulator


def test_connection_from_the_environment(home: Path, tmp_path: Path, emulator_home: EmulatorHandle) -> None:
    result, _ = _run(home, tmp_path, env={"AIRFLOW_CONN_CALLCOV_DEFAULT": emulator_home.connection_json()})
    assert result == {"status": "completed"}


def test_connection_from_the_database(home: Path, tmp_path: Path, emulator_home: EmulatorHandle) -> None:
    _airflow(home, "connections", "add", "callcov_default", "--conn-json", emulator_home.connection_json())
    result, output = _run(home, tmp_path)
    assert "isn't defined" not in output
    assert result == {"status": "completed"}
    # Airflow 3.0's `dags test` prints its own requests to mask the connection's secrets, the key included.
    leaked = [
        line for line in output.splitlines() if emulator_home.api_key in line and "MaskSecret(" not in line
    ]
    assert not leaked, leaked[:3]


def test_connection_from_a_secrets_backend(home: Path, tmp_path: Path, emulator_home: EmulatorHandle) -> None:
    connections = tmp_path / "connections.json"
    connections.write_text(json.dumps({"callcov_default": json.loads(emulator_home.connection_json())}))
    backend = {
        "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(connections)}),
    }
    result, _ = _run(home, tmp_path, env=backend)
    assert result == {"status": "completed"}
