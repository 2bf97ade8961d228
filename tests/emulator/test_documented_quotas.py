"""
The ``documented`` quota mode: 429s, quotas and ``X-RateLimit-*`` headers exactly as the API documentation
shows them; plan presets with their concurrent-processing limits; an offset server clock; and the shapes
``X-RateLimit-Reset`` can be written in.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from callcov_provider.testing.cli import build_parser, config_from_args
from callcov_provider.testing.config import PLANS
from callcov_provider.testing.pytest_plugin import QUOTA_MODES
from callcov_provider.testing.server import EmulatorHandle

from .conftest import Api
from .test_auth_and_limits import fresh_window

MESSAGE = re.compile(r"^Rate limit exceeded\. Please try again in (\d+) seconds\.$")


def server_now(emu: EmulatorHandle) -> float:
    return float(emu.control.health()["now"])


@pytest.mark.parametrize("callcov_quota_mode", QUOTA_MODES, indirect=True)
def test_a_429_carries_retry_after_only_in_friendly_mode(
    api: Api, emu: EmulatorHandle, callcov_quota_mode: str
) -> None:
    assert emu.control.config()["rate_limits"]["mode"] == callcov_quota_mode
    emu.control.set_rate_limits(requests_per_minute=2)
    fresh_window(emu)
    assert [api.get("/analysis/").status_code for _ in range(2)] == [200, 200]
    limited = api.get("/analysis/")
    assert limited.status_code == 429
    assert ("Retry-After" in limited.headers) is (callcov_quota_mode == "friendly")


def test_documented_429_has_the_documented_body_and_no_retry_after(
    api: Api, callcov_documented_emulator: EmulatorHandle
) -> None:
    emu = callcov_documented_emulator
    emu.control.set_rate_limits(requests_per_minute=3)
    start = fresh_window(emu)
    emu.control.advance(20)  # 40 s left in the window
    for _ in range(3):
        assert api.get("/analysis/").status_code == 200
    limited = api.get("/analysis/")
    assert limited.status_code == 429
    assert "Retry-After" not in limited.headers
    body = limited.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == "rate_limit_exceeded"
    match = MESSAGE.match(body["error"]["message"])
    assert match, body
    seconds = int(match.group(1))
    reset = int(limited.headers["X-RateLimit-Reset"])
    assert reset == math.floor(start) + 60
    # N is the real time left in the window, in the server's clock.
    assert seconds == math.ceil(reset - server_now(emu)) or seconds == math.ceil(reset - start - 20)
    assert 38 <= seconds <= 40
    assert (limited.headers["X-RateLimit-Limit"], limited.headers["X-RateLimit-Remaining"]) == ("3", "0")
    # The legacy generation's path answers the same documented body.
    legacy = api.session.post(api.base + "/calls/analyze", headers=api.auth(), json={})
    assert legacy.status_code == 429
    assert "Retry-After" not in legacy.headers
    assert legacy.json()["error"]["code"] == "rate_limit_exceeded"


def test_documented_defaults_are_100_requests_and_20_submissions(
    api: Api, callcov_documented_emulator: EmulatorHandle
) -> None:
    emu = callcov_documented_emulator
    assert emu.control.config()["effective_rate_limits"] == {
        "requests_per_minute": 100,
        "submissions_per_minute": 20,
        "concurrent_processing": None,
    }
    fresh_window(emu)
    response = api.get("/analysis/")
    assert (response.headers["X-RateLimit-Limit"], response.headers["X-RateLimit-Remaining"]) == ("100", "99")


def test_a_submission_is_refused_while_requests_remain(
    api: Api, callcov_documented_emulator: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    emu = callcov_documented_emulator
    emu.control.set_quota_mode("documented", plan="free")
    fresh_window(emu)
    path = wav()
    accepted = [api.upload(path) for _ in range(5)]
    assert [r.status_code for r in accepted] == [201] * 5
    refused = api.upload(path)
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers
    assert MESSAGE.match(refused.json()["error"]["message"])
    # The headers describe the request quota: 6 of 100 used, 94 left, though the submission was refused.
    assert refused.headers["X-RateLimit-Limit"] == "100"
    assert refused.headers["X-RateLimit-Remaining"] == "94"
    listed = api.get("/analysis/")
    assert listed.status_code == 200
    assert listed.headers["X-RateLimit-Remaining"] == "93"
    assert emu.control.requests()[-2]["limit"] == "submissions"
    # The next window admits submissions again.
    emu.control.advance(60)
    assert api.upload(path).status_code == 201


def test_request_quota_refuses_before_the_submission_quota(
    api: Api, callcov_documented_emulator: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    emu = callcov_documented_emulator
    emu.control.set_rate_limits(requests_per_minute=2, submissions_per_minute=10)
    fresh_window(emu)
    path = wav()
    assert api.get("/analysis/").status_code == 200
    assert api.upload(path).status_code == 201
    refused = api.upload(path)
    assert refused.status_code == 429
    assert (refused.headers["X-RateLimit-Limit"], refused.headers["X-RateLimit-Remaining"]) == ("2", "0")
    assert emu.control.requests()[-1]["limit"] == "requests"


@pytest.mark.parametrize("plan", list(PLANS))
def test_plan_presets_follow_the_documented_table(emu: EmulatorHandle, plan: str) -> None:
    emu.control.set_quota_mode("documented", plan=plan)
    expected = {"free": (5, 1), "starter": (30, 5), "business": (150, 25), "enterprise": (None, None)}[plan]
    effective = emu.control.config()["effective_rate_limits"]
    assert (effective["submissions_per_minute"], effective["concurrent_processing"]) == expected
    assert effective["requests_per_minute"] == 100
    # An explicit limit beats the preset (the "Custom" of an enterprise plan).
    emu.control.set_rate_limits(submissions_per_minute=7, concurrent_processing=3)
    effective = emu.control.config()["effective_rate_limits"]
    assert (effective["submissions_per_minute"], effective["concurrent_processing"]) == (7, 3)


def test_cli_flags_select_mode_plan_offset_and_reset_format() -> None:
    args = build_parser().parse_args(
        [
            "--quota-mode",
            "documented",
            "--plan",
            "starter",
            "--clock-offset",
            "-90",
            "--reset-format",
            "delta",
        ]
    )
    config = config_from_args(args, environ={})
    assert config.rate_limits.mode == "documented"
    assert config.rate_limits.plan == "starter"
    assert config.rate_limits.reset_format == "delta"
    assert config.clock_offset_seconds == -90.0
    assert config.rate_limits.effective() == {
        "requests_per_minute": 100,
        "submissions_per_minute": 30,
        "concurrent_processing": 5,
    }
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--plan", "gold"])


def _ready_at(emu: EmulatorHandle) -> list[float]:
    return [a["ready_at"] for a in sorted(emu.control.analyses(), key=lambda a: a["created"])]


def test_analyses_beyond_the_concurrent_limit_wait_in_processing(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    emu.control.set_quota_mode("documented", plan="free")  # one at a time
    emu.control.set_processing(seconds=10)
    fresh_window(emu)
    path = wav()
    ids = [api.upload(path).json()["id"] for _ in range(3)]
    created = emu.control.analyses()[0]["created"]
    ready = _ready_at(emu)
    # Each starts when the one before it ends, and then takes its full 10 s.
    assert [round(r - created, 1) for r in ready] == [10.0, 20.0, 30.0]
    statuses = lambda: [api.get(f"/analysis/{i}").json()["status"] for i in ids]  # noqa: E731
    assert statuses() == ["processing"] * 3
    emu.control.advance(10.5)
    assert statuses() == ["completed", "processing", "processing"]
    emu.control.advance(10)
    assert statuses() == ["completed", "completed", "processing"]
    emu.control.advance(10)
    assert statuses() == ["completed"] * 3
    # The time an analysis waited for a slot is not processing time.
    done = [api.get(f"/analysis/{i}").json()["metadata"] for i in ids]
    assert [m["processing_time_ms"] for m in done] == [10_000, 10_000, 10_000]
    started = sorted(a["started"] - created for a in emu.control.analyses())
    assert [round(s, 1) for s in started] == [0.0, 10.0, 20.0]
    # Once the queue has drained, a new analysis starts at once.
    api.upload(path)
    newest = max(emu.control.analyses(), key=lambda a: a["created"])
    assert round(newest["ready_at"] - newest["created"], 1) == 10.0


def test_starter_plan_processes_five_at_once_and_accounts_are_apart(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    from .conftest import KEY_2

    emu.control.set_quota_mode("documented", plan="starter")
    emu.control.set_processing(seconds=10)
    fresh_window(emu)
    path = wav()
    for _ in range(6):
        assert api.upload(path).status_code == 201
    assert api.upload(path, key=KEY_2).status_code == 201
    by_account = {
        account: sorted(a["ready_at"] - a["created"] for a in emu.control.analyses(account=account))
        for account in ("acct_1", "acct_2")
    }
    assert [round(x) for x in by_account["acct_1"]] == [10] * 5 + [20]
    assert [round(x) for x in by_account["acct_2"]] == [10]


def test_friendly_mode_has_no_concurrent_limit(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    emu.control.set_processing(seconds=10)
    path = wav()
    for _ in range(3):
        api.upload(path)
    assert [round(a["ready_at"] - a["created"]) for a in emu.control.analyses()] == [10, 10, 10]


@pytest.mark.parametrize("offset", [-3600.0, 7200.0])
def test_an_offset_server_clock_moves_date_and_reset(
    callcov_emulator_factory: Callable[..., EmulatorHandle], offset: float
) -> None:
    emu = callcov_emulator_factory(quota_mode="documented", clock_offset=offset)
    api = Api(emu)
    try:
        wall = time.time()
        response = api.get("/analysis/", key=emu.api_key)
        assert response.status_code == 200
        date = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
        assert abs(date - (wall + offset)) < 5
        reset = int(response.headers["X-RateLimit-Reset"])
        assert wall + offset - 5 < reset <= wall + offset + 61
        assert abs(emu.control.config()["clock"]["offset"] - offset) < 1e-6
        # The control API's reset returns to the start-up offset, not to the wall clock.
        emu.control.advance(30)
        emu.control.reset()
        assert abs(emu.control.config()["clock"]["offset"] - offset) < 1e-6
    finally:
        api.close()


def test_clock_offset_can_be_set_at_run_time(api: Api, emu: EmulatorHandle) -> None:
    emu.control.set_clock_offset(-600)
    wall = time.time()
    response = api.get("/analysis/")
    date = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
    assert abs(date - (wall - 600)) < 5
    assert int(response.headers["X-RateLimit-Reset"]) < wall - 600 + 61
    emu.control.reset()
    date = email.utils.parsedate_to_datetime(api.get("/analysis/").headers["Date"]).timestamp()
    assert abs(date - time.time()) < 5


@pytest.mark.parametrize("reset_format", ["epoch", "epoch_ms", "delta"])
def test_reset_header_shapes(api: Api, emu: EmulatorHandle, reset_format: str) -> None:
    emu.control.set_quota_mode("documented", reset_format=reset_format)
    start = fresh_window(emu)
    emu.control.advance(15)
    response = api.get("/analysis/")
    value = int(response.headers["X-RateLimit-Reset"])
    window_end = math.floor(start) + 60
    expected = {"epoch": window_end, "epoch_ms": window_end * 1000, "delta": 45}[reset_format]
    assert value == expected or (reset_format == "delta" and value == 44)


def test_injected_429_burst_follows_the_mode(api: Api, emu: EmulatorHandle) -> None:
    emu.control.set_faults(burst_429=2, retry_after=7)
    assert "Retry-After" in api.get("/analysis/").headers
    emu.control.set_quota_mode("documented")
    limited = api.get("/analysis/")
    assert limited.status_code == 429
    assert "Retry-After" not in limited.headers
    assert limited.json()["error"]["message"] == "Rate limit exceeded. Please try again in 7 seconds."


def test_a_database_file_from_before_the_started_column_still_opens(tmp_path: Path) -> None:
    import sqlite3

    from callcov_provider.testing.store import SCHEMA, Store

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(SCHEMA.replace(",\n    started REAL", ""))
    assert "started" not in {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(analyses)")}
    store = Store(str(path))
    try:
        assert store.counts()["analyses"] == 0
        assert "started" in {row[1] for row in store._db.execute("PRAGMA table_info(analyses)")}
    finally:
        store.close()


def test_documented_fixture_and_connection_fixture_agree(
    callcov_connection: str, callcov_documented_emulator: EmulatorHandle
) -> None:
    from callcov_provider.hooks.callcov import CallCovHook

    assert callcov_documented_emulator.control.config()["rate_limits"]["mode"] == "documented"
    hook = CallCovHook(callcov_conn_id=callcov_connection)
    assert hook.list_analyses(limit=1) is not None
    (entry,) = callcov_documented_emulator.control.requests()
    assert entry["status"] == 200
