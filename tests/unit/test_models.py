"""The pydantic models of the CallCov contract: both API generations, open to new fields, JSON-safe."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from callcov_provider.formats import AUDIO_FORMATS, MIB
from callcov_provider.models import (
    Analysis,
    AnalysisList,
    AnalysisStatus,
    parse_iso8601,
)
from tests.unit.conftest import ANALYSIS_001, COMPLETED_002, SUBMIT_000


def test_page_001_response_parses_with_null_sections_while_processing() -> None:
    model = Analysis.model_validate(ANALYSIS_001)
    assert model.id == "550e8400-e29b-41d4-a716-446655440000"
    assert model.status is AnalysisStatus.PROCESSING
    assert not model.is_finished
    assert model.transcript is None
    assert model.results is None
    assert model.call is not None
    assert model.call.agent_id == "agent_john_doe"
    assert model.audio is not None
    assert model.audio.format == "wav"
    assert model.audio.file_size is None
    assert model.metadata is not None
    assert model.metadata.version == "1.0.0"
    assert model.created_timestamp == 1642248000.0
    assert model.error_message is None


def test_page_000_submit_response_accepts_analysis_id_as_id() -> None:
    model = Analysis.model_validate(SUBMIT_000)
    assert model.id == "anl_1a2b3c4d5e"
    assert model.object == "analysis"
    assert model.status is AnalysisStatus.PROCESSING
    assert model.webhook_url is not None
    assert model.webhook_url.get_secret_value() == "https://your-app.com/webhooks/callcov"
    expected = datetime(2024, 1, 15, 10, 30, 5, tzinfo=UTC).timestamp()
    assert model.created_timestamp == expected
    # Serialised under the API's current name, once.
    dumped = model.to_xcom()
    assert dumped["id"] == "anl_1a2b3c4d5e"
    assert "analysis_id" not in dumped


def test_completed_page_002_analysis_parses_every_documented_section() -> None:
    model = Analysis.model_validate(COMPLETED_002)
    assert model.is_finished
    assert model.results is not None
    compliance = model.results.compliance
    assert compliance is not None
    assert compliance.purpose_declaration is not None
    assert compliance.purpose_declaration.flagged is True
    quality = model.results.quality
    assert quality is not None
    assert quality.greeting is not None
    assert quality.greeting.present is True
    assert quality.sentiment_analysis is not None
    assert quality.sentiment_analysis.overall == "positive"
    coaching = model.results.coaching
    assert coaching is not None
    assert coaching.customer_effort_score == 1
    assert model.transcript is not None
    assert model.transcript.segments[0].speaker == "agent"
    assert model.audio is not None
    assert model.audio.size_bytes == 1048576
    assert model.call is not None
    assert model.call.duration_ms == 125500
    assert model.summary() == {
        "id": COMPLETED_002["id"],
        "status": "completed",
        "agent_id": "agent_001",
        "contact_id": "customer_12345",
        "error_message": None,
    }


def test_unknown_fields_are_kept_at_every_level_and_in_xcom() -> None:
    body = copy.deepcopy(COMPLETED_002)
    body["sentiment_trend"] = [0.1, 0.5]
    body["call"]["queue"] = "billing"
    body["results"]["quality"]["talk_ratio"] = {"agent": 0.4}
    model = Analysis.model_validate(body)
    assert model.model_extra == {"sentiment_trend": [0.1, 0.5]}
    assert model.call is not None
    assert model.call.model_extra == {"queue": "billing"}
    dumped = model.to_xcom()
    assert dumped["sentiment_trend"] == [0.1, 0.5]
    assert dumped["call"]["queue"] == "billing"
    assert dumped["results"]["quality"]["talk_ratio"] == {"agent": 0.4}


@pytest.mark.parametrize("body", [ANALYSIS_001, SUBMIT_000, COMPLETED_002])
def test_to_xcom_is_json_serialisable_and_round_trips(body: dict[str, object]) -> None:
    model = Analysis.model_validate(body)
    text = json.dumps(model.to_xcom())
    again = Analysis.model_validate_json(text)
    assert again == model
    assert json.loads(json.dumps(model.summary()))["id"] == model.id


def test_failure_reason_is_read_from_both_generations() -> None:
    current = Analysis.model_validate(
        {"id": "a1", "status": "failed", "metadata": {"error_message": "audio unreadable"}}
    )
    legacy = Analysis.model_validate({"analysis_id": "a2", "status": "failed", "error": "bad codec"})
    assert current.error_message == "audio unreadable"
    assert legacy.error_message == "bad codec"
    assert current.is_finished
    assert legacy.is_finished
    assert Analysis.model_validate({"id": "a3", "status": "completed"}).created_timestamp is None


@pytest.mark.parametrize(
    "body",
    [
        {"status": "processing"},
        {"id": "", "status": "processing"},
        {"id": "a1"},
        {"id": "a1", "status": 3},
    ],
    ids=["no-id", "empty-id", "no-status", "non-text-status"],
)
def test_analysis_without_id_or_status_is_rejected(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Analysis.model_validate(body)


def test_list_object_parses_page_002_and_is_json_safe() -> None:
    processing = copy.deepcopy(ANALYSIS_001)
    body = {"object": "list", "data": [COMPLETED_002, processing], "has_more": True, "total": 247}
    listing = AnalysisList.model_validate(body)
    assert [a.status for a in listing.data] == [AnalysisStatus.COMPLETED, AnalysisStatus.PROCESSING]
    assert listing.has_more is True
    assert listing.total == 247
    assert json.loads(listing.model_dump_json())["data"][1]["results"] is None
    empty = AnalysisList.model_validate({})
    assert empty.data == []
    assert empty.has_more is False
    assert empty.total is None


def test_status_terminality() -> None:
    assert not AnalysisStatus.PROCESSING.is_terminal
    assert AnalysisStatus.COMPLETED.is_terminal
    assert AnalysisStatus.FAILED.is_terminal


def test_documented_audio_format_table_in_mib() -> None:
    assert {ext: fmt.max_bytes // MIB for ext, fmt in AUDIO_FORMATS.items()} == {
        ".wav": 100,
        ".mp3": 50,
        ".m4a": 50,
        ".flac": 100,
        ".ogg": 50,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-15T10:30:00Z", datetime(2024, 1, 15, 10, 30, tzinfo=UTC)),
        ("2024-01-15T10:30:00z", datetime(2024, 1, 15, 10, 30, tzinfo=UTC)),
        ("2024-01-15T10:30:00", datetime(2024, 1, 15, 10, 30, tzinfo=UTC)),
        ("2024-01-15T12:30:00+02:00", datetime(2024, 1, 15, 10, 30, tzinfo=UTC)),
    ],
)
def test_parse_iso8601(text: str, expected: datetime) -> None:
    assert parse_iso8601(text) == expected


def test_parse_iso8601_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_iso8601("yesterday")


