"""
Response bodies: a stored record rendered as either API generation's shape, at a given time.

* :func:`analysis_response`: the current generation's ``AnalysisResponse``;
* :func:`legacy_submit_response`: the older generation's submit answer (``analysis_id``, ``status``,
  ``created_at``, ``estimated_completion``, ``webhook_url``);
* :func:`legacy_status_response`: the older generation's
  ``{"status", "analysis": {"sentiment", "summary"}, "error"}``.
"""

from __future__ import annotations

from typing import Any

from callcov_provider.models import AnalysisStatus
from callcov_provider.testing.clock import iso
from callcov_provider.testing.results import build_results
from callcov_provider.testing.store import AnalysisRecord

API_VERSION = "1.0.0"


def analysis_response(record: AnalysisRecord, now: float) -> dict[str, Any]:
    """The full ``AnalysisResponse`` of ``record`` at time ``now``."""
    status = record.status(now)
    finished = status is not AnalysisStatus.PROCESSING
    failed = status is AnalysisStatus.FAILED
    duration = record.duration_seconds if finished else None
    transcript: dict[str, Any] | None = None
    results: dict[str, Any] | None = None
    if status is AnalysisStatus.COMPLETED:
        built = build_results(record.audio_sha256, record.duration_seconds or 0.0)
        transcript, results = built.transcript, built.results
    error_message = record.fail_reason if failed else None
    metadata: dict[str, Any] = {
        "webhook_url": record.webhook_url,
        "completed_at": iso(record.ready_at) if finished else None,
        "processing_time_ms": round(record.processing_seconds() * 1000) if finished else None,
        "error_message": error_message,
        "version": API_VERSION,
    }
    if record.custom_metadata is not None:
        metadata["custom"] = record.custom_metadata
    audio: dict[str, Any] = {
        "url": record.audio_url,
        "format": record.audio_format,
        "duration_seconds": duration,
        "size_bytes": record.audio_size,
        "file_size": record.audio_size,
    }
    if record.source_url is not None:
        audio["source_url"] = record.source_url
    return {
        "id": record.id,
        "object": "analysis",
        "created": int(record.created),
        "status": status.value,
        "livemode": False,
        "call": {
            "agent_id": record.agent_id,
            "contact_id": record.contact_id,
            "call_direction": record.call_direction,
            "call_timestamp": record.call_timestamp,
            "duration_ms": None if duration is None else round(duration * 1000),
            "duration_seconds": duration,
        },
        "audio": audio,
        "transcript": transcript,
        "results": results,
        "metadata": metadata,
        # The current generation's polling sample reads a top-level ``error_message``.
        "error_message": error_message,
    }


def legacy_submit_response(record: AnalysisRecord, now: float) -> dict[str, Any]:
    """The older generation's answer to ``POST /calls/analyze``."""
    return {
        "analysis_id": record.id,
        "status": record.status(now).value,
        "created_at": iso(record.created),
        "estimated_completion": iso(record.ready_at),
        "webhook_url": record.webhook_url,
    }


def legacy_status_response(record: AnalysisRecord, now: float) -> dict[str, Any]:
    """The older generation's answer to ``GET /calls/analyze/{id}``."""
    status = record.status(now)
    analysis: dict[str, Any] | None = None
    if status is AnalysisStatus.COMPLETED:
        built = build_results(record.audio_sha256, record.duration_seconds or 0.0)
        analysis = {"sentiment": built.sentiment, "summary": built.summary}
    return {
        "analysis_id": record.id,
        "status": status.value,
        "analysis": analysis,
        "error": record.fail_reason if status is AnalysisStatus.FAILED else None,
    }


def webhook_event(record: AnalysisRecord, now: float) -> dict[str, Any]:
    """The body POSTed to ``webhook_url`` when processing has ended (the current generation)."""
    data = analysis_response(record, now)
    event = "analysis.failed" if data["status"] == AnalysisStatus.FAILED.value else "analysis.completed"
    return {"event": event, "data": data}


def control_view(record: AnalysisRecord, now: float) -> dict[str, Any]:
    """What ``GET /_emulator/analyses`` shows: the account and emulator internals, then the analysis."""
    return {
        "account": record.account,
        "id": record.id,
        "seq": record.seq,
        "status": record.status(now).value,
        "created": record.created,
        "ready_at": record.ready_at,
        "started": record.created if record.started is None else record.started,
        "source": record.source,
        "submit_path": record.submit_path,
        "idempotency_key": record.idempotency_key,
        "webhook_state": record.webhook_state,
        "audio_sha256": record.audio_sha256,
        "analysis": analysis_response(record, now),
    }
