"""``run_emulator``, its handle and the pytest plugin's fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
import requests

from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.testing.server import EmulatorHandle, run_emulator


def test_run_emulator_yields_a_handle_and_leaves_no_thread_behind() -> None:
    before = set(threading.enumerate())
    with run_emulator(api_keys=("sk_a", "sk_b"), processing_seconds=0.0) as emu:
        assert emu.base_url == emu.root_url + "/api/v1"
        assert emu.root_url.startswith("http://127.0.0.1:")
        assert emu.api_key == "sk_a"
        assert emu.account_of("sk_b") == "acct_2"
        assert emu.pid is None
        assert emu.app is not None
        assert "sk_a" not in repr(emu)
        assert requests.get(emu.base_url + "/analysis/", headers={"X-API-Key": "sk_b"}, timeout=10).ok
        root = emu.root_url
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(root + "/_emulator/health", timeout=5)
    leftover = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert leftover == []


def test_in_subprocess_mode(tmp_path: object) -> None:
    with run_emulator(("sk_sub",), in_subprocess=True, processing_seconds="1-2") as emu:
        assert emu.pid is not None
        assert emu.app is None
        config = emu.control.config()
        assert config["processing"]["max_seconds"] == 2.0
        assert requests.get(emu.base_url + "/analysis/", headers={"X-API-Key": "sk_sub"}, timeout=10).ok


def test_unknown_option_is_refused() -> None:
    with pytest.raises(TypeError), run_emulator(no_such_option=1):
        pass


def test_connection_json_and_uri_round_trip_through_airflow(emu: EmulatorHandle) -> None:
    from airflow.models.connection import Connection

    as_json = json.loads(emu.connection_json("bearer", read_timeout=5))
    assert as_json == {
        "conn_type": "callcov",
        "host": emu.base_url,
        "password": emu.api_key,
        "extra": {"auth_type": "bearer", "read_timeout": 5},
    }
    conn = Connection(conn_id="x", uri=emu.connection_uri("bearer"))
    assert (conn.conn_type, conn.host, conn.password) == ("callcov", emu.base_url, emu.api_key)
    assert conn.extra_dejson == {"auth_type": "bearer"}


def test_connection_uri_works_for_the_hook(emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_URI", emu.connection_uri())
    hook = CallCovHook("callcov_uri")
    try:
        assert hook.test_connection()[0]
    finally:
        hook.close()


def test_callcov_connection_fixture(callcov_connection: str, callcov_emulator: EmulatorHandle) -> None:
    assert callcov_connection == "callcov_default"
    hook = CallCovHook(callcov_connection)
    try:
        ok, message = hook.test_connection()
        assert ok
        assert callcov_emulator.base_url in message
    finally:
        hook.close()
    assert callcov_emulator.control.requests()[0]["account"] == "acct_1"


def test_callcov_emulator_fixture_starts_each_test_clean(callcov_emulator: EmulatorHandle) -> None:
    assert callcov_emulator.control.analyses() == []
    assert callcov_emulator.control.requests() == []
    assert callcov_emulator.control.config()["processing"]["max_seconds"] == 0.0


def test_plugin_import_is_cheap() -> None:
    code = (
        "import sys, callcov_provider.testing.pytest_plugin, callcov_provider.testing;"
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
