"""
The production shape, started once per module: PostgreSQL and Redis (Debian's packages), the CallCov
emulator, and Airflow with CeleryExecutor on that database: scheduler, dag-processor, api-server, two Celery
workers and two triggerers, each in its own process group, all ended by process group in a ``finally``.

The ``callcov_default`` connection is created with ``airflow connections add`` (stored encrypted with a
Fernet key in PostgreSQL); no process gets it in its environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import pytest
from cryptography.fernet import Fernet

from callcov_provider.testing.server import EmulatorHandle, run_emulator
from tests.distributed.services import (
    Postgres,
    Redis,
    ensure_installed,
    remove_postgres_dir,
    start_postgres,
    start_redis,
)
from tests.e2e.helpers import (
    VENV_BIN,
    AirflowApi,
    ProcessGroup,
    airflow_environment,
    copy_example_dags,
    free_port,
    tail,
    wait_for,
)

API_KEY = "sk_live_distributed_7f3a9c2e5b1d4086"
STARTUP_TIMEOUT = 300.0
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
WORKERS = ("worker1", "worker2")
TRIGGERERS = ("triggerer1", "triggerer2")
#: Seconds without a heartbeat after which a triggerer's triggers go to another (the default is 30).
TRIGGERER_THRESHOLD = 10
#: Seconds without a heartbeat after which a running task counts as lost (the default is 300).
TASK_HEARTBEAT_TIMEOUT = 30


@dataclass
class DistributedStack:
    api: AirflowApi
    emulator: EmulatorHandle
    postgres: Postgres
    redis: Redis
    env: dict[str, str]
    groups: dict[str, ProcessGroup]
    work: Path
    home: Path
    recordings: Path
    reports: Path
    timings: dict[str, float] = field(default_factory=dict)
    #: Every group started, restarted ones included: teardown ends them all.
    all_groups: list[ProcessGroup] = field(default_factory=list)

    def start(self, name: str) -> ProcessGroup:
        """Start (or restart) one Airflow component in its own process group."""
        extra: dict[str, str] = {"CALLCOV_COMPONENT": name}
        if name in WORKERS:
            command = [
                "celery",
                "worker",
                "-H",
                f"{name}@%h",
                "-c",
                "2",
                "--without-mingle",
                "--without-gossip",
            ]
            extra["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
        elif name in TRIGGERERS:
            command = ["triggerer"]
            extra["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port())
        else:
            command = [name]
        log = self.work / "logs" / f"{name}-{int(time.time() * 1000)}.log"
        group = ProcessGroup([str(VENV_BIN / "airflow"), *command], {**self.env, **extra}, log, self.work)
        self.groups[name] = group
        self.all_groups.append(group)
        return group

    def component_logs(self) -> list[Path]:
        return sorted((self.work / "logs").glob("*.log"))

    def log_tail(self, chars: int = 3000) -> str:
        return "".join(f"\n--- {p.name} ---\n{tail(p, chars)}" for p in self.component_logs())

    def remember(self) -> None:
        for group in self.groups.values():
            group.remember_descendants()


def _airflow(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(VENV_BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"airflow {args[:2]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def _healthy(stack: DistributedStack) -> bool:
    for name, group in stack.groups.items():
        if group.process.poll() is not None:
            raise AssertionError(f"{name} exited with {group.process.returncode}\n{tail(group.log_path)}")
    stack.remember()
    response = stack.api.get("/api/v2/monitor/health", timeout=10)
    if not response.ok:
        return False
    health = response.json()
    if not all((health.get(name) or {}).get("status") == "healthy" for name in COMPONENTS):
        return False
    # Both triggerers and both workers up: triggerer jobs alive, workers said "ready".
    jobs = stack.api.get("/api/v2/jobs", params={"job_type": "TriggererJob", "is_alive": True})
    alive = {job["hostname"] for job in jobs.json()["jobs"]} if jobs.ok else set()
    ready = all("ready." in tail(stack.groups[w].log_path, 100_000) for w in WORKERS)
    return set(TRIGGERERS) <= alive and ready


@pytest.fixture(scope="module")
def dstack(request: pytest.FixtureRequest) -> Iterator[DistributedStack]:
    started = time.monotonic()
    failures_before = request.session.testsfailed
    ensure_installed()
    work = Path(tempfile.mkdtemp(prefix="callcov-distributed-"))
    home, recordings, reports = work / "airflow", work / "recordings", work / "reports"
    for path in (home, recordings, reports, work / "logs"):
        path.mkdir()
    dags = copy_example_dags(work / "dags")
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    postgres: Postgres | None = None
    redis: Redis | None = None
    stack: DistributedStack | None = None
    left: list[str] = []
    try:
        postgres = start_postgres(work / "logs")
        redis = start_redis(work)
        with run_emulator(
            api_keys=(API_KEY,), processing_seconds=3600.0, in_subprocess=True, startup_timeout=60
        ) as emulator:
            api_port = free_port()
            env = airflow_environment(
                home,
                dags,
                api_port,
                {
                    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                    "AIRFLOW__CORE__PARALLELISM": "8",
                    "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.distributed.hostname.component_name",
                    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.sqlalchemy_url,
                    "AIRFLOW__CELERY__BROKER_URL": redis.url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{postgres.sqlalchemy_url}",
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                    "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_THRESHOLD),
                    "AIRFLOW__SCHEDULER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_THRESHOLD),
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                    "CALLCOV_RECORDINGS_ROOT": str(recordings),
                    "CALLCOV_REPORTS_ROOT": str(reports),
                    "CALLCOV_POLL_INTERVAL": "2",
                    "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[2])),
                },
            )
            assert not any(key.startswith("AIRFLOW_CONN_") for key in env)
            _airflow(env, "db", "migrate", timeout=600)
            migrated = time.monotonic() - started
            # The connection goes into the database, encrypted with the Fernet key: never the environment.
            _airflow(
                env,
                "connections",
                "add",
                "callcov_default",
                "--conn-type",
                "callcov",
                "--conn-host",
                emulator.base_url,
                "--conn-password",
                API_KEY,
                "--conn-extra",
                '{"auth_type": "api_key"}',
            )
            stack = DistributedStack(
                AirflowApi(f"http://127.0.0.1:{api_port}"),
                emulator,
                postgres,
                redis,
                env,
                {},
                work,
                home,
                recordings,
                reports,
            )
            stack.timings["db_migrate"] = migrated
            try:
                for name in ("api-server", "scheduler", "dag-processor", *WORKERS, *TRIGGERERS):
                    stack.start(name)
                wait_for(
                    "the distributed stack to become healthy",
                    lambda: _healthy(stack),  # type: ignore[arg-type]
                    STARTUP_TIMEOUT,
                    interval=2,
                    on_timeout=stack.log_tail(),
                )
                stack.api.login()
                stack.timings["healthy"] = time.monotonic() - started
                yield stack
            finally:
                stopping = time.monotonic()
                stack.api.session.close()
                for group in reversed(stack.all_groups):
                    left += group.stop()
                stack.timings["teardown"] = time.monotonic() - stopping
    finally:
        for service in (redis, postgres):
            if service is not None:
                left += service.group.stop()
        if postgres is not None and not left:
            remove_postgres_dir(postgres)
        signal.signal(signal.SIGTERM, previous_handler)
    if request.session.testsfailed > failures_before or left:
        print(f"\ncallcov distributed: kept {work} for inspection")
    else:
        shutil.rmtree(work, ignore_errors=True)
    timings = {name: round(value, 1) for name, value in (stack.timings if stack else {}).items()}
    versions = f"{postgres.version if postgres else '?'}; {redis.version.split(' sha=')[0] if redis else '?'}"
    print(f"\ncallcov distributed: {time.monotonic() - started:.0f}s in all ({versions}); {timings}")
    assert not left, f"processes still running after teardown: {left}"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
