"""
Event-driven scheduling on real processes: ``callcov_compliance_alerts`` runs when analyses submitted
outside Airflow finish, each analysis is reported exactly once, also across a triggerer restart. And the
deferral triggers of mapped deferrable submissions share one poll loop in the triggerer (Airflow 3.3+).

The Airflow components run as separate process groups (api-server, scheduler, dag-processor, triggerer),
so the triggerer alone can be stopped and started again; the watermark survives in the asset's state
store (Airflow 3.3+).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callcov_provider.testing.audio import write_wav
from callcov_provider.testing.server import EmulatorHandle, run_emulator
from callcov_provider.version_compat import AIRFLOW_V_3_3_PLUS
from tests.e2e.helpers import (
    EXAMPLE_DAGS,
    VENV_BIN,
    AirflowApi,
    ProcessGroup,
    airflow_environment,
    free_port,
    tail,
    wait_for,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="the restart guarantee needs the asset state store"),
]

DAG_ID = "callcov_compliance_alerts"
API_KEY = "sk_test_events_0123456789abcdef"
#: The second emulator account (``acct_2``), used by the shared-wait DAG only, so its requests are apart.
SHARED_KEY = "sk_test_shared_0123456789abcdef"
SHARED_DAG_ID = "callcov_shared_wait"
POLL = 2.0


class Stack:
    """The emulator and the Airflow components, each in its own process group."""

    def __init__(self, work: Path, emulator: EmulatorHandle) -> None:
        self.work = work
        self.emulator = emulator
        self.home = work / "airflow"
        self.home.mkdir()
        self.dags = work / "dags"
        self.dags.mkdir()
        shutil.copy2(EXAMPLE_DAGS / "callcov_compliance_alerts.py", self.dags)
        shutil.copy2(Path(__file__).resolve().parents[1] / "dags" / "e2e_shared_wait.py", self.dags)
        self.reports = work / "reports"
        self.api_port = free_port()
        self.env = airflow_environment(
            self.home,
            self.dags,
            self.api_port,
            {
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW_CONN_CALLCOV_DEFAULT": emulator.connection_json(api_key=API_KEY),
                "AIRFLOW_CONN_CALLCOV_SHARED": emulator.connection_json(api_key=SHARED_KEY),
                "CALLCOV_REPORTS_ROOT": str(self.reports),
                "CALLCOV_EVENT_POLL_INTERVAL": str(POLL),
            },
        )
        self.groups: dict[str, ProcessGroup] = {}
        self.api = AirflowApi(f"http://127.0.0.1:{self.api_port}")
        self.starts = Counter[str]()

    def start(self, component: str) -> None:
        self.starts[component] += 1
        log = self.work / f"{component}.{self.starts[component]}.log"
        self.groups[component] = ProcessGroup(
            [str(VENV_BIN / "airflow"), component], self.env, log, self.work
        )

    def stop(self, component: str) -> list[str]:
        return self.groups.pop(component).stop()

    def logs(self) -> str:
        return "".join(f"\n--- {p.name} ---\n{tail(p, 3000)}" for p in sorted(self.work.glob("*.log")))

    def alert_files(self) -> list[dict[str, Any]]:
        folder = self.reports / "compliance_alerts"
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []

    def announced(self) -> Counter[str]:
        return Counter(s["id"] for body in self.alert_files() for s in body["announced"])


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    work = Path(tempfile.mkdtemp(prefix="callcov-events-e2e-"))
    left: list[str] = []
    with run_emulator(
        api_keys=(API_KEY, SHARED_KEY), processing_seconds=3600.0, in_subprocess=True, startup_timeout=60
    ) as emulator:
        running = Stack(work, emulator)
        try:
            subprocess.run(
                [str(VENV_BIN / "airflow"), "db", "migrate"],
                env=running.env,
                cwd=work,
                check=True,
                capture_output=True,
                timeout=300,
            )
            for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
                running.start(component)
            wait_for(
                "the api-server",
                lambda: running.api.get("/api/v2/monitor/health", timeout=10).ok,
                180,
                interval=2,
                on_timeout=running.logs(),
            )
            running.api.login()
            yield running
        finally:
            running.api.session.close()
            for component in list(running.groups):
                left += running.stop(component)
    failed = bool(left)
    if not failed:
        shutil.rmtree(work, ignore_errors=True)
    assert not left, f"processes still running after teardown: {left}"


def submit(stack: Stack, tmp_path: Path, tag: str, count: int) -> list[str]:
    """Submit recordings with the hook, outside Airflow."""
    from callcov_provider.hooks.callcov import CallCovHook

    hook = CallCovHook("callcov_default")
    ids = []
    try:
        for i in range(count):
            path = write_wav(tmp_path / f"{tag}_{i}.wav", 1.0, seed=ord(tag[0]) * 100 + i)
            ids.append(
                hook.submit_analysis(
                    agent_id=f"agent_{i % 2}", contact_id=f"{tag}_{i}", audio_file=str(path)
                ).id
            )
    finally:
        hook.close()
    return ids


def list_polls(stack: Stack) -> int:
    return len(
        [
            r
            for r in stack.emulator.control.requests(method="GET", path="/api/v1/analysis/")
            if "status_filter=processing" in str(r.get("query"))
        ]
    )


def wait_announced(stack: Stack, ids: list[str], timeout: float = 240) -> None:
    wait_for(
        f"{len(ids)} analyses in the alert files",
        lambda: all(stack.announced()[aid] for aid in ids) or None,
        timeout,
        interval=2,
        on_timeout=stack.logs(),
    )


def test_finished_analyses_run_the_alerts_dag_once_each_across_a_triggerer_restart(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", stack.emulator.connection_json(api_key=API_KEY))
    # The watcher runs in the triggerer once the DAG is parsed: wait for two of its poll cycles (baseline).
    wait_for("the watcher's first polls", lambda: list_polls(stack) >= 2 or None, 240, 2, stack.logs())

    first = submit(stack, tmp_path, "a", 6)
    stack.emulator.control.complete_all()
    wait_announced(stack, first)

    # Stop the triggerer; analyses finish while it is down; a new triggerer must announce them, and
    # only them (the watermark was kept in the asset's state store).
    stack.stop("triggerer")
    second = submit(stack, tmp_path, "b", 4)
    stack.emulator.control.complete_all()
    polls_before = list_polls(stack)
    stack.start("triggerer")
    wait_announced(stack, first + second)
    # A few more cycles: nothing is announced again.
    wait_for("more poll cycles", lambda: list_polls(stack) >= polls_before + 4 or None, 120, 1, stack.logs())
    time.sleep(POLL * 2)
    counts = stack.announced()
    assert {aid: n for aid, n in counts.items() if n != 1} == {}, counts
    assert set(counts) == set(first + second)

    # The alerts: exactly the completed calls with a failed compliance check.
    alerts = {a["id"]: a for body in stack.alert_files() for a in body["alerts"]}
    expected = {}
    from callcov_provider.hooks.callcov import CallCovHook

    hook = CallCovHook("callcov_default")
    for aid in first + second:
        record = hook.get_analysis(aid).to_xcom()
        checks = (record.get("results") or {}).get("compliance") or {}
        failed = sorted(name for name, check in checks.items() if (check or {}).get("passed") is False)
        if failed:
            expected[aid] = failed
    hook.close()
    assert expected  # the recordings include calls that fail a check
    assert {aid: a["failed_checks"] for aid, a in alerts.items()} == expected
    runs = stack.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns", params={"limit": 100}).json()["dag_runs"]
    assert runs
    assert all(run["state"] == "success" for run in runs), runs


def test_mapped_deferrable_submissions_share_one_poll_loop(stack: Stack, tmp_path: Path) -> None:
    """N deferred single-id waits cost at most the batch budget a cycle in all, not N GETs a cycle."""
    from callcov_provider.triggers.analysis import AnalysisCompletedTrigger

    n = 16
    calls = []
    for i in range(n):
        path = write_wav(tmp_path / f"shared_{i}.wav", 1.0, seed=500 + i)
        calls.append({"agent_id": f"agent_{i % 3}", "contact_id": f"shared_{i}", "audio_file": str(path)})
    wait_for(
        "the shared-wait DAG to be parsed",
        lambda: stack.api.get(f"/api/v2/dags/{SHARED_DAG_ID}").ok or None,
        180,
        2,
        stack.logs(),
    )
    response = stack.api.post(
        f"/api/v2/dags/{SHARED_DAG_ID}/dagRuns", json={"logical_date": None, "conf": {"calls": calls}}
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]

    def tis() -> list[dict[str, Any]]:
        got = stack.api.get(
            f"/api/v2/dags/{SHARED_DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100}
        )
        got.raise_for_status()
        return [t for t in got.json()["task_instances"] if t["task_id"] == "submit"]

    wait_for(
        f"{n} deferred submissions",
        lambda: (len(got := tis()) == n and all(t["state"] == "deferred" for t in got)) or None,
        400,
        3,
        stack.logs(),
    )
    # Measure a window of several poll cycles while all N wait in the triggerer.
    since = max((r["seq"] for r in stack.emulator.control.requests()), default=0)
    window = 5 * 2.0
    time.sleep(window)
    polls = [
        r
        for r in stack.emulator.control.requests(method="GET", account="acct_2", since=since)
        if r["path"].startswith("/api/v1/analysis")
    ]
    cycles = window / 2.0
    budget = AnalysisCompletedTrigger.max_requests_per_cycle
    print(f"\nshared wait: {len(polls)} requests in {window:g} s for {n} deferred tasks")
    assert polls, "the triggerer did not poll at all"
    # Standalone triggers would make n GETs a cycle (n * cycles in the window); one shared loop, at most the
    # tracker's budget a cycle (one more cycle of slack for the window's edges).
    assert len(polls) <= budget * (cycles + 1), polls
    assert len(polls) < n * cycles / 2

    assert stack.emulator.control.complete_all() >= n
    wait_for(
        "the shared-wait run to succeed",
        lambda: (
            stack.api.get(f"/api/v2/dags/{SHARED_DAG_ID}/dagRuns/{run_id}").json()["state"] == "success"
            or None
        ),
        300,
        3,
        stack.logs(),
    )
    assert all(t["state"] == "success" for t in tis())
