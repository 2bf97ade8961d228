"""Fault injection: errors, 429 bursts, latency, dropped connections and lost responses."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import requests

from callcov_provider.testing.server import EmulatorHandle, run_emulator

from .conftest import Api


@pytest.mark.parametrize(
    ("status", "content_type", "marker"),
    [
        (500, "application/json", '"internal_error"'),
        (502, "text/html", "502 Bad Gateway"),
        (503, "application/json", '"service_unavailable"'),
        (504, "text/html", "504 Gateway Time-out"),
    ],
)
def test_injected_errors_are_answered_instead_of_handling(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path], status: int, content_type: str, marker: str
) -> None:
    emu.control.set_faults(next_errors=[status])
    response = api.upload(wav())
    assert response.status_code == status
    assert response.headers["content-type"].startswith(content_type)
    assert marker in response.text
    assert emu.control.analyses() == []
    assert emu.control.requests()[-1]["fault"] == f"status={status}"
    assert api.upload(wav()).status_code == 201


def test_error_probability_is_seeded_and_repeatable() -> None:
    def statuses() -> list[int]:
        with (
            run_emulator(("k",), faults=["503=0.3", "500=0.2"], seed=42) as emu,
            requests.Session() as session,
        ):
            return [
                session.get(emu.base_url + "/analysis/", headers={"X-API-Key": "k"}).status_code
                for _ in range(40)
            ]

    first = statuses()
    assert first == statuses()
    assert {200, 500, 503} == set(first)


def test_burst_of_429_then_normal_service(api: Api, emu: EmulatorHandle) -> None:
    emu.control.set_faults(burst_429=2, retry_after=3)
    answers = [api.get("/analysis/") for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"
    assert answers[0].json()["error"]["code"] == "rate_limit_exceeded"
    assert "X-RateLimit-Reset" in answers[0].headers
    assert emu.control.config()["faults"]["burst_429"] == 0


def test_added_latency(api: Api, emu: EmulatorHandle) -> None:
    emu.control.set_faults(latency=0.3)
    started = time.perf_counter()
    assert api.get("/analysis/").status_code == 200
    assert time.perf_counter() - started >= 0.3
    assert emu.control.requests()[-1]["fault"] == "latency=0.300s"
    emu.control.set_faults(latency="0.01-0.05")
    assert (
        0.01 <= emu.control.config()["faults"]["latency_min"] < emu.control.config()["faults"]["latency_max"]
    )


def test_dropped_connection_is_a_connection_error_for_requests_and_httpx(
    api: Api, emu: EmulatorHandle
) -> None:
    emu.control.set_faults(drop_next=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.get("/analysis/")
    emu.control.set_faults(drop_next=1)
    with httpx.Client(trust_env=False) as client, pytest.raises(httpx.TransportError):
        client.get(api.base + "/analysis/", headers=api.auth())
    assert api.get("/analysis/").status_code == 200
    dropped = [e for e in emu.control.requests() if e["fault"] == "drop"]
    assert len(dropped) == 2
    assert all(e["status"] is None for e in dropped)


def test_dropped_upload_creates_nothing(api: Api, emu: EmulatorHandle, wav: Callable[..., Path]) -> None:
    emu.control.set_faults(drop_next=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.upload(wav(seconds=20))
    assert emu.control.analyses() == []


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_accepted_submission_with_a_lost_response(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path], mode: str
) -> None:
    emu.control.set_faults(lose_next=1, lose_mode=mode)
    headers = {"Idempotency-Key": f"lost-{mode}"}
    if mode == "503":
        assert api.upload(wav(), headers=headers).status_code == 503
    else:
        with pytest.raises(requests.exceptions.ConnectionError):
            api.upload(wav(), headers=headers)
    (stored,) = emu.control.analyses()
    entry = emu.control.requests()[-1]
    assert entry["analysis_id"] == stored["id"]
    assert entry["handled_status"] == 201
    # A retry with the same key gets the analysis that was created, not a second one.
    retried = api.upload(wav(), headers=headers)
    assert retried.status_code == 201
    assert retried.json()["id"] == stored["id"]
    assert len(emu.control.analyses()) == 1


def test_lose_applies_only_to_submissions(api: Api, emu: EmulatorHandle) -> None:
    emu.control.set_faults(lose_rate=1.0)
    assert api.get("/analysis/").status_code == 200


def test_faults_never_touch_the_control_api(api: Api, emu: EmulatorHandle) -> None:
    emu.control.set_faults(error_rates={503: 1.0}, latency=0.5, drop_rate=0.0)
    started = time.perf_counter()
    for _ in range(3):
        assert emu.control.health()["status"] == "ok"
    assert time.perf_counter() - started < 0.5
    assert api.get("/analysis/").status_code == 503
    emu.control.clear_faults()
    assert api.get("/analysis/").status_code == 200


def test_invalid_fault_settings_are_refused(emu: EmulatorHandle) -> None:
    with pytest.raises(httpx.HTTPStatusError) as err:
        emu.control.set_faults(error_rates={418: 0.5})
    assert err.value.response.status_code == 422
    with pytest.raises(httpx.HTTPStatusError):
        emu.control.set_faults(drop_rate=2)


def test_faults_given_at_start_and_reset_restores_them() -> None:
    with run_emulator(("k",), faults={"next_errors": [502, 503]}) as emu:
        headers = {"X-API-Key": "k"}
        with requests.Session() as session:
            codes = [session.get(emu.base_url + "/analysis/", headers=headers).status_code for _ in range(3)]
            assert codes == [502, 503, 200]
            emu.control.reset()
            codes = [session.get(emu.base_url + "/analysis/", headers=headers).status_code for _ in range(3)]
            assert codes == [502, 503, 200]
