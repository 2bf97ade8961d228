"""Processing over the emulator's clock, failures, and webhook delivery."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from callcov_provider.models import Analysis
from callcov_provider.testing.server import EmulatorHandle, run_emulator

from .conftest import Api, wait_for


def test_submission_starts_processing_and_completes_after_the_delay(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    emu.control.set_processing(seconds=60)
    created = api.upload(wav()).json()
    assert created["status"] == "processing"
    assert created["results"] is None
    assert created["transcript"] is None
    assert created["metadata"]["completed_at"] is None
    assert created["metadata"]["processing_time_ms"] is None
    assert api.get(f"/calls/analyze/{created['id']}").json()["analysis"] is None
    assert api.get("/analysis/", status_filter="processing").json()["total"] == 1
    emu.control.advance(59)
    assert api.get(f"/analysis/{created['id']}").json()["status"] == "processing"
    emu.control.advance(1.5)
    done = Analysis.model_validate(api.get(f"/analysis/{created['id']}").json())
    assert done.status.value == "completed"
    assert done.metadata is not None
    assert done.metadata.processing_time_ms == 60_000
    assert api.get("/analysis/", status_filter="completed").json()["total"] == 1


def test_real_time_completion_with_a_short_delay(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    emu.control.set_processing(seconds=0.2)
    created = api.upload(wav()).json()
    assert created["status"] == "processing"
    wait_for(lambda: api.get(f"/analysis/{created['id']}").json()["status"] == "completed", timeout=5)


def test_complete_all_ends_processing_now(api: Api, emu: EmulatorHandle, wav: Callable[..., Path]) -> None:
    emu.control.set_processing(seconds=3600)
    ids = [api.upload(wav(f"c{i}.wav", seed=i)).json()["id"] for i in range(3)]
    assert emu.control.complete_all() == 3
    assert {api.get(f"/analysis/{i}").json()["status"] for i in ids} == {"completed"}
    assert emu.control.complete_all() == 0


def test_processing_range_is_spread_deterministically(tmp_path: Path, wav: Callable[..., Path]) -> None:
    def delays() -> list[float]:
        with run_emulator(("k",), processing_seconds="1-5", seed=3) as emu:
            api = Api(emu)
            try:
                bodies = [api.upload(wav(f"r{i}.wav", seconds=0.5, seed=i), key="k").json() for i in range(6)]
            finally:
                api.close()
            emu.control.advance(10)
            return [
                Analysis.model_validate(emu.control.analysis(b["id"])["analysis"]).metadata.processing_time_ms  # type: ignore[union-attr]
                for b in bodies
            ]

    first, second = delays(), delays()
    assert first == second
    assert all(1000 <= d <= 5000 for d in first)
    assert len(set(first)) > 1


def test_failure_rate_fails_a_deterministic_share(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    emu.control.set_processing(failure_rate=1.0)
    failed = api.upload(wav()).json()
    assert failed["status"] == "failed"
    assert failed["metadata"]["error_message"]
    emu.control.set_processing(failure_rate=0.5)
    statuses = [api.upload(wav(f"f{i}.wav", seconds=0.5, seed=i)).json()["status"] for i in range(20)]
    assert 0 < statuses.count("failed") < 20


def test_webhook_delivers_completed_and_failed_events(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    emu.control.set_processing(seconds=30)
    hook = f"{emu.root_url}/_emulator/webhook-sink"
    ok = api.upload(wav(), webhook_url=hook).json()
    bad = api.upload(wav("s.wav", silent=True), webhook_url=hook).json()
    assert emu.control.webhook_sink() == []
    emu.control.advance(31)
    received = wait_for(lambda: len(emu.control.webhook_sink()) == 2 and emu.control.webhook_sink())
    events = {item["body"]["data"]["id"]: item["body"]["event"] for item in received}
    assert events == {ok["id"]: "analysis.completed", bad["id"]: "analysis.failed"}
    for item in received:
        assert Analysis.model_validate(item["body"]["data"]).is_finished
    states = {a["id"]: a["webhook_state"] for a in emu.control.analyses()}
    assert states == {ok["id"]: "delivered", bad["id"]: "delivered"}


def test_webhook_is_retried_until_it_is_accepted(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    created = api.upload(wav(), webhook_url=f"{emu.root_url}/_emulator/webhook-sink?fail=2").json()
    wait_for(lambda: emu.control.webhook_sink(), timeout=10)
    attempts = [w for w in emu.control.webhooks() if w["analysis_id"] == created["id"]]
    assert [a["outcome"] for a in attempts] == ["HTTP 500", "HTTP 500", "delivered"]
    assert "?<redacted>" in attempts[0]["url"]


def test_webhook_gives_up_after_the_configured_attempts(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    created = api.upload(wav(), webhook_url=f"{emu.root_url}/_emulator/webhook-sink?fail=99").json()
    wait_for(lambda: emu.control.analysis(created["id"])["webhook_state"] == "failed", timeout=10)
    assert len(emu.control.webhooks()) == 3
    assert emu.control.webhook_sink() == []


def test_webhook_to_a_host_off_the_allowlist_is_never_sent(
    api: Api, emu: EmulatorHandle, wav: Callable[..., Path]
) -> None:
    created = api.upload(wav(), webhook_url="https://your-app.com/webhooks/analysis").json()
    wait_for(lambda: emu.control.analysis(created["id"])["webhook_state"] == "skipped")
    (attempt,) = emu.control.webhooks()
    assert attempt["outcome"].startswith("skipped")
    assert attempt["status"] is None
