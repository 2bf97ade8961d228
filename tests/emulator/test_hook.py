"""``CallCovHook`` against the emulator over loopback: every method, both auth modes, retries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from callcov_provider.exceptions import (
    AuthenticationError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ServerError,
)
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.models import AnalysisStatus
from callcov_provider.testing.server import EmulatorHandle

from .conftest import KEY_2


class Waits:
    """Stands in for the hook's sleeps: records each wait instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture(params=["api_key", "bearer"])
def hook(
    request: pytest.FixtureRequest, emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, waits: Waits
) -> Iterator[CallCovHook]:
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emu.connection_json(auth_type=request.param))
    built = CallCovHook()
    built.sleep = waits
    built.async_sleep = waits.asleep
    yield built
    built.close()


def test_submit_by_file_get_and_list(
    hook: CallCovHook, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    emu.control.set_processing(seconds=30)
    submitted = hook.submit_analysis(
        agent_id="agent_001",
        contact_id="customer_12345",
        audio_file=str(wav()),
        call_direction="outbound",
        call_timestamp="2024-01-15T14:20:00Z",
        metadata={"batch": "2024-01-15"},
        webhook_url="http://127.0.0.1:9/hook",
    )
    assert submitted.status is AnalysisStatus.PROCESSING
    (entry,) = emu.control.requests()
    assert entry["idempotency_key"].startswith("callcov-")
    expected_mode = hook.settings.auth_type
    assert entry["auth_mode"] == expected_mode
    emu.control.advance(31)
    fetched = hook.get_analysis(submitted.id)
    assert fetched.status is AnalysisStatus.COMPLETED
    assert fetched.results is not None
    assert fetched.call is not None
    assert fetched.call.call_direction == "outbound"
    page = hook.list_analyses(status_filter="completed", agent_id="agent_001", limit=10)
    assert [a.id for a in page.data] == [submitted.id]
    assert page.total == 1
    assert not page.has_more


def test_submit_by_url(hook: CallCovHook, emu: EmulatorHandle) -> None:
    analysis = hook.submit_analysis(
        agent_id="agent_001",
        contact_id="c1",
        audio_url=f"{emu.root_url}/_emulator/audio/call.flac?seconds=5&token=SIGNED",
    )
    assert analysis.audio is not None
    assert analysis.audio.format == "flac"
    assert analysis.audio.duration_seconds == 5.0


def test_submit_on_the_legacy_path(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, wav: Callable[..., Path]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emu.connection_json(submit_path="/calls/analyze"))
    hook = CallCovHook()
    try:
        analysis = hook.submit_analysis(agent_id="a", contact_id="c", audio_file=str(wav()))
        assert analysis.id
        assert analysis.created_at is not None
        assert emu.control.requests()[0]["path"] == "/api/v1/calls/analyze"
        assert hook.get_analysis(analysis.id).status is AnalysisStatus.COMPLETED
    finally:
        hook.close()


def test_iter_analyses_reads_every_page(hook: CallCovHook, emu: EmulatorHandle) -> None:
    emu.control.seed(1200, agent_ids=["agent_001", "agent_002"])
    ids = [a.id for a in hook.iter_analyses()]
    assert len(ids) == len(set(ids)) == 1200
    assert sum(1 for _ in hook.iter_analyses(agent_id="agent_002", page_size=250)) == 600
    assert len(list(hook.iter_analyses(max_results=7))) == 7
    list_calls = [e for e in emu.control.requests() if e["path"] == "/api/v1/analysis/"]
    assert len(list_calls) == 2 + 3 + 1


def test_test_connection(hook: CallCovHook, emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = hook.test_connection()
    assert ok
    assert emu.base_url in message
    monkeypatch.setenv("AIRFLOW_CONN_BAD", emu.connection_json(api_key="sk_wrong"))
    bad = CallCovHook("bad")
    ok, message = bad.test_connection()
    assert not ok
    assert "Authentication failed" in message
    assert "sk_wrong" not in message
    monkeypatch.setenv(
        "AIRFLOW_CONN_DOWN", '{"conn_type": "callcov", "host": "http://127.0.0.1:1/api/v1", "password": "k"}'
    )
    ok, message = CallCovHook("down").test_connection()
    assert not ok
    assert "Cannot reach" in message


async def test_async_get_and_list(hook: CallCovHook, emu: EmulatorHandle, wav: Callable[..., Path]) -> None:
    created = hook.submit_analysis(agent_id="agent_async", contact_id="c", audio_file=str(wav()))
    try:
        fetched = await hook.aget_analysis(created.id)
        assert fetched.id == created.id
        assert fetched.status is AnalysisStatus.COMPLETED
        page = await hook.alist_analyses(search="AGENT_ASYNC")
        assert [a.id for a in page.data] == [created.id]
        with pytest.raises(NotFoundError):
            await hook.aget_analysis("missing")
    finally:
        await hook.aclose()


def test_typed_errors_from_the_emulator(hook: CallCovHook, emu: EmulatorHandle, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        hook.get_analysis("missing")
    fake = tmp_path / "fake.wav"
    fake.write_bytes(b"not audio" * 100)
    with pytest.raises(InvalidRequestError) as err:
        hook.submit_analysis(agent_id="a", contact_id="c", audio_file=str(fake))
    assert err.value.status_code == 400
    assert err.value.code == "invalid_file_format"
    other = emu.connection_json(api_key=KEY_2)
    assert other  # a second account exists; its analyses are invisible to this hook
    with pytest.raises(IdempotencyConflictError):
        good = tmp_path / "a.wav"
        from callcov_provider.testing.audio import write_wav

        write_wav(good)
        hook.submit_analysis(agent_id="a", contact_id="c", audio_file=str(good), idempotency_key="same")
        hook.submit_analysis(agent_id="b", contact_id="c", audio_file=str(good), idempotency_key="same")


def test_wrong_key_is_an_authentication_error(emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emu.connection_json(api_key="sk_wrong"))
    hook = CallCovHook()
    try:
        with pytest.raises(AuthenticationError) as err:
            hook.list_analyses()
        assert err.value.status_code == 401
        assert "sk_wrong" not in str(err.value)
    finally:
        hook.close()


def test_429_is_retried_after_retry_after(hook: CallCovHook, emu: EmulatorHandle, waits: Waits) -> None:
    emu.control.set_faults(burst_429=2, retry_after=3)
    page = hook.list_analyses()
    assert page.total == 0
    assert len(waits.waits) == 2
    assert all(w >= 3 for w in waits.waits)
    assert [e["status"] for e in emu.control.requests()] == [429, 429, 200]


def test_real_rate_limit_is_retried_then_raised(hook: CallCovHook, emu: EmulatorHandle, waits: Waits) -> None:
    now = float(emu.control.health()["now"])
    emu.control.advance(60 - now % 60 + 0.01)
    emu.control.set_rate_limits(requests_per_minute=1)
    hook.list_analyses()
    with pytest.raises(RateLimitedError) as err:
        hook.list_analyses()
    assert err.value.retry_after is not None
    assert err.value.retry_after > 0
    assert waits.waits
    assert all(w >= 1 for w in waits.waits)


def test_injected_5xx_are_retried(
    hook: CallCovHook, emu: EmulatorHandle, waits: Waits, wav: Callable[..., Path]
) -> None:
    emu.control.set_faults(next_errors=[500, 502, 503, 504])
    assert hook.list_analyses().total == 0
    assert len(waits.waits) == 4
    # A POST is retried on 5xx too: its Idempotency-Key makes the replay safe.
    emu.control.set_faults(next_errors=[502, 503])
    analysis = hook.submit_analysis(agent_id="a", contact_id="c", audio_file=str(wav()))
    assert [a["id"] for a in emu.control.analyses()] == [analysis.id]


def test_5xx_that_outlast_the_retries_raise_server_error(
    emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, waits: Waits
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emu.connection_json(max_retries=2))
    hook = CallCovHook()
    hook.sleep = waits
    emu.control.set_faults(error_rates={503: 1.0})
    try:
        with pytest.raises(ServerError) as err:
            hook.list_analyses()
        assert err.value.status_code == 503
        assert err.value.code == "service_unavailable"
        assert len(emu.control.requests()) == 3
    finally:
        hook.close()


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_lost_submission_response_creates_exactly_one_analysis(
    hook: CallCovHook, emu: EmulatorHandle, waits: Waits, wav: Callable[..., Path], mode: str
) -> None:
    emu.control.set_faults(lose_next=1, lose_mode=mode)
    analysis = hook.submit_analysis(agent_id="a", contact_id="c", audio_file=str(wav()))
    stored = emu.control.analyses()
    assert [a["id"] for a in stored] == [analysis.id]
    posts = emu.control.requests(method="POST")
    assert len(posts) == 2
    assert posts[0]["idempotency_key"] == posts[1]["idempotency_key"]
    assert posts[1]["replayed"] is True


def test_dropped_get_is_retried(hook: CallCovHook, emu: EmulatorHandle, waits: Waits) -> None:
    emu.control.set_faults(drop_next=2)
    assert hook.list_analyses().total == 0
    assert len(waits.waits) == 2


def test_oversized_file_is_refused_before_sending(
    hook: CallCovHook, emu: EmulatorHandle, tmp_path: Path
) -> None:
    big = tmp_path / "big.ogg"
    with big.open("wb") as handle:
        handle.write(b"OggS")
        handle.truncate(50 * 1024 * 1024 + 1)
    with pytest.raises(PayloadTooLargeError):
        hook.submit_analysis(agent_id="a", contact_id="c", audio_file=str(big))
    assert emu.control.requests() == []
