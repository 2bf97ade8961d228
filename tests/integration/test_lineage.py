"""The OpenLineage events a run emits, with the openlineage provider installed (file transport)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from callcov_provider.testing.audio import write_wav
from callcov_provider.testing.server import EmulatorHandle
from tests.integration.conftest import load_dag, run_dag

pytest.importorskip("airflow.providers.openlineage")

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


@pytest.fixture
def lineage_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point OpenLineage at a file transport and (re)build its cached configuration and listener."""
    path = tmp_path / "openlineage.jsonl"
    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__TRANSPORT",
        json.dumps({"type": "file", "log_file_path": str(path), "append": True}),
    )
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "callcov_tests")
    from airflow.listeners.listener import get_listener_manager
    from airflow.providers.openlineage import conf as ol_conf
    from airflow.providers.openlineage.plugins.listener import get_openlineage_listener

    # The provider caches its configuration: read it again with the transport above.
    for value in vars(ol_conf).values():
        if hasattr(value, "cache_clear"):
            value.cache_clear()
    assert not ol_conf.is_disabled()
    # On Airflow 3 the scheduler side (dag runs) and the task runner (task instances) each have a listener
    # manager; both may have been built, without OpenLineage, by an earlier test in this process. Airflow 2
    # has one.
    found = [get_listener_manager()]
    try:
        from airflow.sdk.listener import get_listener_manager as get_task_listener_manager
    except ImportError:
        pass
    else:
        found.append(get_task_listener_manager())
    listener = get_openlineage_listener()
    managers = {id(m): m for m in found}.values()
    added = []
    for manager in managers:
        if not manager.pm.is_registered(listener):
            manager.add_listener(listener)
            added.append(manager)
    try:
        yield path
    finally:
        for manager in added:
            manager.pm.unregister(listener)


def complete_events(path: Path, job_suffix: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The COMPLETE events of one task (emitted from a forked process: wait for the file)."""
    deadline = time.monotonic() + timeout
    while True:
        events = []
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    event = json.loads(line)
                    if event.get("eventType") == "COMPLETE" and event["job"]["name"].endswith(job_suffix):
                        events.append(event)
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def test_submit_and_list_emit_recording_analysis_and_file_datasets(
    connected: EmulatorHandle, tmp_path: Path, lineage_file: Path
) -> None:
    audio = write_wav(tmp_path / "call.wav", 1.0, seed=7)
    output = tmp_path / "out" / "analyses.jsonl"
    result = run_dag(
        load_dag("it_lineage_dags.py", "it_lineage"),
        run_conf={"audio_file": str(audio), "output_uri": f"file://{output}"},
    )
    assert result.state == "success", result.states
    analysis_id = result.xcom("submit")
    host = urlsplit(connected.base_url).hostname
    port = urlsplit(connected.base_url).port
    namespace = f"callcov://{host}:{port}"

    (submit_event,) = complete_events(lineage_file, ".submit")
    assert [(d["namespace"], d["name"]) for d in submit_event["inputs"]] == [("file", str(audio))]
    assert [(d["namespace"], d["name"]) for d in submit_event["outputs"]] == [
        (namespace, f"analyses/{analysis_id}")
    ]

    (list_event,) = complete_events(lineage_file, ".list")
    assert [(d["namespace"], d["name"]) for d in list_event["inputs"]] == [(namespace, "analyses")]
    assert [(d["namespace"], d["name"]) for d in list_event["outputs"]] == [("file", str(output))]
    # No credential reaches a lineage event.
    text = lineage_file.read_text()
    assert "sk_test" not in text
