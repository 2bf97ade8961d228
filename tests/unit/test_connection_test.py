"""The hook's ``test_connection`` (the UI's Test button and ``airflow connections test``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests_mock as rm

from callcov_provider.hooks.callcov import CallCovHook
from tests.unit.conftest import API, KEY, page


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback server that accepts connections and never answers; yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(conn)  # held open, never read from or written to

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        server.close()


def test_a_host_that_never_answers_fails_within_ten_seconds(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook], silent_server: int
) -> None:
    # The connection's own timeouts are long (as for big uploads): the test does not wait for them.
    connection(host=f"http://127.0.0.1:{silent_server}", connect_timeout=60, read_timeout=300)
    hook = make_hook()
    started = time.monotonic()
    ok, message = hook.test_connection()
    elapsed = time.monotonic() - started
    assert ok is False
    assert elapsed < 10, elapsed
    assert "timeout" in message.lower()
    assert "connection 'callcov_default'" in message
    assert message.startswith("Cannot reach the CallCov API")
    # The hook's own settings are unchanged for its later calls.
    assert hook.settings.read_timeout == 300


def test_a_404_says_the_base_url_path_looks_wrong(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook]
) -> None:
    connection(host="https://api.callcov.test/v1")
    with rm.Mocker() as mock:
        mock.get("https://api.callcov.test/v1/analysis/", status_code=404, json={"detail": "Not Found"})
        ok, message = make_hook().test_connection()
    assert ok is False
    assert "404" in message
    assert message.startswith("The API base URL's path looks wrong (connection 'callcov_default')")
    assert "https://api.callcov.test/v1/analysis/" in message


def test_a_configuration_problem_is_not_called_an_api_error(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook]
) -> None:
    connection(read_timeout="soon")
    with rm.Mocker() as mock:
        ok, message = make_hook().test_connection()
        assert mock.request_history == []
    assert ok is False
    assert "API error" not in message
    assert message.startswith("Connection 'callcov_default' cannot be used as configured:")
    assert "read_timeout" in message


def test_a_host_without_a_scheme_is_https(
    connection: Callable[..., None], make_hook: Callable[..., CallCovHook]
) -> None:
    connection(host="api.callcov.test")
    with rm.Mocker() as mock:
        mock.get("https://api.callcov.test/api/v1/analysis/", json=page([], has_more=False))
        ok, message = make_hook().test_connection()
    assert ok is True
    assert (
        message
        == "Connected to the CallCov API at https://api.callcov.test/api/v1 (connection 'callcov_default')"
    )


def test_the_ui_s_temporary_connection_id_is_not_named(
    monkeypatch: pytest.MonkeyPatch, connection: Callable[..., None], make_hook: Callable[..., CallCovHook]
) -> None:
    # Airflow's Test button puts the form in the environment under a random 8-character id.
    connection(conn_id="aB3dE5gH", password="")
    ok, message = make_hook("aB3dE5gH").test_connection()
    assert ok is False
    assert "aB3dE5gH" not in message
    assert message.startswith("This connection cannot be used as configured: the connection has no API key")


def test_an_unknown_connection_id_is_named(make_hook: Callable[..., CallCovHook]) -> None:
    ok, message = make_hook("no_such_callcov_conn").test_connection()
    assert ok is False
    assert "'no_such_callcov_conn'" in message
    assert "API error" not in message


def test_success_names_the_connection(hook: CallCovHook, requests_mock: Any) -> None:
    requests_mock.get(f"{API}/analysis/", json=page(["a1"], has_more=False))
    ok, message = hook.test_connection()
    assert ok is True
    assert KEY not in message
    assert message == f"Connected to the CallCov API at {API} (connection 'callcov_default')"
