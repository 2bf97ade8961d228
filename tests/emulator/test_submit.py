"""Submissions on both paths, by upload and by URL: shapes, validation, format and size checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from callcov_provider.formats import MIB
from callcov_provider.models import Analysis
from callcov_provider.testing.audio import wav_bytes, write_sized_wav, write_undecodable_wav
from callcov_provider.testing.server import EmulatorHandle

from .conftest import Api


def test_upload_returns_201_with_a_full_analysis_response(api: Api, wav: Callable[..., Path]) -> None:
    response = api.upload(
        wav(seconds=2.5),
        agent_id="agent_john_doe",
        contact_id="customer_12345",
        call_direction="inbound",
        call_timestamp="2024-01-15T10:30:00Z",
        metadata='{"campaign": "spring"}',
    )
    assert response.status_code == 201
    body = response.json()
    analysis = Analysis.model_validate(body)
    assert body["object"] == "analysis"
    assert body["livemode"] is False
    assert isinstance(body["created"], int)
    assert body["call"]["agent_id"] == "agent_john_doe"
    assert body["call"]["call_direction"] == "inbound"
    assert body["call"]["call_timestamp"] == "2024-01-15T10:30:00Z"
    assert body["audio"]["format"] == "wav"
    assert body["audio"]["size_bytes"] == body["audio"]["file_size"] == 44 + 2 * 40000
    assert body["metadata"]["custom"] == {"campaign": "spring"}
    assert body["metadata"]["version"] == "1.0.0"
    # Processing is 0 s in the test emulator, so the answer is already complete.
    assert analysis.status.value == "completed"
    assert body["call"]["duration_seconds"] == 2.5
    assert body["call"]["duration_ms"] == 2500


def test_legacy_path_answers_page_000_shape(api: Api, wav: Callable[..., Path], emu: EmulatorHandle) -> None:
    emu.control.set_processing(seconds=30)
    response = api.upload(wav(), endpoint="/calls/analyze", webhook_url="http://127.0.0.1:9/hook")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"analysis_id", "status", "created_at", "estimated_completion", "webhook_url"}
    assert body["status"] == "processing"
    assert body["created_at"].endswith("Z")
    assert body["estimated_completion"] > body["created_at"]
    assert body["webhook_url"] == "http://127.0.0.1:9/hook"
    assert Analysis.model_validate(body).id == body["analysis_id"]


@pytest.mark.parametrize("name", ["call.mp3", "call.m4a", "call.flac", "call.ogg", "call.wav"])
def test_every_documented_format_is_accepted(api: Api, audio: Callable[..., Path], name: str) -> None:
    response = api.upload(audio(name, seconds=4.0))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["audio"]["format"] == name.rsplit(".", 1)[1]
    assert body["status"] == "completed"
    # WAV and FLAC durations are read from the header; the others are estimated from the size.
    duration = body["audio"]["duration_seconds"]
    if name.endswith((".wav", ".flac")):
        assert duration == 4.0
    else:
        assert 3.0 < duration < 5.0


def test_json_url_submission_on_both_paths(api: Api, emu: EmulatorHandle) -> None:
    url = f"{emu.root_url}/_emulator/audio/call-001.wav?seconds=2"
    first = api.submit_url(url, webhook_url="http://127.0.0.1:9/webhook")
    assert first.status_code == 201
    assert first.json()["audio"]["duration_seconds"] == 2.0
    second = api.submit_url(url, endpoint="/calls/analyze")
    assert second.status_code == 201
    assert "analysis_id" in second.json()


def test_wav_extension_with_non_riff_bytes_is_invalid_file_format(api: Api, tmp_path: Path) -> None:
    fake = tmp_path / "fake.wav"
    fake.write_bytes(b"this is not audio at all, just text" * 10)
    response = api.upload(fake)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_file_format"
    assert "WAV, MP3, M4A, FLAC, or OGG" in response.json()["error"]["message"]


def test_extension_and_content_must_agree(api: Api, tmp_path: Path) -> None:
    mislabelled = tmp_path / "call.mp3"
    mislabelled.write_bytes(wav_bytes(1.0))
    response = api.upload(mislabelled)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_file_format"
    assert "WAV" in response.json()["error"]["message"]


def test_unknown_extension_is_invalid_file_format(api: Api, tmp_path: Path) -> None:
    aac = tmp_path / "call.aac"
    aac.write_bytes(wav_bytes(1.0))
    response = api.upload(aac)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid_file_format",
            "message": "Audio file must be in WAV, MP3, M4A, FLAC, or OGG format",
        }
    }


def test_oversized_mp3_is_413_file_too_large(api: Api, tmp_path: Path) -> None:
    big = tmp_path / "big.mp3"
    with big.open("wb") as handle:
        handle.write(b"ID3\x04\x00\x00\x00\x00\x00\x00")
        handle.truncate(50 * MIB + 1)
    response = api.upload(big)
    assert response.status_code == 413
    assert response.json() == {
        "error": {"code": "file_too_large", "message": "Audio file exceeds maximum size of 50 MB"}
    }
    assert api.emu.control.analyses() == []


def test_wav_one_byte_over_its_limit_is_413(api: Api, tmp_path: Path) -> None:
    # (A WAV of exactly 100 MiB is accepted: see test_cli's memory test.)
    over = write_sized_wav(tmp_path / "over.wav", 100 * MIB + 1)
    response = api.upload(over)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "Audio file exceeds maximum size of 100 MB"


def test_missing_fields_get_a_fastapi_detail_list(api: Api, wav: Callable[..., Path]) -> None:
    response = api.session.post(
        api.base + "/analysis/", headers=api.auth(), json={"agent_id": "agent_john_doe", "contact_id": "c"}
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail == [
        {
            "type": "missing",
            "loc": ["body", "audio_url"],
            "msg": "Field required",
            "input": {"agent_id": "agent_john_doe", "contact_id": "c"},
        }
    ]
    response = api.upload(wav(), agent_id="", contact_id=None, call_direction="sideways", metadata="{oops")
    assert response.status_code == 400
    locs = {tuple(item["loc"]): item["type"] for item in response.json()["detail"]}
    assert locs == {
        ("body", "agent_id"): "string_too_short",
        ("body", "contact_id"): "missing",
        ("body", "call_direction"): "enum",
        ("body", "metadata"): "json_invalid",
    }


def test_multipart_without_a_file_reports_audio_file_missing(api: Api) -> None:
    response = api.session.post(
        api.base + "/analysis/",
        headers=api.auth(),
        files={"agent_id": (None, "a"), "contact_id": (None, "c")},
    )
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body", "audio_file"]


def test_bad_timestamp_and_webhook_are_refused(api: Api, wav: Callable[..., Path]) -> None:
    response = api.upload(wav(), call_timestamp="yesterday", webhook_url="ftp://example.com/x")
    assert response.status_code == 400
    kinds = sorted(item["loc"][1] for item in response.json()["detail"])
    assert kinds == ["call_timestamp", "webhook_url"]


def test_invalid_json_and_unsupported_content_type(api: Api) -> None:
    response = api.session.post(
        api.base + "/analysis/", headers={**api.auth(), "Content-Type": "application/json"}, data=b"{not json"
    )
    assert response.status_code == 400
    assert response.json()["detail"][0]["type"] == "json_invalid"
    response = api.session.post(
        api.base + "/analysis/", headers={**api.auth(), "Content-Type": "text/plain"}, data=b"hello"
    )
    assert response.status_code == 415


def test_undecodable_and_silent_audio_fail_with_a_reason(
    api: Api, wav: Callable[..., Path], tmp_path: Path
) -> None:
    silent = api.upload(wav("silence.wav", silent=True)).json()
    assert silent["status"] == "failed"
    assert "silence" in silent["metadata"]["error_message"]
    assert silent["error_message"] == silent["metadata"]["error_message"]
    assert silent["results"] is None
    assert silent["transcript"] is None
    broken = api.upload(write_undecodable_wav(tmp_path / "broken.wav")).json()
    assert broken["status"] == "failed"
    assert broken["metadata"]["error_message"].startswith("Audio could not be decoded")
    legacy = api.get(f"/calls/analyze/{broken['id']}").json()
    assert legacy == {
        "analysis_id": broken["id"],
        "status": "failed",
        "analysis": None,
        "error": broken["metadata"]["error_message"],
    }


def test_audio_url_host_must_be_allowlisted(api: Api) -> None:
    response = api.submit_url("https://your-storage.com/recordings/call_12345.wav?token=SECRET123")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "audio_url_not_allowed"
    assert "SECRET123" not in response.text


def test_audio_url_must_return_audio_content_type(api: Api, emu: EmulatorHandle) -> None:
    url = f"{emu.root_url}/_emulator/audio/call.wav?content_type=text/html&sig=SECRET456"
    response = api.submit_url(url)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_content_type"
    assert "SECRET456" not in response.text
    missing = api.submit_url(f"{emu.root_url}/_emulator/audio/nothing.xyz")
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "audio_url_unreachable"


def test_audio_url_query_string_is_never_logged_or_echoed(api: Api, emu: EmulatorHandle) -> None:
    url = f"{emu.root_url}/_emulator/audio/call.wav?X-Amz-Signature=SIGTOKEN8d1e77&seconds=1"
    body = api.submit_url(url).json()
    assert body["audio"]["source_url"].endswith("/_emulator/audio/call.wav?<redacted>")
    log = emu.control.requests(method="POST")
    assert log[-1]["audio_url"].endswith("?<redacted>")
    everything = str(log) + str(emu.control.analyses()) + str(api.get(f"/analysis/{body['id']}").json())
    assert "SIGTOKEN8d1e77" not in everything
