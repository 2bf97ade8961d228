"""Every local check refuses bad input before a single byte is sent, with an error naming the field."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests_mock as rm

from callcov_provider.exceptions import (
    CallCovError,
    ConnectionConfigError,
    InvalidRequestError,
    PayloadTooLargeError,
)
from callcov_provider.formats import AUDIO_FORMATS
from callcov_provider.hooks import validation
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.models import CallDirection
from tests.unit.conftest import KEY, SIGNED_QUERY


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space."""
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "call.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    return path


def refused_locally(
    requests_mock: rm.Mocker, call: Callable[[], Any], cls: type[CallCovError], field: str
) -> CallCovError:
    with pytest.raises(cls) as info:
        call()
    assert info.value.field == field
    assert info.value.status_code is None
    assert requests_mock.request_history == [], "a request was sent"
    return info.value


def _submit(hook: CallCovHook, **kwargs: Any) -> Callable[[], Any]:
    arguments: dict[str, Any] = {"agent_id": "agent_1", "contact_id": "contact_1"}
    arguments.update(kwargs)
    return lambda: hook.submit_analysis(**arguments)


# -- audio file --------------------------------------------------------------------------------------------


def test_missing_file(hook: CallCovHook, requests_mock: rm.Mocker, tmp_path: Path) -> None:
    err = refused_locally(
        requests_mock, _submit(hook, audio_file=str(tmp_path / "nope.wav")), InvalidRequestError, "audio_file"
    )
    assert "does not exist" in err.message


def test_directory(hook: CallCovHook, requests_mock: rm.Mocker, tmp_path: Path) -> None:
    folder = tmp_path / "calls.wav"
    folder.mkdir()
    err = refused_locally(
        requests_mock, _submit(hook, audio_file=str(folder)), InvalidRequestError, "audio_file"
    )
    assert "not a regular file" in err.message


def test_empty_file(hook: CallCovHook, requests_mock: rm.Mocker, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.touch()
    err = refused_locally(
        requests_mock, _submit(hook, audio_file=str(empty)), InvalidRequestError, "audio_file"
    )
    assert "is empty" in err.message


@pytest.mark.parametrize("name", ["call.aac", "call.wav.txt", "call", "call.WMA"])
def test_unsupported_extension(
    hook: CallCovHook, requests_mock: rm.Mocker, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b"data")
    err = refused_locally(
        requests_mock, _submit(hook, audio_file=str(path)), InvalidRequestError, "audio_file"
    )
    assert err.code == "invalid_file_format"
    assert "supported: .flac, .m4a, .mp3, .ogg, .wav" in err.message


def test_unreadable_path(hook: CallCovHook, requests_mock: rm.Mocker, tmp_path: Path) -> None:
    looped = tmp_path / "loop.wav"
    os.symlink(looped, looped)
    err = refused_locally(
        requests_mock, _submit(hook, audio_file=str(looped)), InvalidRequestError, "audio_file"
    )
    assert "cannot be read" in err.message


@pytest.mark.parametrize("extension", sorted(AUDIO_FORMATS))
def test_oversize_file_per_format(
    hook: CallCovHook, requests_mock: rm.Mocker, tmp_path: Path, extension: str
) -> None:
    limit = AUDIO_FORMATS[extension].max_bytes
    at_limit = sparse(tmp_path / f"ok{extension}", limit)
    assert validation.check_audio_file(at_limit).size == limit
    upper = extension.upper()
    too_big = sparse(tmp_path / f"big{upper}", limit + 1)
    err = refused_locally(
        requests_mock, _submit(hook, audio_file=str(too_big)), PayloadTooLargeError, "audio_file"
    )
    assert err.code == "file_too_large"
    assert f"at most {limit // (1024 * 1024)} MB" in err.message


def test_a_good_file_is_described(wav: Path) -> None:
    checked = validation.check_audio_file(wav)
    assert checked.path == wav
    assert checked.audio_format.name == "wav"
    assert checked.size == 12


# -- audio source ------------------------------------------------------------------------------------------


def test_both_audio_file_and_audio_url(hook: CallCovHook, requests_mock: rm.Mocker, wav: Path) -> None:
    err = refused_locally(
        requests_mock,
        _submit(hook, audio_file=str(wav), audio_url="https://example.com/x.wav"),
        InvalidRequestError,
        "audio_file",
    )
    assert "exactly one of audio_file or audio_url" in err.message


def test_neither_audio_file_nor_audio_url(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    refused_locally(requests_mock, _submit(hook), InvalidRequestError, "audio_url")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://files.example.com/x.wav",
        "file:///data/x.wav",
        "example.com/x.wav",
        "https://",
        "",
        "  ",
        "http://[::1/x.wav",
        42,
        f"s3://bucket/x.wav?{SIGNED_QUERY}",
    ],
)
def test_audio_url_must_be_http(hook: CallCovHook, requests_mock: rm.Mocker, url: Any) -> None:
    err = refused_locally(requests_mock, _submit(hook, audio_url=url), InvalidRequestError, "audio_url")
    assert "SIGTOKEN" not in str(err)


