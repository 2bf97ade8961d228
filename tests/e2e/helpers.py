"""
Helpers of the end-to-end test: start ``airflow standalone`` in its own process group, talk to its REST
API, and stop every process it started, by process group and process id (never by name).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import psutil
import requests

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
EXAMPLE_DAGS = REPO / "example_dags"
T = TypeVar("T")


def load_demo() -> ModuleType:
    """Import ``scripts/demo.py`` (not a package) to reuse its recording generator."""
    path = REPO / "scripts" / "demo.py"
    spec = importlib.util.spec_from_file_location("_callcov_demo_script", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0, on_timeout: str = ""
) -> T:
    """Call ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
        except (requests.RequestException, OSError) as err:
            value, last_error = None, err
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{on_timeout}")
        time.sleep(interval)


def manifest_counts(day_dir: Path) -> dict[str, int]:
    """How many rows the day's ``calls.csv`` has, and how many name an existing ``.wav`` file."""
    with (day_dir / "calls.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    usable = [r for r in rows if r["file"].endswith(".wav") and (day_dir / r["file"]).is_file()]
    return {"rows": len(rows), "usable": len(usable), "skipped": len(rows) - len(usable)}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def tail(path: Path, chars: int = 4000) -> str:
    """The end of a log file, for assertion messages."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError as err:
        return f"<cannot read {path}: {err}>"


class ProcessGroup:
    """
    A command started in its own session (so its own process group), stopped by group.

    ``stop()`` sends SIGTERM to the group, waits, then SIGKILLs the group; it also ends, by process id,
    any descendant seen while the command ran that left the group (a child that called ``setsid``).
    """

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.process.pid  # start_new_session: the leader's pid is the group id
        self._seen: dict[int, float] = {}  # pid -> create_time of every descendant observed
        #: The processes still alive when the grace period ended (killed with SIGKILL).
        self.killed: list[str] = []

    def remember_descendants(self) -> None:
        """Note the current descendants so ``stop()`` can end any of them that left the group."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self._seen[child.pid] = child.create_time()

    def members(self) -> list[psutil.Process]:
        """Live (non-zombie) processes of the group, and remembered descendants still running."""
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["pid"]):
            # A process may end between the listing and getpgid (ProcessLookupError, not a psutil error).
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(proc.pid) == self.pgid and proc.status() != psutil.STATUS_ZOMBIE:
                    found[proc.pid] = proc
        for pid, created in self._seen.items():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    found[pid] = proc
        return list(found.values())

    @staticmethod
    def _describe(proc: psutil.Process) -> str:
        try:
            return f"{proc.pid} {' '.join(proc.cmdline())[:160]}"
        except psutil.Error:
            return str(proc.pid)

    def _signal_all(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)
        for proc in self.members():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signum)

    def stop(self, grace: float = 20.0) -> list[str]:
        """End the group; return a description of any process still alive afterwards (none expected)."""
        self.remember_descendants()
        try:
            if self.members() or self.process.poll() is None:
                self._signal_all(signal.SIGTERM)
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and (self.process.poll() is None or self.members()):
                    time.sleep(0.25)
                if self.process.poll() is None or self.members():
                    self.killed = [self._describe(proc) for proc in self.members()]
                    self._signal_all(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            # SIGKILLed processes vanish once reaped; give init a moment.
            deadline = time.monotonic() + 10
            while self.members() and time.monotonic() < deadline:
                time.sleep(0.25)
            return [self._describe(proc) for proc in self.members()]
        finally:
            self._log.close()


class AirflowApi:
    """A small client of the API server's REST API with a token from the simple auth manager."""

    def __init__(self, root_url: str) -> None:
        self.root_url = root_url.rstrip("/")
        self.session = requests.Session()

    def login(self) -> None:
        """With ``simple_auth_manager_all_admins`` a GET on /auth/token gives an admin token."""
        response = self.session.get(f"{self.root_url}/auth/token", timeout=30)
        response.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, f"{self.root_url}{path}", **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)


def airflow_environment(
    home: Path, dags_folder: Path, api_port: int, extra: dict[str, str]
) -> dict[str, str]:
    """
    The environment of ``airflow standalone``: the inherited one minus any Airflow setting (the test
    session's own AIRFLOW_HOME among them) and coverage hooks, plus a temporary home with SQLite and
    LocalExecutor, fast loops, and the venv's bin first on PATH (standalone runs ``airflow`` from PATH).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "COV_CORE_", "COVERAGE_", "CALLCOV_", "PYTEST_"))
    }
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(VENV_BIN.parent),
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


def copy_example_dags(target: Path) -> Path:
    """Copy the two example DAG files (only them) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("callcov_daily_batch.py", "callcov_weekly_trend.py"):
        shutil.copy2(EXAMPLE_DAGS / name, target / name)
    return target
