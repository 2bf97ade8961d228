"""
AnalysisCompletedTrigger's shared poll loop (Airflow 3.3+), run through Airflow's own SharedStreamManager
the way the triggerer's ``run_trigger`` drives it, against an in-memory account over httpx.MockTransport.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import callcov_provider.triggers.analysis as analysis_module
import callcov_provider.triggers.shared as shared_module
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.triggers.analysis import AnalysisCompletedTrigger
from callcov_provider.version_compat import AIRFLOW_V_3_3_PLUS
from tests.unit.test_trigger_unit import Account

pytestmark = pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="shared trigger streams are Airflow 3.3+")

POLL = 0.05


@pytest.fixture
def account(connection: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> Account:
    connection(max_retries=0)
    acct = Account()

    def make_hook(conn_id: str) -> CallCovHook:
        hook = CallCovHook(conn_id)
        hook.async_transport = httpx.MockTransport(acct)
        return hook

    monkeypatch.setattr(shared_module, "make_hook", make_hook)
    return acct


def trigger(
    ids: list[str], conn_id: str = "callcov_default", end_in: float = 60.0
) -> AnalysisCompletedTrigger:
    return AnalysisCompletedTrigger(
        analysis_ids=ids, callcov_conn_id=conn_id, poll_interval=POLL, end_time=time.time() + end_in
    )


async def run_like_the_triggerer(triggers: list[AnalysisCompletedTrigger]) -> list[dict[str, Any]]:
    """Subscribe every trigger to Airflow's SharedStreamManager and take each one's first event."""
    from airflow.triggers.shared_stream import SharedStreamManager

    manager = SharedStreamManager()

    async def one(trigger_id: int, t: AnalysisCompletedTrigger) -> dict[str, Any]:
        key = t.shared_stream_key()
        assert key is not None
        stream = manager.subscribe(trigger_id=trigger_id, trigger=t, key=key)
        try:
            async for event in t.filter_shared_stream(stream):
                return dict(event.payload)
            raise AssertionError("no event")
        finally:
            await manager.unsubscribe(trigger_id, key)

    try:
        return await asyncio.wait_for(asyncio.gather(*(one(i, t) for i, t in enumerate(triggers))), 30)
    finally:
        await manager.stop_all()


def test_triggers_of_one_connection_and_interval_share_a_key() -> None:
    a, b = trigger(["x"]), trigger(["y", "z"])
    assert a.shared_stream_key() == b.shared_stream_key() is not None
    assert trigger(["x"], conn_id="other").shared_stream_key() != a.shared_stream_key()
    assert a.supports_triggerer_queue is True  # BaseEventTrigger's False must not reach deferral triggers


def test_opt_out_and_below_airflow_3_3_poll_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    t = trigger(["x"])
    t.share_poll_loop = False
    assert t.shared_stream_key() is None
    monkeypatch.setattr(analysis_module, "AIRFLOW_V_3_3_PLUS", False)
    assert trigger(["x"]).shared_stream_key() is None


async def test_many_deferred_waits_cost_one_batch_budget_per_cycle(account: Account) -> None:
    ids = [f"an_{i:03d}" for i in range(60)]
    for i, aid in enumerate(ids):
        account.add(aid, "processing", created=1_767_225_600 + i)
    triggers = [trigger([aid]) for aid in ids]

    async def finish_later() -> None:
        await asyncio.sleep(POLL * 6)
        for i, aid in enumerate(ids):
            account.add(aid, "failed" if i == 7 else "completed", created=1_767_225_600 + i, error="no audio")

    started = time.monotonic()
    finisher = asyncio.create_task(finish_later())
    events = await run_like_the_triggerer(triggers)
    await finisher
    elapsed = time.monotonic() - started
    assert [e["results"][0]["id"] for e in events] == ids
    assert [e["status"] for e in events] == ["failed" if i == 7 else "success" for i in range(60)]
    assert events[7]["failures"] == {"an_007": "no audio"}
    # One loop for all 60: at most the tracker's budget a cycle (standalone, each trigger GETs every cycle).
    cycles = elapsed / POLL + 1
    assert len(account.requests) <= AnalysisCompletedTrigger.max_requests_per_cycle * cycles
    assert len(account.requests) < len(ids)  # standalone polling needs >= 60 requests for one cycle alone
    assert shared_module._WANTED == {}  # every trigger unregistered


async def test_each_trigger_logs_its_progress_like_run(
    account: Account, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    account.add("a1", "completed")
    account.add("a2", "completed")
    with caplog.at_level("INFO"):
        events = await run_like_the_triggerer([trigger(["a1", "a2"])])
    assert events[0]["status"] == "success"
    out, err = capfd.readouterr()
    # Airflow 3 logs through structlog (to the stream), older versions through logging.
    assert "CallCov: 2 of 2 analyses finished" in out + err + caplog.text


async def test_an_unknown_id_ends_only_its_own_wait(account: Account) -> None:
    account.add("known", "completed")
    account.add("other", "processing")
    events = await run_like_the_triggerer([trigger(["known", "ghost"]), trigger(["known"])])
    assert events[0]["status"] == "error"
    assert "NotFoundError" in events[0]["message"]
    assert events[1]["status"] == "success"


async def test_authentication_error_ends_every_wait(account: Account) -> None:
    account.always = 401
    events = await run_like_the_triggerer([trigger(["a"]), trigger(["b", "c"])])
    assert [e["status"] for e in events] == ["error", "error"]
    assert all("AuthenticationError" in e["message"] for e in events)


async def test_deadline_is_per_trigger(account: Account) -> None:
    account.add("slow", "processing")
    account.add("quick", "processing")

    async def finish_quick() -> None:
        await asyncio.sleep(POLL * 4)
        account.add("quick", "completed")

    finisher = asyncio.create_task(finish_quick())
    events = await run_like_the_triggerer([trigger(["slow"], end_in=POLL * 2), trigger(["quick"])])
    await finisher
    assert [e["status"] for e in events] == ["timeout", "success"]