# -- other fields ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"agent_id": ""}, "agent_id"),
        ({"agent_id": "   "}, "agent_id"),
        ({"agent_id": None}, "agent_id"),
        ({"agent_id": 17}, "agent_id"),
        ({"contact_id": ""}, "contact_id"),
        ({"call_direction": "sideways"}, "call_direction"),
        ({"call_direction": ""}, "call_direction"),
        ({"call_timestamp": "yesterday"}, "call_timestamp"),
        ({"call_timestamp": "2024-13-45T10:00:00Z"}, "call_timestamp"),
        ({"call_timestamp": 1705334400}, "call_timestamp"),
        ({"metadata": {"tags": {"a", "b"}}}, "metadata"),
        ({"metadata": {"score": float("nan")}}, "metadata"),
        ({"metadata": {"when": object()}}, "metadata"),
        ({"metadata": ["not", "a", "mapping"]}, "metadata"),
        ({"webhook_url": "ftp://hooks.example.com"}, "webhook_url"),
        ({"webhook_url": "http://[::1"}, "webhook_url"),
        ({"webhook_url": "https://"}, "webhook_url"),
        ({"webhook_url": 5}, "webhook_url"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
    ],
)
def test_submit_fields_are_checked(
    hook: CallCovHook, requests_mock: rm.Mocker, kwargs: dict[str, Any], field: str
) -> None:
    refused_locally(
        requests_mock,
        _submit(hook, audio_url="https://example.com/x.wav", **kwargs),
        InvalidRequestError,
        field,
    )


def test_field_checks_run_before_the_file_is_touched(hook: CallCovHook, requests_mock: rm.Mocker) -> None:
    refused_locally(
        requests_mock,
        _submit(hook, agent_id="", audio_file="/no/such/file.wav"),
        InvalidRequestError,
        "agent_id",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("inbound", "inbound"), (" OUTBOUND ", "outbound"), (CallDirection.INBOUND, "inbound")],
)
def test_call_direction_accepted(value: Any, expected: str | None) -> None:
    assert validation.check_call_direction(value) == expected


def test_call_timestamp_accepted() -> None:
    from datetime import datetime, timedelta, timezone

    assert validation.check_call_timestamp(None) is None
    assert validation.check_call_timestamp(" 2024-01-15T10:30:00Z ") == "2024-01-15T10:30:00Z"
    aware = datetime(2024, 1, 15, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    assert validation.check_call_timestamp(aware) == "2024-01-15T10:30:00+02:00"


def test_webhook_url_and_key_accepted() -> None:
    assert validation.check_webhook_url(" https://hooks.example.com/cc ") == "https://hooks.example.com/cc"
    assert validation.check_idempotency_key("k" * 255) == "k" * 255
    assert validation.check_metadata(None) is None
    assert validation.check_metadata({"a": [1, "b", None]}) == {"a": [1, "b", None]}


# -- ids, list and iteration -------------------------------------------------------------------------------


@pytest.mark.parametrize("analysis_id", ["", "   ", None])
def test_empty_analysis_id(hook: CallCovHook, requests_mock: rm.Mocker, analysis_id: Any) -> None:
    refused_locally(requests_mock, lambda: hook.get_analysis(analysis_id), InvalidRequestError, "analysis_id")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status_filter": "done"}, "status_filter"),
        ({"status_filter": "Completed"}, "status_filter"),
        ({"agent_id": 5}, "agent_id"),
        ({"contact_id": ["c1"]}, "contact_id"),
        ({"search": b"x"}, "search"),
    ],
)
def test_list_parameters_are_checked(
    hook: CallCovHook, requests_mock: rm.Mocker, kwargs: dict[str, Any], field: str
) -> None:
    refused_locally(requests_mock, lambda: hook.list_analyses(**kwargs), InvalidRequestError, field)


def test_list_bounds_are_inclusive() -> None:
    assert validation.list_params(limit=1)["limit"] == 1
    assert validation.list_params(limit="1000", offset="5") == {"limit": 1000, "offset": 5}
    assert validation.list_params(status_filter="", agent_id="", search=None) == {"limit": 100, "offset": 0}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 1001}, "page_size"),
        ({"max_results": -1}, "max_results"),
        ({"status_filter": "pending"}, "status_filter"),
        ({"agent_id": 3}, "agent_id"),
    ],
)
def test_iteration_parameters_are_checked_when_called(
    hook: CallCovHook, requests_mock: rm.Mocker, kwargs: dict[str, Any], field: str
) -> None:
    # Refused by the call itself, not at the first next(): a generator would defer the check.
    refused_locally(requests_mock, lambda: hook.iter_analyses(**kwargs), InvalidRequestError, field)


# -- connection --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn", "field"),
    [
        ({"password": ""}, "password"),
        ({"password": None}, "password"),
        ({"host": "ftp://api.callcov.com"}, "host"),
        ({"host": "https://api.callcov.com:99999"}, "host"),
        ({"host": "http://exa mple.com"}, "host"),
        ({"host": f"https://user:{KEY}@api.callcov.com"}, "host"),
        ({"auth_type": "basic"}, "auth_type"),
        ({"submit_path": "/v2/analyze"}, "submit_path"),
        ({"read_timeout": "never"}, "read_timeout"),
    ],
)
def test_unusable_connection_is_refused_before_sending(
    connection: Callable[..., None],
    make_hook: Callable[..., CallCovHook],
    requests_mock: rm.Mocker,
    conn: dict[str, Any],
    field: str,
) -> None:
    connection(**conn)
    hook = make_hook()
    for call in (
        lambda: hook.get_analysis("a1"),
        lambda: hook.list_analyses(),
        lambda: hook.submit_analysis(agent_id="a", contact_id="c", audio_url="https://example.com/x.wav"),
    ):
        err = refused_locally(requests_mock, call, ConnectionConfigError, field)
        assert KEY not in str(err)
        assert KEY not in repr(err)
