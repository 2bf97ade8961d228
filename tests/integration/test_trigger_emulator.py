"""
AnalysisCompletedTrigger against the emulator over real HTTP on loopback.

Cycles are delimited by wrapping the trigger module's ``asyncio.sleep``: at each boundary the size of the
emulator's request log is noted, so the requests of every poll cycle can be counted from the audit.
Nothing waits on the wall clock: the wrapped sleep only yields to the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

import callcov_provider.triggers.analysis as trigger_module
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.testing.server import EmulatorHandle, run_emulator
from callcov_provider.triggers.analysis import FULL_SUMMARY_LIMIT, AnalysisCompletedTrigger

pytestmark = pytest.mark.integration

BUDGET = AnalysisCompletedTrigger.max_requests_per_cycle
PAGE = 1000
SEEDED_FAILURE = "Analysis failed: seeded failure"


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorHandle]:
    with run_emulator(api_keys=("sk_test_trigger_1", "sk_test_trigger_2"), processing_seconds=0.0) as handle:
        yield handle


@pytest.fixture
def api(emu: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> EmulatorHandle:
    emu.control.reset()
    monkeypatch.setenv("AIRFLOW_CONN_CALLCOV_DEFAULT", emu.connection_json())
    return emu


class Cycles:
    """The trigger's sleep: notes the audit's length at each cycle boundary, runs a step, yields."""

    def __init__(self, emu: EmulatorHandle, step: Callable[[int], None] | None = None) -> None:
        self.emu = emu
        self.step = step
        self.marks: list[int] = []
        self.waits: list[float] = []
        self.log: list[dict[str, Any]] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.marks.append(len(self.emu.control.requests()))
        if self.step is not None:
            self.step(len(self.marks))
        await asyncio.sleep(0)

    def finish(self) -> None:
        self.log = self.emu.control.requests(account="acct_1")

    def per_cycle(self) -> list[int]:
        bounds = [0, *self.marks, len(self.emu.control.requests())]
        return [b - a for a, b in itertools.pairwise(bounds)]


async def run_trigger(
    monkeypatch: pytest.MonkeyPatch,
    emu: EmulatorHandle,
    ids: list[str],
    *,
    step: Callable[[int], None] | None = None,
    end_time: float | None = None,
    instant_retries: bool = False,
) -> tuple[list[dict[str, Any]], Cycles]:
    """Run a trigger to the end; return every event it yielded and the cycle record."""
    cycles = Cycles(emu, step)
    monkeypatch.setattr(trigger_module, "asyncio", SimpleNamespace(sleep=cycles.sleep))
    trigger = AnalysisCompletedTrigger(
        analysis_ids=ids,
        callcov_conn_id="callcov_default",
        poll_interval=0.01,
        end_time=time.time() + 600 if end_time is None else end_time,
    )
    trigger.max_first_poll_splay = 0.0  # cycles are counted from the first poll
    if instant_retries:
        original = trigger._hook

        def hook() -> CallCovHook:
            made = original()

            async def no_wait(seconds: float) -> None:
                await asyncio.sleep(0)

            made.async_sleep = no_wait
            return made

        monkeypatch.setattr(trigger, "_hook", hook)
    events = [event.payload async for event in trigger.run()]
    cycles.finish()
    return events, cycles


def seed_batch(emu: EmulatorHandle, count: int, statuses: list[str]) -> list[str]:
    """``count`` analyses of acct_1 created over the last hour, cycling through ``statuses``."""
    now = time.time()
    result = emu.control.seed(
        count, created_from=now - 3600, created_to=now - 60, statuses=statuses, return_ids=True
    )
    ids: list[str] = result["ids"]
    return ids


def seed_history(emu: EmulatorHandle, count: int = 3000) -> None:
    """Yesterday's batch of this account, and another account's busy day: neither may be read."""
    now = time.time()
    emu.control.seed(count, created_from=now - 2 * 86400, created_to=now - 86400, statuses=["completed"])
    emu.control.seed(2000, account="acct_2", created_from=now - 1800, created_to=now, statuses=["processing"])


def complete_at(emu: EmulatorHandle, cycle: int) -> Callable[[int], None]:
    def step(n: int) -> None:
        if n == cycle:
            emu.control.complete_all()

    return step


def list_requests(log: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    return [
        r for r in log if r["path"] == "/api/v1/analysis/" and f"status_filter={status}" in str(r["query"])
    ]


def offset_of(entry: dict[str, Any]) -> int:
    query = entry["query"]
    if isinstance(query, dict):
        return int(query.get("offset", 0))
    for part in str(query).split("&"):
        if part.startswith("offset="):
            return int(part.split("=", 1)[1])
    return 0


# -- one id ---------------------------------------------------------------------------------------------


async def test_one_id_is_one_get_per_cycle(api: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    (aid,) = seed_batch(api, 1, ["processing"])
    events, cycles = await run_trigger(monkeypatch, api, [aid], step=complete_at(api, 3))
    assert [e["status"] for e in events] == ["success"]
    assert events[0]["results"][0]["id"] == aid
    assert events[0]["results"][0]["status"] == "completed"
    assert [(r["method"], r["path"]) for r in cycles.log] == [("GET", f"/api/v1/analysis/{aid}")] * 4
    assert cycles.per_cycle() == [1, 1, 1, 1]


# -- many ids: the cost of a cycle does not grow with the batch ---------------------------------------


async def wait_for_batch(
    api: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, size: int
) -> tuple[list[str], list[dict[str, Any]], Cycles]:
    seed_history(api)
    # A third still processing, the rest finished already; those still running finish at cycle 3.
    ids = seed_batch(api, size, ["processing", "completed", "completed"])
    events, cycles = await run_trigger(monkeypatch, api, ids, step=complete_at(api, 3))
    return ids, events, cycles


@pytest.fixture(scope="module")
def per_cycle_max() -> dict[int, list[int]]:
    return {}


@pytest.mark.parametrize("size", [500, 5000])
async def test_batch_cost_per_cycle_is_bounded(
    api: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, size: int, per_cycle_max: dict[int, list[int]]
) -> None:
    ids, events, cycles = await wait_for_batch(api, monkeypatch, size)
    assert [e["status"] for e in events] == ["success"]
    assert events[0]["failures"] == {}
    assert events[0]["pending_count"] == 0
    if size <= FULL_SUMMARY_LIMIT:
        assert [r["id"] for r in events[0]["results"]] == ids
        assert {r["status"] for r in events[0]["results"]} == {"completed"}
    else:
        assert "results" not in events[0]  # large batches: the event carries failures only

    per_cycle = cycles.per_cycle()
    assert max(per_cycle) <= BUDGET, per_cycle
    per_cycle_max[size] = per_cycle

    log = cycles.log
    assert all(r["method"] == "GET" for r in log)
    assert all(r["account"] == "acct_1" for r in api.control.requests())  # acct_2 never read
    gets = [r for r in log if r["path"] != "/api/v1/analysis/"]
    assert len(gets) <= 20 + 1
    assert {r["path"].rsplit("/", 1)[1] for r in gets} <= set(ids)
    # Yesterday's 3000 completed analyses lie beyond the batch's window: no completed page reaches them.
    completed = list_requests(log, "completed")
    assert completed
    assert max(offset_of(r) for r in completed) < size + PAGE
    # The whole wait costs a few pages per sweep, not a GET per id per cycle.
    sweep_pages = 2 * math.ceil(size / PAGE) + 2
    assert len(log) <= 4 * sweep_pages
    if size == 500:
        assert len(log) < 40


async def test_requests_per_cycle_do_not_grow_from_500_to_5000(per_cycle_max: dict[int, list[int]]) -> None:
    """
    Ten times the ids, and no cycle costs more than the same constant budget: a sweep that needs more
    pages (5000 ids: 2 processing pages, then failed and 4 completed ones) is spread over more cycles.
    """
    if set(per_cycle_max) != {500, 5000}:
        pytest.skip("needs both sizes of test_batch_cost_per_cycle_is_bounded in this session")
    small, large = per_cycle_max[500], per_cycle_max[5000]
    assert max(large) <= BUDGET
    assert max(small) <= BUDGET
    # The budget is what bounds the larger batch: its first sweep needs more requests than one cycle.
    assert large[0] == BUDGET
    assert len(large) > len(small)


async def test_oldest_first_completion_is_found_in_the_listings(
    api: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The common case: a batch whose oldest half finished before the first poll. Only the newer half is
    seen processing, yet the completed listing must reach back to the batch's oldest analysis rather
    than leave the older half to one GET each.
    """
    seed_history(api, 2000)
    now = time.time()
    done = api.control.seed(
        1500, created_from=now - 3600, created_to=now - 1801, statuses=["completed"], return_ids=True
    )["ids"]
    running = api.control.seed(
        1500, created_from=now - 1800, created_to=now - 60, statuses=["processing"], return_ids=True
    )["ids"]
    events, cycles = await run_trigger(monkeypatch, api, done + running, step=complete_at(api, 2))
    assert [e["status"] for e in events] == ["success"]
    assert max(cycles.per_cycle()) <= BUDGET
    gets = [r for r in cycles.log if r["path"] != "/api/v1/analysis/"]
    assert len(gets) <= 2
    assert len(cycles.log) <= 20
    assert max(offset_of(r) for r in list_requests(cycles.log, "completed")) < 3000 + PAGE


