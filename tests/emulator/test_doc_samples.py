"""
Conformance: the documentation pages' own Python samples (``doc_samples.py``) run against the emulator.

Analyses take 12 s of emulator time, so the polling samples really poll; their ``time.sleep`` advances
the emulator's clock instead of waiting.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from callcov_provider.models import Analysis, AnalysisList
from callcov_provider.testing.audio import write_wav
from callcov_provider.testing.server import EmulatorHandle

from . import doc_samples


@pytest.fixture
def docs(emu: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Samples configured for the emulator, run in a folder with their recordings; yields the sleeps."""
    monkeypatch.chdir(tmp_path)
    write_wav(tmp_path / "call_recording.wav", 4.0, seed=1)
    for index in (1, 2, 3):
        write_wav(tmp_path / f"recording{index}.wav", 3.0 + index, seed=10 + index)
    emu.control.set_processing(seconds=12)
    doc_samples.configure(
        emu.base_url,
        emu.api_key,
        f"{emu.root_url}/_emulator/audio/call_12345.wav?seconds=5",
        f"{emu.root_url}/_emulator/audio/call-001.wav?seconds=7&token=signed",
    )
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        emu.control.advance(seconds)

    monkeypatch.setattr(doc_samples, "time", SimpleNamespace(time=time.time, sleep=sleep))
    return sleeps


def test_page_000_upload_then_wait_for_analysis(
    docs: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    result = doc_samples.page_000_basic_file_upload()
    assert result["status"] == "processing"
    assert result["analysis_id"]
    final = doc_samples.page_000_wait_usage(result["analysis_id"])
    assert final is not None
    assert final["status"] == "completed"
    assert docs == [5, 5, 5]  # polled until the 12 s of processing had passed
    out = capsys.readouterr().out
    assert "Analysis completed!" in out
    assert "Sentiment: " in out
    assert "Summary: " in out


def test_page_000_url_submission(docs: list[float], emu: EmulatorHandle) -> None:
    result = doc_samples.page_000_url_submission()
    (stored,) = emu.control.analyses()
    assert stored["id"] == result["analysis_id"]
    assert stored["analysis"]["audio"]["duration_seconds"] is None
    emu.control.advance(12)
    assert emu.control.analysis(result["analysis_id"])["analysis"]["audio"]["duration_seconds"] == 5.0


def test_page_000_wait_reports_a_failure(
    docs: list[float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_wav(tmp_path / "call_recording.wav", 2.0, silent=True)
    result = doc_samples.page_000_basic_file_upload()
    assert doc_samples.page_000_wait_usage(result["analysis_id"]) is None
    assert "Analysis failed: Audio contains only silence" in capsys.readouterr().out


def test_page_000_batch_submission(
    docs: list[float], emu: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    results = doc_samples.page_000_batch_submission()
    assert len(results) == 3
    assert len({r["analysis_id"] for r in results}) == 3
    assert "Submitted 3 calls for analysis" in capsys.readouterr().out
    stored = {
        a["analysis"]["call"]["contact_id"]: a["analysis"]["call"]["agent_id"] for a in emu.control.analyses()
    }
    assert stored == {"CONTACT_001": "AGENT_001", "CONTACT_002": "AGENT_001", "CONTACT_003": "AGENT_002"}


def test_page_000_retry_session_gets_through_injected_errors(docs: list[float], emu: EmulatorHandle) -> None:
    session = doc_samples.create_retry_session(backoff_factor=0)
    emu.control.set_faults(next_errors=[503, 502])
    response = session.get(f"{emu.base_url}/analysis/", headers={"X-API-Key": emu.api_key})
    assert response.status_code == 200
    with open("call_recording.wav", "rb") as handle:
        posted = doc_samples.page_000_retry_session_usage(
            {"audio_file": handle}, {"agent_id": "A", "contact_id": "C"}
        )
    assert posted.status_code == 201


def test_page_001_submit_and_poll(
    docs: list[float], emu: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    response = doc_samples.page_001_python_example()
    assert response.status_code == 201
    analysis = Analysis.model_validate(response.json())
    assert "Analysis created" in capsys.readouterr().out
    final = doc_samples.page_001_wait_usage(analysis.id)
    assert final is not None
    assert Analysis.model_validate(final).status.value == "completed"
    assert docs == [10, 10]
    assert final["audio"]["duration_seconds"] == 7.0
    assert "token=signed" not in str(emu.control.analyses())


def test_page_001_wait_reports_the_error_message(
    docs: list[float], emu: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    emu.control.set_processing(failure_rate=1.0)
    response = doc_samples.page_001_python_example()
    assert doc_samples.page_001_wait_usage(response.json()["id"]) is None
    assert "Analysis failed: Analysis failed" in capsys.readouterr().out


@pytest.fixture
def history(emu: EmulatorHandle) -> None:
    """250 analyses over a day: agents 001-003, mostly completed."""
    emu.control.seed(
        250,
        created_from=1_705_300_000,
        created_to=1_705_386_400,
        statuses=["completed", "completed", "completed", "failed", "processing"],
        agent_ids=["agent_001", "agent_002", "agent_003"],
        contact_ids=["customer_12345", "customer_67890", "customer_1234"],
    )


def test_page_002_pagination_and_get_all(
    history: None, docs: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = doc_samples.page_002_basic_pagination()
    assert len(first.json()["data"]) == 100
    assert len(second.json()["data"]) == 100
    assert {a["id"] for a in first.json()["data"]}.isdisjoint(a["id"] for a in second.json()["data"])
    completed = doc_samples.page_002_get_all_usage()
    assert len(completed) == 150
    assert "Total completed analyses: 150" in capsys.readouterr().out
    assert len(doc_samples.get_all_analyses(doc_samples.API_KEY)) == 250


def test_page_002_filters_and_reports(
    history: None, docs: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    recent = doc_samples.page_002_recent_completed()
    assert len(recent) == 10
    assert all(a["status"] == "completed" for a in recent)
    analyses, total = doc_samples.page_002_agent_usage()
    assert total == 84
    assert len(analyses) == 84
    searched = doc_samples.page_002_search().json()
    assert searched["total"] > 0
    assert all("customer_123" in a["call"]["contact_id"] for a in searched["data"])
    failed = doc_samples.page_002_failed_for_debugging()
    assert failed
    assert all(a["metadata"]["error_message"] for a in failed)
    assert len(doc_samples.page_002_dashboard()) == 20
    average = doc_samples.page_002_average_quality()
    assert 1.0 <= average <= 5.0
    calls, effort, compliance = doc_samples.page_002_agent_performance_report()
    assert calls == 50
    assert 1.0 <= effort <= 5.0
    assert 0.0 <= compliance <= 1.0
    out = capsys.readouterr().out
    assert "Agent agent_001 has 84 total analyses" in out
    assert "Agent agent_001 Report:" in out
    AnalysisList.model_validate(searched)
