"""
6. Bad input table: every bad argument, connection and server answer gives a typed error that names the
problem; whatever a local check can catch never reaches the emulator.

Local cases run against a live emulator (in a thread) and assert its request log stays empty. Server
cases use the emulator where it can produce the answer (401, 404, read timeout) and a scripted server
(requests-mock) for the shapes it never sends (403, 413, 422, an HTML 502, truncated JSON, no id).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests_mock as requests_mock_module

from callcov_provider.exceptions import (
    APITimeoutError,
    AuthenticationError,
    CallCovError,
    ConnectionConfigError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    ServerError,
    UnexpectedResponseError,
)
from callcov_provider.formats import AUDIO_FORMATS
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.operators.list_analyses import ListAnalysesOperator
from callcov_provider.testing.audio import write_wav
from callcov_provider.testing.server import EmulatorHandle, run_emulator

pytestmark = pytest.mark.integration

KEY = "sk_test_badinput_7f3e"
SCRIPTED = "http://scripted.callcov.test/api/v1"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(api_keys=(KEY,), processing_seconds=0.0) as emu:
        yield emu


@pytest.fixture
def env(emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A reset emulator behind ``callcov_default``, and a folder of inputs."""
    emulator.control.reset()
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emulator.connection_json(max_retries=0))
    monkeypatch.setenv(
        "AIRFLOW_CONN_CALLCOV_NOKEY", json.dumps({"conn_type": "callcov", "host": emulator.base_url})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CALLCOV_BADHOST",
        json.dumps({"conn_type": "callcov", "host": "ftp://exa mple/api", "password": KEY}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CALLCOV_SCRIPTED",
        json.dumps({"conn_type": "callcov", "host": SCRIPTED, "password": KEY, "extra": {"max_retries": 0}}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CALLCOV_WRONGKEY",
        emulator.connection_json(api_key="sk_test_not_a_key", max_retries=0),
    )
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_SLOW", emulator.connection_json(max_retries=0, read_timeout=0.3))
    return tmp_path


def wav(folder: Path) -> str:
    return str(write_wav(folder / "ok.wav", 0.25))


def submit(folder: Path, conn_id: str = "callcov_default", **overrides: Any) -> Any:
    args: dict[str, Any] = {"agent_id": "agent_1", "contact_id": "customer_1", "audio_file": wav(folder)}
    args.update(overrides)
    args = {k: v for k, v in args.items() if v is not _DROP}
    return CallCovHook(conn_id).submit_analysis(**args)


_DROP = object()


def sparse(folder: Path, name: str, size: int) -> str:
    path = folder / name
    with path.open("wb") as handle:
        handle.truncate(size)
    return str(path)


def oversize(extension: str) -> Callable[[Path], Any]:
    fmt = AUDIO_FORMATS[extension]

    def case(folder: Path) -> Any:
        return submit(folder, audio_file=sparse(folder, f"big{extension}", fmt.max_bytes + 1))

    return case


def listing(**kwargs: Any) -> Callable[[Path], Any]:
    return lambda folder: CallCovHook().list_analyses(**kwargs)


def list_operator(**kwargs: Any) -> Callable[[Path], Any]:
    return lambda folder: ListAnalysesOperator(task_id="list", **kwargs).execute({})  # type: ignore[arg-type]


class Unserialisable:
    pass


@dataclass(frozen=True)
class Local:
    """A bad input a local check refuses: the error, words its message must contain, no request sent."""

    run: Callable[[Path], Any]
    error: type[BaseException]
    words: tuple[str, ...]


LOCAL_CASES: dict[str, Local] = {
    "missing file": Local(
        lambda f: submit(f, audio_file=str(f / "nope.wav")),
        InvalidRequestError,
        ("audio_file", "does not exist"),
    ),
    "directory": Local(
        lambda f: submit(f, audio_file=str(f)), InvalidRequestError, ("audio_file", "not a regular file")
    ),
    "empty file": Local(
        lambda f: submit(f, audio_file=sparse(f, "empty.wav", 0)),
        InvalidRequestError,
        ("audio_file", "empty"),
    ),
    "unsupported extension": Local(
        lambda f: submit(f, audio_file=sparse(f, "call.aac", 64)),
        InvalidRequestError,
        ("unsupported extension", ".aac"),
    ),
    "no extension": Local(
        lambda f: submit(f, audio_file=sparse(f, "call", 64)), InvalidRequestError, ("unsupported extension",)
    ),
    **{
        f"oversize {ext}": Local(oversize(ext), PayloadTooLargeError, ("audio_file", ext.lstrip(".").upper()))
        for ext in AUDIO_FORMATS
    },
    "both file and url": Local(
        lambda f: submit(f, audio_url="https://example.test/a.wav"), InvalidRequestError, ("exactly one",)
    ),
    "neither file nor url": Local(
        lambda f: submit(f, audio_file=None), InvalidRequestError, ("exactly one",)
    ),
    "non-http url": Local(
        lambda f: submit(f, audio_file=None, audio_url="ftp://example.test/a.wav"),
        InvalidRequestError,
        ("audio_url", "http"),
    ),
    "url without host": Local(
        lambda f: submit(f, audio_file=None, audio_url="https:///a.wav"), InvalidRequestError, ("audio_url",)
    ),
    "bad call_direction": Local(
        lambda f: submit(f, call_direction="sideways"), InvalidRequestError, ("call_direction", "sideways")
    ),
    "bad call_timestamp": Local(
        lambda f: submit(f, call_timestamp="yesterday noon"),
        InvalidRequestError,
        ("call_timestamp", "ISO 8601"),
    ),
    "metadata not serialisable": Local(
        lambda f: submit(f, metadata={"when": Unserialisable()}), InvalidRequestError, ("metadata", "JSON")
    ),
    "metadata not a mapping": Local(
        lambda f: submit(f, metadata=["a", "b"]), InvalidRequestError, ("metadata", "mapping")
    ),
    "empty agent_id": Local(lambda f: submit(f, agent_id="  "), InvalidRequestError, ("agent_id",)),
    "empty contact_id": Local(lambda f: submit(f, contact_id=""), InvalidRequestError, ("contact_id",)),
    "empty analysis id": Local(
        lambda f: CallCovHook().get_analysis(""), InvalidRequestError, ("analysis_id",)
    ),
    "non-http webhook_url": Local(
        lambda f: submit(f, webhook_url="mailto:ops@example.test"), InvalidRequestError, ("webhook_url",)
    ),
    "idempotency key too long": Local(
        lambda f: submit(f, idempotency_key="k" * 256), InvalidRequestError, ("idempotency_key", "255")
    ),
    "limit 0": Local(listing(limit=0), InvalidRequestError, ("limit", "between 1 and 1000")),
    "limit 1001": Local(listing(limit=1001), InvalidRequestError, ("limit", "1001")),
    "negative offset": Local(listing(offset=-1), InvalidRequestError, ("offset", "at least 0")),
    "unknown status_filter": Local(
        listing(status_filter="done"), InvalidRequestError, ("status_filter", "done")
    ),
    "created_after after created_before": Local(
        list_operator(created_after="2026-02-02T00:00:00Z", created_before="2026-02-01T00:00:00Z"),
        InvalidRequestError,
        ("created_after", "created_before"),
    ),
    "operator limit 0": Local(list_operator(limit=0), InvalidRequestError, ("limit",)),
    "unknown connection id": Local(
        lambda f: submit(f, conn_id="callcov_does_not_exist"), Exception, ("callcov_does_not_exist",)
    ),
    "connection without a key": Local(
        lambda f: submit(f, conn_id="callcov_nokey"), ConnectionConfigError, ("no API key", "password")
    ),
    "malformed host": Local(lambda f: submit(f, conn_id="callcov_badhost"), ConnectionConfigError, ("host",)),
}


@pytest.mark.parametrize("name", list(LOCAL_CASES))
def test_local_check_refuses_before_sending(name: str, env: Path, emulator: EmulatorHandle) -> None:
    case = LOCAL_CASES[name]
    with pytest.raises(case.error) as caught:
        case.run(env)
    text = str(caught.value)
    for word in case.words:
        assert word.lower() in text.lower(), (word, text)
    if isinstance(caught.value, CallCovError):
        assert KEY not in repr(caught.value)
    assert KEY not in text
    assert emulator.control.requests() == []


def test_unknown_connection_is_airflows_not_found(env: Path) -> None:
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    with pytest.raises(AirflowNotFoundException, match="callcov_nope"):
        CallCovHook("callcov_nope").get_analysis("abc")


# -- answers from a server ------------------------------------------------------------------------------


def test_wrong_key_is_401_authentication_error(env: Path, emulator: EmulatorHandle) -> None:
    with pytest.raises(AuthenticationError) as caught:
        CallCovHook("callcov_wrongkey").get_analysis("anything")
    assert caught.value.status_code == 401
    assert "sk_test_not_a_key" not in str(caught.value)
    assert len(emulator.control.requests()) == 1  # refused, not retried


def test_unknown_analysis_is_404_not_found(env: Path, emulator: EmulatorHandle) -> None:
    with pytest.raises(NotFoundError) as caught:
        CallCovHook().get_analysis("an_unknown_id")
    assert caught.value.status_code == 404
    assert len(emulator.control.requests()) == 1


def test_read_timeout_is_api_timeout_error(env: Path, emulator: EmulatorHandle) -> None:
    emulator.control.set_faults(latency=1.5)
    with pytest.raises(APITimeoutError) as caught:
        CallCovHook("callcov_slow").get_analysis("slow_one")
    assert "read timeout" in str(caught.value)
    assert "GET" in str(caught.value)


def _scripted(status: int, *, text: str = "", json_body: Any = None, headers: dict[str, str] | None = None):
    def case(mock: requests_mock_module.Mocker, folder: Path) -> Any:
        kwargs: dict[str, Any] = {"status_code": status, "headers": headers or {}}
        if json_body is not None:
            kwargs["json"] = json_body
        else:
            kwargs["text"] = text
        mock.register_uri(requests_mock_module.ANY, requests_mock_module.ANY, **kwargs)
        return submit(folder, conn_id="callcov_scripted")

    return case


HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"

SERVER_CASES: dict[str, tuple[Any, type[BaseException], tuple[str, ...]]] = {
    "403 forbidden": (
        _scripted(403, json_body={"detail": "This key may not submit analyses"}),
        AuthenticationError,
        ("403", "may not submit"),
    ),
    "413 too large": (
        _scripted(413, json_body={"error": {"code": "file_too_large", "message": "File exceeds 100MB"}}),
        PayloadTooLargeError,
        ("413", "file_too_large", "100MB"),
    ),
    "422 validation": (
        _scripted(
            422,
            json_body={"detail": [{"loc": ["body", "agent_id"], "msg": "field required", "type": "missing"}]},
        ),
        InvalidRequestError,
        ("422", "agent_id", "field required"),
    ),
    "html 502 page": (
        _scripted(502, text=HTML_502, headers={"Content-Type": "text/html"}),
        ServerError,
        ("502", "non-JSON", "text/html", "Bad Gateway"),
    ),
    "truncated json": (
        _scripted(
            201,
            text='{"id": "an_1", "object": "analysis", "sta',
            headers={"Content-Type": "application/json"},
        ),
        UnexpectedResponseError,
        ("submit", "not valid JSON"),
    ),
    "json without id": (
        _scripted(201, json_body={"object": "analysis", "status": "processing", "created": 1700000000}),
        UnexpectedResponseError,
        ("submit", "id"),
    ),
}


@pytest.mark.parametrize("name", list(SERVER_CASES))
def test_server_answer_becomes_typed_error(name: str, env: Path) -> None:
    run, error, words = SERVER_CASES[name]
    with requests_mock_module.Mocker() as mock, pytest.raises(error) as caught:
        run(mock, env)
    assert type(caught.value) is error
    text = str(caught.value)
    for word in words:
        assert word.lower() in text.lower(), (word, text)
    assert KEY not in text
    assert mock.call_count == 1  # none of these is retried