# -- outcomes ---------------------------------------------------------------------------------------------


async def test_failed_analysis_in_the_batch_is_a_failed_event(
    api: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_history(api, 1500)
    ids = seed_batch(api, 300, ["processing", "completed", "completed", "completed", "completed"])
    failed = seed_batch(api, 2, ["failed"])
    batch = ids[:150] + failed[:1] + ids[150:] + failed[1:]
    events, cycles = await run_trigger(monkeypatch, api, batch, step=complete_at(api, 2))
    assert [e["status"] for e in events] == ["failed"]
    assert events[0]["failures"] == {failed[0]: SEEDED_FAILURE, failed[1]: SEEDED_FAILURE}
    statuses = {r["id"]: r["status"] for r in events[0]["results"]}
    assert statuses[failed[0]] == "failed"
    assert sum(s == "completed" for s in statuses.values()) == 300
    assert max(cycles.per_cycle()) <= BUDGET


async def test_deadline_gives_a_timeout_event(api: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = seed_batch(api, 50, ["processing", "completed"])
    events, cycles = await run_trigger(monkeypatch, api, ids, end_time=time.time() - 1)
    assert [e["status"] for e in events] == ["timeout"]
    assert events[0]["pending_count"] == 25
    assert "25 of 50" in events[0]["message"]
    assert cycles.waits == []


async def test_transient_faults_do_not_end_the_wait(
    api: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = seed_batch(api, 1200, ["processing", "completed"])
    api.control.set_faults(error_rates={503: 0.2, 502: 0.1}, drop_rate=0.1, burst_429=4, retry_after=0)
    events, cycles = await run_trigger(monkeypatch, api, ids, step=complete_at(api, 4), instant_retries=True)
    api.control.clear_faults()
    assert [e["status"] for e in events] == ["success"]
    assert events[0]["failures"] == {}
    assert events[0]["pending_count"] == 0
    faults = [r for r in cycles.log if r["fault"]]
    assert len(faults) >= 4  # the 429 burst at least, and the drawn 5xx and drops
    assert any(r["status"] == 429 for r in cycles.log)


async def test_a_long_rate_limit_is_waited_out(api: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """More 429s in a row than the failure bound, each asking for 15 minutes: the wait goes on (12.5)."""
    import callcov_provider.waiting as waiting

    ids = seed_batch(api, 50, ["completed"])
    # The waiter's clock moves with the trigger's (instant) sleeps, as the wall clock would.
    clock = [time.time()]
    monkeypatch.setattr(waiting, "time", SimpleNamespace(time=lambda: clock[0]), raising=False)
    refusals = 2 * AnalysisCompletedTrigger.max_consecutive_failures
    api.control.set_faults(burst_429=refusals, retry_after=900)
    original_sleep = Cycles.sleep

    async def sleep_and_advance(self: Cycles, seconds: float) -> None:
        clock[0] += seconds
        await original_sleep(self, seconds)

    monkeypatch.setattr(Cycles, "sleep", sleep_and_advance)
    events, cycles = await run_trigger(
        monkeypatch, api, ids, end_time=clock[0] + 6 * 3600, instant_retries=True
    )
    api.control.clear_faults()
    assert [e["status"] for e in events] == ["success"], events[0]["message"]
    assert sum(r["status"] == 429 for r in cycles.log) == refusals
    assert cycles.waits.count(900.0) >= refusals // 2  # what the API asked, not the poll interval
