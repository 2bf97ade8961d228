"""The ``/_emulator`` control and audit API, seeding, reset and SQLite persistence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import requests

from callcov_provider.models import AnalysisList
from callcov_provider.testing.server import EmulatorHandle, run_emulator

from .conftest import KEY_2, Api


def test_request_log_records_what_was_asked_and_answered(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    created = api.upload(wav(), headers={"Idempotency-Key": "log-1"}).json()
    api.get(f"/analysis/{created['id']}", key=KEY_2, mode="bearer")
    api.get("/analysis/", status_filter="completed", limit=5)
    first, second, third = emu.control.requests()
    assert first["method"] == "POST"
    assert first["path"] == "/api/v1/analysis/"
    assert (first["status"], first["auth_mode"], first["account"]) == (201, "api_key", "acct_1")
    assert first["idempotency_key"] == "log-1"
    assert first["analysis_id"] == created["id"]
    assert first["time_iso"].endswith("Z")
    assert first["duration_ms"] > 0
    assert first["fault"] is None
    assert (second["status"], second["auth_mode"], second["account"]) == (404, "bearer", "acct_2")
    assert third["query"] == "status_filter=completed&limit=5"
    assert [e["seq"] for e in emu.control.requests(since=first["seq"])] == [second["seq"], third["seq"]]
    assert len(emu.control.requests(account="acct_2")) == 1
    emu.control.clear_requests()
    assert emu.control.requests() == []


def test_control_calls_are_not_logged_and_need_no_key(emu: EmulatorHandle) -> None:
    emu.control.health()
    emu.control.analyses()
    assert emu.control.requests() == []
    assert requests.get(emu.root_url + "/_emulator/config", timeout=10).status_code == 200


def test_config_shows_accounts_never_keys(emu: EmulatorHandle) -> None:
    config = emu.control.config()
    assert config["accounts"] == ["acct_1", "acct_2"]
    assert "api_keys" not in config
    assert emu.api_key not in str(config)


def test_settings_can_be_merged_replaced_and_validated(emu: EmulatorHandle) -> None:
    assert emu.control.set_processing(seconds="1-5")["min_seconds"] == 1.0
    assert emu.control.set_processing(failure_rate=0.25) == {
        "min_seconds": 1.0,
        "max_seconds": 5.0,
        "failure_rate": 0.25,
    }
    assert emu.control.set_rate_limits(requests_per_minute=100, submissions_per_minute=20) == {
        "requests_per_minute": 100,
        "submissions_per_minute": 20,
        "mode": "friendly",
        "plan": None,
        "concurrent_processing": None,
        "reset_format": "epoch",
    }
    faults = emu.control.set_faults(error_rates={503: 0.1}, latency=0.05)
    assert faults["error_rates"] == {"503": 0.1}
    assert faults["latency_max"] == 0.05
    faults = emu.control.set_faults(replace=True, drop_rate=0.5)
    assert faults["error_rates"] == {}
    assert faults["drop_rate"] == 0.5
    with pytest.raises(httpx.HTTPStatusError):
        emu.control.set_processing(failure_rate=1.5)
    with pytest.raises(httpx.HTTPStatusError):
        emu.control.advance(-1)
    emu.control.reset()
    config = emu.control.config()
    assert config["processing"]["max_seconds"] == 0.0
    assert config["faults"]["drop_rate"] == 0.0
    assert config["rate_limits"] == {
        "requests_per_minute": None,
        "submissions_per_minute": None,
        "mode": "friendly",
        "plan": None,
        "concurrent_processing": None,
        "reset_format": "epoch",
    }


def test_reset_forgets_analyses_logs_and_clock(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    created = api.upload(wav()).json()
    emu.control.advance(3600)
    emu.control.reset()
    assert emu.control.analyses() == []
    assert emu.control.requests() == []
    assert emu.control.config()["clock"]["offset"] == 0.0
    assert api.get(f"/analysis/{created['id']}").status_code == 404
    # Ids are never reused, even after a reset.
    assert api.upload(wav()).json()["id"] != created["id"]


def test_seed_ten_thousand_and_read_them_all_in_pages(api: Api, emu: EmulatorHandle) -> None:
    result = emu.control.seed(
        10_000,
        created_from=1_700_000_000,
        created_to=1_700_086_400,
        statuses=["completed", "completed", "failed", "processing"],
        agent_ids=["agent_001", "agent_002", "agent_003"],
    )
    assert result["created"] == 10_000
    emu.control.seed(5, account="acct_2")
    seen: list[str] = []
    created: list[int] = []
    offset = 0
    while True:
        page = AnalysisList.model_validate(api.get("/analysis/", limit=1000, offset=offset).json())
        seen.extend(a.id for a in page.data)
        created.extend(a.created or 0 for a in page.data)
        assert page.total == 10_000
        if not page.has_more:
            break
        offset += 1000
    assert len(seen) == len(set(seen)) == 10_000
    assert created == sorted(created, reverse=True)
    assert seen[0] == result["last_id"]
    assert seen[-1] == result["first_id"]
    counts = {
        s: api.get("/analysis/", status_filter=s, limit=1).json()["total"]
        for s in ("completed", "failed", "processing")
    }
    assert counts == {"completed": 5000, "failed": 2500, "processing": 2500}
    assert api.get("/analysis/", agent_id="agent_002", limit=1).json()["total"] == 3333
    failed = api.get("/analysis/", status_filter="failed", limit=1).json()["data"][0]
    assert failed["metadata"]["error_message"]


def test_seed_refuses_an_unknown_account(emu: EmulatorHandle) -> None:
    with pytest.raises(httpx.HTTPStatusError) as err:
        emu.control.seed(1, account="acct_9")
    assert err.value.response.status_code == 422


def test_sqlite_file_keeps_analyses_keys_and_clock_across_restarts(
    tmp_path: Path, wav: Callable[..., Path]
) -> None:
    db = str(tmp_path / "callcov.sqlite")
    headers = {"X-API-Key": "k", "Idempotency-Key": "persist-1"}
    path = wav()

    def upload(emu: EmulatorHandle) -> requests.Response:
        with path.open("rb") as handle:
            return requests.post(
                emu.base_url + "/analysis/",
                headers=headers,
                files={"audio_file": ("call.wav", handle)},
                data={"agent_id": "a", "contact_id": "c"},
                timeout=30,
            )

    with run_emulator(("k",), processing_seconds=600, db=db) as emu:
        first = upload(emu).json()
        assert first["status"] == "processing"
        emu.control.advance(601)
        assert emu.control.analysis(first["id"])["status"] == "completed"
    with run_emulator(("k",), processing_seconds=600, db=db) as emu:
        got = requests.get(f"{emu.base_url}/analysis/{first['id']}", headers={"X-API-Key": "k"}, timeout=10)
        assert got.status_code == 200
        assert got.json()["status"] == "completed"
        replay = upload(emu)
        assert replay.status_code == 201
        assert replay.json()["id"] == first["id"]
        fresh = requests.post(
            emu.base_url + "/analysis/",
            headers={"X-API-Key": "k"},
            json={"audio_url": f"{emu.root_url}/_emulator/audio/x.wav", "agent_id": "a", "contact_id": "c"},
            timeout=30,
        ).json()
        assert fresh["id"] != first["id"]
        assert len(emu.control.analyses()) == 2


def test_audio_endpoint_serves_every_format(emu: EmulatorHandle) -> None:
    for name, content_type in (("a.wav", "audio/wav"), ("a.mp3", "audio/mpeg"), ("a.flac", "audio/flac")):
        response = requests.get(f"{emu.root_url}/_emulator/audio/{name}?seconds=1&token=x", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
