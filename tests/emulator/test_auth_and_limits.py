"""Authentication in both modes, rate limits and their headers, and idempotency keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from callcov_provider.testing.server import EmulatorHandle

from .conftest import KEY_1, KEY_2, Api


@pytest.mark.parametrize("mode", ["api_key", "bearer"])
def test_both_auth_modes_are_accepted_and_logged(api: Api, emu: EmulatorHandle, mode: str) -> None:
    response = api.get("/analysis/", mode=mode)
    assert response.status_code == 200
    (entry,) = emu.control.requests()
    assert (entry["auth_mode"], entry["account"], entry["status"]) == (mode, "acct_1", 200)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "sk_wrong"},
        {"Authorization": "Bearer sk_wrong"},
        {"Authorization": f"Basic {KEY_1}"},
        {"Authorization": "Bearer "},
    ],
)
def test_bad_credentials_get_the_documented_401(
    api: Api, emu: EmulatorHandle, headers: dict[str, str]
) -> None:
    for method, path in (("GET", "/analysis/"), ("GET", "/analysis/x"), ("POST", "/analysis/")):
        response = api.session.request(method, api.base + path, headers=headers, json={})
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid authentication credentials"}
    entries = emu.control.requests()
    assert {e["auth_mode"] for e in entries} <= {"none", "invalid"}
    assert all(e["account"] is None for e in entries)


def test_keys_never_appear_in_the_audit_trail(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    api.upload(wav(), key=KEY_2, mode="bearer", headers={"Idempotency-Key": "idem-1"})
    api.get("/analysis/", key=KEY_1, search="x", api_key="leak?", token="t0ken")
    api.session.get(api.base + "/analysis/", headers={"X-API-Key": "sk_wrong_but_secret"})
    trail = str(emu.control.requests()) + str(emu.control.analyses()) + str(emu.control.config())
    for secret in (KEY_1, KEY_2, "sk_wrong_but_secret", "t0ken", "leak?"):
        assert secret not in trail
    assert "idem-1" in trail
    query = emu.control.requests(method="GET")[0]["query"]
    assert "search=x" in query
    assert "api_key=%3Credacted%3E" in query


def fresh_window(emu: EmulatorHandle) -> float:
    """Move the emulator's clock to the start of a rate-limit window, so a test never straddles two."""
    now = float(emu.control.health()["now"])
    return emu.control.advance(60 - now % 60 + 0.01)


def test_rate_limit_headers_on_every_authenticated_response(api: Api, emu: EmulatorHandle) -> None:
    emu.control.set_rate_limits(requests_per_minute=5)
    before = fresh_window(emu)
    remaining = []
    for _ in range(5):
        response = api.get("/analysis/")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        reset = int(response.headers["X-RateLimit-Reset"])
        assert before < reset <= before + 60
    assert remaining == [4, 3, 2, 1, 0]
    assert api.get("/analysis/nope").headers["X-RateLimit-Remaining"] == "0"  # the 404 counts too ...
    limited = api.get("/analysis/")
    assert limited.status_code == 429
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert limited.json() == {
        "error": {
            "code": "rate_limit_exceeded",
            "message": f"Rate limit exceeded. Please try again in {retry_after} seconds.",
        }
    }
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    # ... each account has its own window ...
    assert api.get("/analysis/", key=KEY_2).status_code == 200
    # ... and the next window (the emulator's clock moves on) is open again.
    emu.control.advance(60)
    assert api.get("/analysis/").status_code == 200


def test_headers_without_a_configured_limit_never_refuse(api: Api) -> None:
    response = api.get("/analysis/")
    assert int(response.headers["X-RateLimit-Limit"]) >= 1_000_000
    assert int(response.headers["X-RateLimit-Remaining"]) > 0


def test_submission_limit_counts_only_submissions(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    emu.control.set_rate_limits(submissions_per_minute=2)
    fresh_window(emu)
    path = wav()
    assert [api.upload(path).status_code for _ in range(2)] == [201, 201]
    refused = api.upload(path)
    assert refused.status_code == 429
    assert refused.headers["X-RateLimit-Limit"] == "2"
    assert "Retry-After" in refused.headers
    assert api.get("/analysis/").status_code == 200
    assert len(emu.control.analyses()) == 2
    assert emu.control.requests()[-2]["limit"] == "submissions"


def test_idempotency_key_replays_the_first_analysis(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    path = wav()
    headers = {"Idempotency-Key": "batch-2024-01-15-call-1"}
    first = api.upload(path, headers=headers)
    again = api.upload(path, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    legacy = api.upload(path, headers=headers, endpoint="/calls/analyze")
    assert legacy.json()["analysis_id"] == first.json()["id"]
    assert len(emu.control.analyses()) == 1
    assert [e["replayed"] for e in emu.control.requests()] == [False, True, True]


def test_idempotency_key_with_a_different_request_is_409(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    headers = {"Idempotency-Key": "k-1"}
    assert api.upload(wav(), headers=headers).status_code == 201
    other_audio = api.upload(wav("other.wav", seed=9), headers=headers)
    other_field = api.upload(wav(), headers=headers, agent_id="agent_999")
    for response in (other_audio, other_field):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "idempotency_conflict"
    assert len(emu.control.analyses()) == 1


def test_idempotency_keys_are_per_account(api: Api, emu: EmulatorHandle, wav: Callable[..., Path]) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    first = api.upload(wav(), headers=headers).json()
    second = api.upload(wav(), headers=headers, key=KEY_2).json()
    assert first["id"] != second["id"]


def test_idempotent_url_submission_is_not_downloaded_twice(api: Api, emu: EmulatorHandle) -> None:
    url = f"{emu.root_url}/_emulator/audio/call.wav?token=abc"
    headers = {"Idempotency-Key": "url-1"}
    first = api.submit_url(url, headers=headers).json()
    second = api.submit_url(url, headers=headers).json()
    assert first["id"] == second["id"]
    conflict = api.submit_url(url + "&x=1", headers=headers)
    assert conflict.status_code == 409


def test_overlong_idempotency_key_is_400(api: Api, wav: Callable[..., Path]) -> None:
    response = api.upload(wav(), headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400
