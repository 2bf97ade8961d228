"""The submit operator's worker wait and deferral use the provider's one Waiter (issue 13.3)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests_mock as rm

from callcov_provider.exceptions import AuthenticationError
from callcov_provider.hooks.pacing import QuotaPacer
from callcov_provider.waiting import DEFERRAL_TIMEOUT_MARGIN, MAX_CONSECUTIVE_FAILURES, WaitFailedError
from tests.unit.conftest import API
from tests.unit.test_operators import SUBMIT_URL, FakeTime, StateStore, body, ctx, make_op


@pytest.fixture
def api(connection: Callable[..., None]) -> Any:
    connection(max_retries=0)
    with rm.Mocker() as mock:
        yield mock


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    import callcov_provider.operators.submit as submit_module

    fake = FakeTime()
    monkeypatch.setattr(submit_module, "time", fake)
    return fake


def worker_op(clock: FakeTime, **kwargs: Any) -> Any:
    op = make_op(wait_for_completion=True, deferrable=False, **kwargs)
    op.hook._pacer = QuotaPacer(clock=clock.monotonic)  # the hook's gate runs on the test's clock too
    op.hook.sleep = clock.sleep
    return op


def test_worker_wait_outlasts_failed_cycles(api: rm.Mocker, clock: FakeTime) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    failing = [{"status_code": 503, "json": {"detail": "down"}}] * (MAX_CONSECUTIVE_FAILURES - 1)
    api.get(f"{API}/analysis/anl_1", [*failing, {"json": body("anl_1", "completed")}])
    op = worker_op(clock, poll_interval=5)
    assert op.execute(ctx(task_state_store=StateStore())) == "anl_1"
    assert clock.waits == [5] * (MAX_CONSECUTIVE_FAILURES - 1)


def test_worker_wait_ends_on_the_failure_rule(api: rm.Mocker, clock: FakeTime) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    api.get(f"{API}/analysis/anl_1", status_code=503, json={"detail": "down"})
    with pytest.raises(WaitFailedError, match=f"{MAX_CONSECUTIVE_FAILURES} poll failures in a row"):
        worker_op(clock).execute(ctx(task_state_store=StateStore()))
    assert sum(r.method == "GET" for r in api.request_history) == MAX_CONSECUTIVE_FAILURES


def test_worker_wait_waits_out_a_long_rate_limit(
    api: rm.Mocker, clock: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import callcov_provider.waiting as waiting

    monkeypatch.setattr(waiting, "time", clock)
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    limited = [{"status_code": 429, "json": {"detail": "slow down"}, "headers": {"Retry-After": "900"}}]
    api.get(
        f"{API}/analysis/anl_1",
        [*limited * (2 * MAX_CONSECUTIVE_FAILURES), {"json": body("anl_1", "completed")}],
    )
    op = worker_op(clock, poll_interval=5, timeout=6 * 3600)
    assert op.execute(ctx(task_state_store=StateStore())) == "anl_1"
    assert 900 in clock.waits  # what the API asked, not the poll interval


def test_worker_wait_ends_at_once_on_an_authentication_error(api: rm.Mocker, clock: FakeTime) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    api.get(f"{API}/analysis/anl_1", status_code=401, json={"detail": "bad key"})
    with pytest.raises(AuthenticationError):
        worker_op(clock).execute(ctx(task_state_store=StateStore()))
    assert clock.waits == []


def test_the_operator_defers_with_the_one_margin(api: rm.Mocker, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    import callcov_provider.waiting as waiting

    monkeypatch.setattr(waiting, "DEFERRAL_TIMEOUT_MARGIN", 123.0)
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    api.get(f"{API}/analysis/anl_1", json=body("anl_1"))
    with pytest.raises(TaskDeferred) as info:
        make_op(wait_for_completion=True, deferrable=True, timeout=900).execute(ctx())
    assert info.value.timeout == timedelta(seconds=900 + 123.0)
    assert DEFERRAL_TIMEOUT_MARGIN == 60.0
