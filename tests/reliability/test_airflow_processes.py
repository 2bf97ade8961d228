"""
2. Worker crash and 3. triggerer restart, on real Airflow processes.

One deployment per module: ``airflow db migrate``, then scheduler (LocalExecutor), dag-processor,
triggerer and API server, each in its own process group, in a private ``AIRFLOW_HOME`` with only
``tests/dags/reliability_e2e.py`` as its DAGs folder. Every process is ended by its process group in the
fixture's finaliser. Runs are triggered and watched through the REST API (simple auth manager, all
users admin) and the emulator's audit log.

2. ``SubmitAnalysisOperator(wait_for_completion=True, deferrable=False)``: the task's worker process
   (``airflow worker -- <ti id>``, found by walking the process tree of the scheduler's group) is killed
   with SIGKILL while it waits; the retry reconnects to the same analysis (``ResumableJobMixin``,
   ``task_state_store``), so the emulator holds one analysis and saw one submission.
   ``SubmitAnalysisBatchOperator`` killed the same way a third of the way through 120 calls: the retry
   resumes from the progress in ``task_state_store`` and the idempotency keys, so every call has exactly
   one analysis and the retry sends fewer than all of them.
3. While the batch sensor is deferred, the triggerer is stopped and started again; the new triggerer
   picks the trigger up, polling resumes and the run succeeds.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from callcov_provider.testing.audio import write_wav
from callcov_provider.testing.server import EmulatorHandle, run_emulator
from tests.reliability.conftest import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "tests" / "dags" / "reliability_e2e.py"
BIN = Path(sys.executable).parent
KEY = "sk_test_e2e_reliability_91d0"
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")


@dataclass
class Deployment:
    """A running Airflow deployment and the emulator its connection points at."""

    home: Path
    env: dict[str, str]
    port: int
    emulator: EmulatorHandle
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://localhost:{self.port}/api/v2"

    def start(self, component: str) -> None:
        log = (self.home / f"{component}.log").open("ab")
        self.processes[component] = subprocess.Popen(
            [str(BIN / "airflow"), component],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def stop(self, component: str, timeout: float = 30) -> None:
        process = self.processes.get(component)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        except ProcessLookupError:
            pass
        # Anything left in the group (a worker the component spawned) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.api}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        response = httpx.post(
            f"{self.api}/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}, timeout=10
        )
        response.raise_for_status()
        return str(response.json()["dag_run_id"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        suffix = f"/{map_index}" if map_index >= 0 else ""
        return dict(self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}{suffix}"))

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        return str(
            wait_for(
                lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s,
                timeout=timeout,
                interval=0.5,
                what=f"run {run_id} of {dag_id} to finish",
            )
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {c} ---\n" + (self.home / f"{c}.log").read_text(errors="replace")[-3000:]
            for c in COMPONENTS
            if (self.home / f"{c}.log").exists()
        )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("airflow-e2e")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    port = free_port()
    with run_emulator(api_keys=(KEY,), processing_seconds=3600.0) as emu:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CALLCOV"))},
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            # Private log-server ports: other Airflow deployments may share this machine.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_CALLCOV_DEFAULT": emu.connection_json(),
        }
        subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=180
        )
        deployment = Deployment(home=home, env=env, port=port, emulator=emu)
        try:
            for component in COMPONENTS:
                deployment.start(component)
            wait_for(
                lambda: (
                    httpx.get(f"http://localhost:{port}/api/v2/monitor/health", timeout=5).status_code == 200
                ),
                timeout=120,
                interval=0.5,
                what="the API server",
            )
            for dag_id in ("reliability_worker_crash", "reliability_triggerer_restart"):
                wait_for(
                    lambda d=dag_id: deployment.get(f"/dags/{d}"), timeout=120, interval=0.5, what=dag_id
                )
            yield deployment
        except BaseException:
            print(deployment.logs())
            raise
        finally:
            for component in reversed(COMPONENTS):
                deployment.stop(component)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_worker_crash_reconnects_to_the_same_analysis(deployment: Deployment, tmp_path: Path) -> None:
    emu = deployment.emulator
    emu.control.reset()
    audio = write_wav(tmp_path / "crash.wav", 0.25, seed=3)
    dag_id, task_id = "reliability_worker_crash", "submit_and_wait"
    run_id = deployment.trigger(dag_id, {"audio_file": str(audio)})

    # The first try submitted and is polling its analysis in the worker.
    analysis_id = wait_for(
        lambda: (a := emu.control.analyses()) and a[0]["id"], timeout=120, what="the submission"
    )
    wait_for(
        lambda: len(emu.control.requests(method="GET", path=f"/api/v1/analysis/{analysis_id}")) >= 2,
        timeout=60,
        what="the worker to poll",
    )
    ti = deployment.task_instance(dag_id, run_id, task_id)
    assert ti["state"] == "running"
    assert ti["try_number"] == 1
    victim = _worker_of(deployment, ti["id"])
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    polls_before = len(emu.control.requests(method="GET", path=f"/api/v1/analysis/{analysis_id}"))

    # The retry reconnects: a second try polls the same analysis, and submits nothing.
    wait_for(
        lambda: (
            deployment.task_instance(dag_id, run_id, task_id)["try_number"] == 2
            and len(emu.control.requests(method="GET", path=f"/api/v1/analysis/{analysis_id}")) > polls_before
        ),
        timeout=90,
        what="the retry to reconnect",
    )
    assert emu.control.complete_all() == 1
    assert deployment.wait_for_run(dag_id, run_id, timeout=90) == "success"

    ti = deployment.task_instance(dag_id, run_id, task_id)
    assert ti["try_number"] == 2
    analyses = emu.control.analyses()
    assert [a["id"] for a in analyses] == [analysis_id]
    posts = emu.control.requests(method="POST")
    assert len(posts) == 1, posts
    xcom = deployment.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    assert analysis_id in str(xcom["value"])


def _worker_of(deployment: Deployment, ti_id: str) -> psutil.Process:
    """The task's worker process, under the scheduler's group (LocalExecutor -> supervisor -> task)."""
    title = f"airflow worker -- {ti_id}"
    scheduler = deployment.processes["scheduler"]

    def worker() -> psutil.Process | None:
        for process in descendants(scheduler.pid):
            try:
                # The supervisor runs the task in a process (and process group) of its own.
                if " ".join(process.cmdline()).strip() == title:
                    return process
            except (psutil.NoSuchProcess, ProcessLookupError):
                continue
        return None

    try:
        return wait_for(worker, timeout=30, what=f"the process {title!r}")
    except TimeoutError:
        tree = [(p.pid, os.getpgid(p.pid), " ".join(p.cmdline())) for p in descendants(scheduler.pid)]
        raise AssertionError(f"no {title!r} under the scheduler (pid {scheduler.pid}): {tree}") from None


def test_worker_killed_half_way_through_a_batch(deployment: Deployment, tmp_path: Path) -> None:
    emu = deployment.emulator
    emu.control.reset()
    count = 120
    calls = [
        {
            "agent_id": f"agent_{i % 4}",
            "contact_id": f"customer_{i:03d}",
            "audio_file": str(write_wav(tmp_path / f"call_{i:03d}.wav", 0.05, seed=i + 1)),
        }
        for i in range(count)
    ]
    # Slow answers, so that the batch takes several seconds and can be killed in the middle.
    emu.control.set_faults(latency=0.1)
    try:
        dag_id = "reliability_batch_crash"
        run_id = deployment.trigger(dag_id, {"calls": calls})
        wait_for(lambda: len(emu.control.requests(method="POST")) >= count // 3, timeout=180, what="a third")
        ti = deployment.task_instance(dag_id, run_id, "submit")
        assert ti["try_number"] == 1
        victim = _worker_of(deployment, ti["id"])
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        sent_by_first_try = len(emu.control.requests(method="POST"))
        assert sent_by_first_try < count
        assert deployment.wait_for_run(dag_id, run_id, timeout=240) == "success", deployment.logs()
    finally:
        emu.control.clear_faults()

    assert deployment.task_instance(dag_id, run_id, "submit")["try_number"] == 2
    # Exactly one analysis per call, whatever the killed try had sent.
    analyses = emu.control.analyses()
    assert len(analyses) == count
    posts = emu.control.requests(method="POST")
    by_key: dict[str, set[str]] = {}
    for entry in posts:
        if entry.get("analysis_id"):
            by_key.setdefault(entry["idempotency_key"], set()).add(entry["analysis_id"])
    assert len(by_key) == count
    assert all(len(found) == 1 for found in by_key.values())
    # The retry resumed from what the first try had stored: it did not send every call again.
    assert len(posts) - sent_by_first_try < count
    outcomes = deployment.get(
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/submit/xcomEntries/return_value"
    )
    assert str(outcomes["value"]).count("analysis_id") == count


def test_triggerer_restart_resumes_the_deferred_wait(deployment: Deployment, tmp_path: Path) -> None:
    emu = deployment.emulator
    emu.control.reset()
    calls = [
        {
            "agent_id": f"agent_{i}",
            "contact_id": f"customer_{i}",
            "audio_file": str(write_wav(tmp_path / f"call_{i}.wav", 0.25, seed=i)),
        }
        for i in range(3)
    ]
    dag_id, sensor = "reliability_triggerer_restart", "wait_for_analyses"
    run_id = deployment.trigger(dag_id, {"calls": calls})

    def list_polls() -> int:
        return sum(1 for r in emu.control.requests(method="GET") if "status_filter=processing" in r["query"])

    # The sensor deferred and the triggerer is polling.
    wait_for(
        lambda: deployment.task_instance(dag_id, run_id, sensor)["state"] == "deferred" and list_polls() >= 3,
        timeout=120,
        what="the sensor to defer and the triggerer to poll",
    )
    deployment.stop("triggerer")
    polls_while_down = list_polls()
    assert deployment.task_instance(dag_id, run_id, sensor)["state"] == "deferred"
    deployment.start("triggerer")
    wait_for(lambda: list_polls() > polls_while_down, timeout=90, what="the new triggerer to poll")
    assert emu.control.complete_all() == 3
    assert deployment.wait_for_run(dag_id, run_id, timeout=90) == "success"
    ti = deployment.task_instance(dag_id, run_id, sensor)
    assert ti["state"] == "success"
    assert len(emu.control.analyses()) == 3
