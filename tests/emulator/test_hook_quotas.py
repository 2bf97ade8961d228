"""
The hook and the batch operator against the emulator's quotas, in both modes: ``friendly`` (a 429 carries
``Retry-After``) and ``documented`` (exactly what the API's documentation shows: no ``Retry-After``, the
wait only in the message, ``X-RateLimit-*`` counting requests while submissions have their own quota).

Nothing sleeps: the hook's waits advance the emulator's clock (and the pacer's) by what was asked, so a
minute-long quota window passes in an instant, exactly as far as the client decided to wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.hooks.pacing import QuotaPacer
from callcov_provider.operators.batch import SubmitAnalysisBatchOperator
from callcov_provider.testing.audio import write_wav
from callcov_provider.testing.pytest_plugin import QUOTA_MODES
from callcov_provider.testing.server import EmulatorHandle

#: The documentation's Free plan: 5 submissions a minute; 100 requests a minute by default.
FREE_SUBMISSIONS = 5


class EmulatedTime:
    """Stands in for the hook's sleeps: each wait moves the emulator's clock and the pacer's clock."""

    def __init__(self, emulator: EmulatorHandle) -> None:
        self.emulator = emulator
        self.waits: list[float] = []
        self.offset = 0.0

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.offset += seconds
        self.emulator.control.advance(seconds)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture(params=QUOTA_MODES)
def limited(
    request: pytest.FixtureRequest,
    callcov_emulator_factory: Callable[..., EmulatorHandle],
    monkeypatch: pytest.MonkeyPatch,
) -> EmulatorHandle:
    emulator = callcov_emulator_factory(
        quota_mode=request.param, submit_rate_limit=FREE_SUBMISSIONS, rate_limit=100, processing_seconds=0.0
    )
    # Start at the beginning of a window, so the counts below do not depend on when the test runs.
    now = float(emulator.control.health()["now"])
    emulator.control.advance(60 - now % 60 + 0.01)
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emulator.connection_json(max_retries=0))
    return emulator


def hook_on(emulator: EmulatorHandle, clock: EmulatedTime) -> CallCovHook:
    hook = CallCovHook()
    hook.sleep = clock.sleep
    # The pacer is per process and account; this test's pacer follows the emulated time.
    hook._pacer = QuotaPacer(clock.monotonic)
    return hook


def recordings(tmp_path: Path, count: int) -> list[Path]:
    return [write_wav(tmp_path / f"call_{i}.wav", 0.05, seed=i + 1) for i in range(count)]


def test_the_submission_quota_is_waited_out_not_failed(limited: EmulatorHandle, tmp_path: Path) -> None:
    emulator = limited
    clock = EmulatedTime(emulator)
    hook = hook_on(emulator, clock)
    try:
        ids = [
            hook.submit_analysis(agent_id="a", contact_id=f"c{i}", audio_file=str(path)).id
            for i, path in enumerate(recordings(tmp_path, 3 * FREE_SUBMISSIONS + 1))
        ]
    finally:
        hook.close()
    assert len(set(ids)) == 3 * FREE_SUBMISSIONS + 1
    assert len(emulator.control.analyses()) == 3 * FREE_SUBMISSIONS + 1
    refused = [e for e in emulator.control.requests(method="POST") if e["status"] == 429]
    # The first refusal (in a window the pacer saw from its start) teaches the quota; after it,
    # submissions are spaced at the quota instead of bursting into each new window.
    assert 1 <= len(refused) <= 3
    # Each wait was what the server named (the rest of its window), never a short backoff.
    assert all(wait >= 1.0 for wait in clock.waits)
    assert hook.pacer.stats().submissions_per_minute == pytest.approx(FREE_SUBMISSIONS / 1.03)


def test_the_request_quota_is_read_from_the_documented_answer(limited: EmulatorHandle) -> None:
    emulator = limited
    clock = EmulatedTime(emulator)
    hook = hook_on(emulator, clock)
    try:
        for _ in range(105):  # the request quota is 100 a minute
            hook.list_analyses(limit=1)
    finally:
        hook.close()
    answers = [e["status"] for e in emulator.control.requests(method="GET")]
    assert answers.count(200) == 105
    assert 1 <= answers.count(429) <= 2
    assert clock.waits
    assert all(wait <= 61.0 + 1.0 for wait in clock.waits)


def test_a_batch_runs_at_the_quota(limited: EmulatorHandle, tmp_path: Path) -> None:
    emulator = limited
    clock = EmulatedTime(emulator)
    calls: list[dict[str, Any]] = [
        {"agent_id": f"a{i % 2}", "contact_id": f"c{i}", "audio_file": str(path)}
        for i, path in enumerate(recordings(tmp_path, 4 * FREE_SUBMISSIONS))
    ]
    op = SubmitAnalysisBatchOperator(task_id="submit", calls=calls, max_in_flight=1)
    op.__dict__["hook"] = hook_on(emulator, clock)

    class TI:
        dag_id, task_id, run_id, map_index, try_number = "d", "submit", "r", -1, 1

    outcomes = op.execute({"ti": TI()})  # type: ignore[arg-type]
    assert [o["error"] for o in outcomes] == [None] * len(calls)
    assert len(emulator.control.analyses()) == len(calls)
    refused = [e for e in emulator.control.requests(method="POST") if e["status"] == 429]
    assert len(refused) <= 3
    # Four windows' worth of submissions took about four windows of (emulated) time, not more.
    assert sum(clock.waits) <= 4 * 60.0 + 5.0


def test_a_server_clock_behind_the_client_still_gives_the_right_wait(
    callcov_emulator_factory: Callable[..., EmulatorHandle], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The server's clock runs 90 s behind ours: epoch times it sends would look long past.
    emulator = callcov_emulator_factory(
        quota_mode="documented", submit_rate_limit=1, rate_limit=100, clock_offset=-90.0
    )
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emulator.connection_json(max_retries=0))
    clock = EmulatedTime(emulator)
    hook = hook_on(emulator, clock)
    try:
        for i, path in enumerate(recordings(tmp_path, 3)):
            hook.submit_analysis(agent_id="a", contact_id=f"c{i}", audio_file=str(path))
    finally:
        hook.close()
    assert len(emulator.control.analyses()) == 3
    refused = [e for e in emulator.control.requests(method="POST") if e["status"] == 429]
    # Without the right wait a skewed client retries at once and collects 429s; here one per window.
    assert len(refused) <= 3
    assert all(1.0 <= wait <= 62.0 for wait in clock.waits)
