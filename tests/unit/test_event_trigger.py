"""AnalysisEventTrigger without a network: the real hook on httpx.MockTransport over an in-memory account."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import callcov_provider.triggers.events as events_module
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.triggers.events import (
    MAX_EVENT_ANALYSES,
    STATE_KEY,
    AnalysisEventTrigger,
    Watermark,
)
from tests.unit.test_trigger_unit import Account

T0 = 1_767_225_600


class AgentAccount(Account):
    """The unit account, with the list endpoint's ``agent_id`` filter."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        agent = request.url.params.get("agent_id")
        if agent is None or not request.url.path.endswith("/analysis/"):
            return super().__call__(request)
        everything = self.rows
        self.rows = {k: v for k, v in everything.items() if v["call"]["agent_id"] == agent}
        try:
            return super().__call__(request)
        finally:
            self.rows = everything


class Store:
    """The asset state store's async accessors, in memory (what the triggerer injects on Airflow 3.3+)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0

    def _single_accessor(self) -> Store:
        return self

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.writes += 1
        self.values[key] = value


@pytest.fixture
def account() -> AgentAccount:
    return AgentAccount()


@pytest.fixture
def make(
    connection: Callable[..., None], account: AgentAccount, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., AnalysisEventTrigger]:
    connection(max_retries=0)

    def build(**kwargs: Any) -> AnalysisEventTrigger:
        trigger = AnalysisEventTrigger(callcov_conn_id="callcov_default", poll_interval=1, **kwargs)

        def hook() -> CallCovHook:
            made = CallCovHook("callcov_default")
            made.async_transport = httpx.MockTransport(account)
            return made

        monkeypatch.setattr(trigger, "_hook", hook)
        return trigger

    return build


async def cycle(trigger: AnalysisEventTrigger) -> list[str]:
    hook = trigger._hook()
    try:
        announced, _ = await trigger.poll_once(hook)
    finally:
        await hook.aclose()
    return [a.id for a in announced]


def test_serialize_holds_ids_filters_and_connection_only() -> None:
    trigger = AnalysisEventTrigger(
        callcov_conn_id="cc", status_filter="failed", agent_id="a1", poll_interval=5
    )
    trigger.watermark = Watermark(1.0, {"x": 2.0})
    classpath, kwargs = trigger.serialize()
    assert classpath == "callcov_provider.triggers.events.AnalysisEventTrigger"
    assert kwargs == {
        "callcov_conn_id": "cc",
        "status_filter": ["failed"],
        "agent_id": "a1",
        "poll_interval": 5.0,
    }
    assert AnalysisEventTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_status_filter_is_checked() -> None:
    with pytest.raises(ValueError, match="status_filter"):
        AnalysisEventTrigger(status_filter="processing")
    with pytest.raises(ValueError, match="status_filter"):
        AnalysisEventTrigger(status_filter=[])


def test_exported_lazily() -> None:
    import callcov_provider

    assert callcov_provider.AnalysisEventTrigger is AnalysisEventTrigger


async def test_baseline_then_each_finished_analysis_announced_once(
    make: Callable[..., Any], account: Any
) -> None:
    account.add("old-done", "completed", created=T0 - 100)
    account.add("running", "processing", created=T0)
    trigger = make()
    assert await cycle(trigger) == []  # the baseline: what finished before the watch is not news
    assert await cycle(trigger) == []
    account.add("running", "completed", created=T0)
    account.add("fresh", "failed", created=T0 + 50, error="bad audio")
    assert await cycle(trigger) == ["running", "fresh"]
    assert await cycle(trigger) == []
    assert await cycle(trigger) == []


async def test_late_finisher_below_newer_ones_is_still_announced(
    make: Callable[..., Any], account: Any
) -> None:
    account.add("slow", "processing", created=T0)
    trigger = make()
    await cycle(trigger)
    for i in range(30):
        account.add(f"quick-{i}", "completed", created=T0 + 1000 + i)
    assert len(await cycle(trigger)) == 30
    # The floor stayed below "slow", which is still processing, so its late finish is found.
    assert trigger.watermark.floor is not None
    assert trigger.watermark.floor < T0
    account.add("slow", "completed", created=T0)
    assert await cycle(trigger) == ["slow"]
    # Once nothing is processing the floor moves up and the boundary set shrinks.
    assert trigger.watermark.floor > T0 + 1000
    assert len(trigger.watermark.seen) < 30


async def test_same_second_boundary_is_deduplicated_by_id(make: Callable[..., Any], account: Any) -> None:
    trigger = make()
    await cycle(trigger)
    account.add("a", "completed", created=T0 + 10)
    assert await cycle(trigger) == ["a"]
    account.add("b", "completed", created=T0 + 10)  # the same creation second as the boundary
    assert await cycle(trigger) == ["b"]
    assert await cycle(trigger) == []


async def test_event_size_is_capped_and_the_rest_follows(make: Callable[..., Any], account: Any) -> None:
    trigger = make(status_filter="completed")
    await cycle(trigger)
    for i in range(MAX_EVENT_ANALYSES + 150):
        account.add(f"n{i:05d}", "completed", created=T0 + i)
    first = await cycle(trigger)
    second = await cycle(trigger)
    assert len(first) == MAX_EVENT_ANALYSES
    assert len(second) == 150
    assert not set(first) & set(second)
    assert first[0] == "n00000"  # oldest first, so the floor advances in order
    assert await cycle(trigger) == []


async def test_cost_per_cycle_is_bounded_by_pages_not_account_size(
    make: Callable[..., Any], account: Any
) -> None:
    for i in range(6000):
        account.add(f"h{i}", "completed" if i % 3 else "failed", created=T0 - 10_000 + i)
    trigger = make()
    await cycle(trigger)
    for _ in range(3):
        before = len(account.requests)
        await cycle(trigger)
        # One processing page and one page per watched status: the watermark is on the first page.
        assert len(account.requests) - before == 3
    trigger.watermark.floor = 0.0  # an old floor: at most max_pages_per_status pages a status
    before = len(account.requests)
    await cycle(trigger)
    assert len(account.requests) - before == 1 + 2 * trigger.max_pages_per_status


async def test_agent_and_status_filters(make: Callable[..., Any], account: Any) -> None:
    trigger = make(status_filter="failed", agent_id="agent-x1")
    await cycle(trigger)
    account.add("x1", "failed", created=T0)
    account.add("x2", "failed", created=T0)
    account.add("x3", "completed", created=T0)
    assert await cycle(trigger) == ["x1"]
    requests = account.requests[-2:]
    assert all(r.url.params["agent_id"] == "agent-x1" for r in requests)


async def test_watermark_survives_a_restart_through_the_state_store(
    make: Callable[..., Any], account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store()

    class Stop(Exception):
        pass

    async def run_cycles(n: int) -> list[dict[str, Any]]:
        trigger = make()
        trigger.asset_state_store = store
        sleeps = 0

        async def sleep(_: float) -> None:
            nonlocal sleeps
            sleeps += 1
            if sleeps >= n:
                raise Stop

        monkeypatch.setattr(events_module, "asyncio", SimpleNamespace(sleep=sleep))
        payloads: list[dict[str, Any]] = []
        with pytest.raises(Stop):
            async for event in trigger.run():
                payloads.append(event.payload)
        return payloads

    account.add("p1", "processing", created=T0)
    assert await run_cycles(1) == []
    account.add("p1", "completed", created=T0)
    (event,) = await run_cycles(2)
    assert event == {
        "analyses": [
            {
                "id": "p1",
                "status": "completed",
                "agent_id": "agent-p1",
                "contact_id": "contact-p1",
                "error_message": None,
            }
        ],
        "count": 1,
    }
    assert STATE_KEY in store.values
    # A "restart": a new trigger instance reads the stored watermark and announces nothing again.
    assert await run_cycles(3) == []
    account.add("p2", "completed", created=T0 + 1)
    assert [e["analyses"][0]["id"] for e in await run_cycles(2)] == ["p2"]


def test_watermark_json_round_trip_and_garbage() -> None:
    mark = Watermark(10.0, {"a": 12.0})
    assert Watermark.from_json(mark.to_json()) == mark
    assert Watermark.from_json(None) == Watermark()
    assert Watermark.from_json({"floor": "x", "seen": {}}) == Watermark()
