"""The one emulator launcher: thread and subprocess variants, restarts on the same port, teardown by pid."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import requests

from callcov_provider.testing.server import EmulatorLauncher


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _health(root_url: str) -> dict[str, object]:
    response = requests.get(root_url + "/_emulator/health", timeout=10)
    response.raise_for_status()
    return dict(response.json())


def test_subprocess_restart_keeps_port_and_data_and_ends_the_process_group(tmp_path: Path) -> None:
    log = tmp_path / "emulator.log"
    key = "sk_test_launcher_secret"
    launcher = EmulatorLauncher(
        (key,),
        in_subprocess=True,
        log_path=log,
        access_log=True,
        log_level="info",
        db=str(tmp_path / "emu.sqlite"),
        quota_mode="documented",
        plan="free",
    )
    pids: list[int] = []
    try:
        first = launcher.start()
        assert first.pid is not None
        pids.append(first.pid)
        port = launcher.port
        assert port != 0
        assert launcher.handle.control.config()["effective_rate_limits"]["submissions_per_minute"] == 5
        launcher.handle.control.seed(count=3)
        second = launcher.restart()
        assert second.pid is not None
        pids.append(second.pid)
        assert second.pid != first.pid
        assert not _group_alive(first.pid)
        assert second.root_url == first.root_url
        assert launcher.starts == 2
        assert _health(second.root_url)["analyses"] == 3
        listed = requests.get(second.base_url + "/analysis/", headers={"X-API-Key": key}, timeout=10)
        assert listed.status_code == 200
        assert listed.headers["X-RateLimit-Limit"] == "100"
    finally:
        launcher.stop()
    assert not any(_group_alive(pid) for pid in pids)
    output = log.read_text()
    assert output.count("callcov-emulator ready: ") == 2
    assert "GET /api/v1/analysis/" in output  # the access log
    assert key not in output


def test_context_manager_stops_a_thread_emulator_even_on_error() -> None:
    before = {t.name for t in threading.enumerate()}
    launcher = EmulatorLauncher(("sk_a",), plan="starter")
    with pytest.raises(RuntimeError, match="boom"), launcher as emu:
        assert emu.pid is None
        assert emu.app is not None
        assert _health(emu.root_url)["status"] == "ok"
        root_url = emu.root_url
        raise RuntimeError("boom")
    assert not launcher.running
    assert "callcov-emulator" not in {t.name for t in threading.enumerate()} - before
    with pytest.raises(requests.ConnectionError):
        _health(root_url)
    launcher.stop()  # stopping twice is harmless


def test_a_subprocess_that_cannot_start_is_reported_and_reaped(tmp_path: Path) -> None:
    launcher = EmulatorLauncher(("sk_a",), in_subprocess=True, log_path=tmp_path / "log", host="203.0.113.1")
    with pytest.raises(RuntimeError, match="exited"):
        launcher.start()
    assert not launcher.running
