"""AnalysisCompletedTrigger without a network: httpx.MockTransport through the hook's seam."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

import callcov_provider.triggers.analysis as trigger_module
from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.models import Analysis
from callcov_provider.tracking import BatchTracker
from callcov_provider.triggers.analysis import FULL_SUMMARY_LIMIT, AnalysisCompletedTrigger, build_event
from tests.unit.conftest import KEY, guard_connection_lookup


class Account:
    """An in-memory account answering the API's GET and list requests; a script may break answers."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        #: Answers to give before serving normally: a status code, or an exception to raise.
        self.script: list[int | Exception] = []
        self.always: int | None = None

    def add(
        self, aid: str, status: str = "processing", created: int = 1_767_225_600, error: str | None = None
    ) -> None:
        self.rows[aid] = {
            "id": aid,
            "created": created,
            "status": status,
            "call": {"agent_id": f"agent-{aid}", "contact_id": f"contact-{aid}"},
            "metadata": {"error_message": error},
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.always is not None:
            return httpx.Response(self.always, json={"detail": "scripted"})
        if self.script:
            answer = self.script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return httpx.Response(answer, json={"detail": "scripted"}, headers={"Retry-After": "0"})
        path = request.url.path
        if path.endswith("/analysis/"):
            params = request.url.params
            rows = sorted(self.rows.values(), key=lambda r: -int(r["created"]))
            if "status_filter" in params:
                rows = [r for r in rows if r["status"] == params["status_filter"]]
            offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100))
            page = rows[offset : offset + limit]
            body = {"object": "list", "data": page, "has_more": offset + len(page) < len(rows)}
            return httpx.Response(200, json=body)
        aid = unquote(path.rsplit("/", 1)[1])
        if aid not in self.rows:
            return httpx.Response(404, json={"detail": "Analysis not found"})
        return httpx.Response(200, json=self.rows[aid])


class Cycles:
    """Stands in for the trigger module's ``asyncio``: an instant sleep that marks each cycle boundary."""

    def __init__(self, account: Account, on_cycle: Callable[[int], None] | None = None) -> None:
        self.account = account
        self.marks: list[int] = []
        self.waits: list[float] = []
        self.on_cycle = on_cycle

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.marks.append(len(self.account.requests))
        if self.on_cycle is not None:
            self.on_cycle(len(self.marks))

    def per_cycle(self) -> list[int]:
        bounds = [0, *self.marks, len(self.account.requests)]
        return [b - a for a, b in itertools.pairwise(bounds)]


@pytest.fixture
def account() -> Account:
    return Account()


@pytest.fixture
def setup(
    connection: Callable[..., None], account: Account, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[AnalysisCompletedTrigger, Cycles, list[CallCovHook]]]:
    """Build a trigger whose hook talks to ``account`` and whose sleeps are instant and recorded."""
    connection(max_retries=0)
    hooks: list[CallCovHook] = []

    def make(
        ids: list[str],
        *,
        end_time: float | None = None,
        poll_interval: float = 2.0,
        on_cycle: Callable[[int], None] | None = None,
    ) -> tuple[AnalysisCompletedTrigger, Cycles, list[CallCovHook]]:
        cycles = Cycles(account, on_cycle)
        monkeypatch.setattr(trigger_module, "asyncio", SimpleNamespace(sleep=cycles.sleep))
        trigger = AnalysisCompletedTrigger(
            analysis_ids=ids,
            callcov_conn_id="callcov_default",
            poll_interval=poll_interval,
            end_time=time.time() + 3600 if end_time is None else end_time,
        )
        trigger.max_first_poll_splay = 0.0  # cycles are counted from the first poll

        def hook() -> CallCovHook:
            made = CallCovHook("callcov_default")
            made.async_transport = httpx.MockTransport(account)
            made.async_sleep = cycles.sleep
            # Airflow 3.3.2+: never the blocking lookup; older: only in the compat helper's worker thread.
            guard_connection_lookup(made, "the trigger must fetch its connection asynchronously")
            hooks.append(made)
            return made

        monkeypatch.setattr(trigger, "_hook", hook)
        return trigger, cycles, hooks

    return make


async def events_of(trigger: AnalysisCompletedTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


# -- serialisation ----------------------------------------------------------------------------------------


def test_serialize_round_trip() -> None:
    trigger = AnalysisCompletedTrigger(
        analysis_ids=("a1", "a2"), callcov_conn_id="cc", poll_interval=15, end_time=1_767_225_600.5
    )
    path, kwargs = trigger.serialize()
    assert path == "callcov_provider.triggers.analysis.AnalysisCompletedTrigger"
    assert kwargs == {
        "analysis_ids": ["a1", "a2"],
        "callcov_conn_id": "cc",
        "poll_interval": 15.0,
        "end_time": 1_767_225_600.5,
    }
    rebuilt = AnalysisCompletedTrigger(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (path, kwargs)


def test_serialize_round_trip_through_airflows_serde() -> None:
    from airflow.serialization.serialized_objects import BaseSerialization

    trigger = AnalysisCompletedTrigger(
        analysis_ids=["a1"], callcov_conn_id="cc", poll_interval=1, end_time=2.0
    )
    path, kwargs = trigger.serialize()
    decoded = BaseSerialization.deserialize(BaseSerialization.serialize(kwargs))
    assert AnalysisCompletedTrigger(**decoded).serialize() == (path, kwargs)


async def test_no_secret_in_the_serialized_form_or_the_event(
    setup: Callable[..., Any], account: Account
) -> None:
    account.add("a1", "completed")
    trigger, _, hooks = setup(["a1"])
    events = await events_of(trigger)
    assert hooks[0]._settings is not None
    assert hooks[0]._settings.secrets  # the connection was read, key and all
    text = repr(trigger.serialize()) + json.dumps(trigger.serialize()) + json.dumps(events) + repr(trigger)
    assert KEY not in text
    assert "TOPSECRET" not in text


# -- the event ------------------------------------------------------------------------------------------


def tracker_with(count: int) -> BatchTracker:
    tracker = BatchTracker([f"anl_{i:06d}" for i in range(count)])
    for aid in tracker.order:
        tracker.observe(
            Analysis.model_validate(
                {"id": aid, "status": "completed", "call": {"agent_id": "agent_7", "contact_id": f"c_{aid}"}}
            )
        )
    return tracker


def test_event_keeps_agent_and_contact_up_to_the_limit() -> None:
    payload = build_event("success", tracker_with(FULL_SUMMARY_LIMIT), "done").payload
    assert len(payload["results"]) == FULL_SUMMARY_LIMIT
    assert payload["results"][0] == {
        "id": "anl_000000",
        "status": "completed",
        "agent_id": "agent_7",
        "contact_id": "c_anl_000000",
        "error_message": None,
    }
    assert payload["pending_count"] == 0


def test_event_above_the_limit_carries_only_the_failures() -> None:
    tracker = tracker_with(10 * FULL_SUMMARY_LIMIT)
    failed = Analysis.model_validate(
        {"id": "anl_bad", "status": "failed", "metadata": {"error_message": "Audio is silent"}}
    )
    tracker.order.append("anl_bad")
    tracker.pending.add("anl_bad")
    tracker.observe(failed)
    payload = build_event("failed", tracker, "done").payload
    assert "results" not in payload
    assert payload["failures"] == {"anl_bad": "Audio is silent"}
    # Ten thousand ids, and the event is still a few hundred bytes.
    assert len(json.dumps(payload)) < 500


# -- run(): exactly one event -------------------------------------------------------------------------------


async def test_one_id_success_is_one_get_per_cycle(setup: Callable[..., Any], account: Account) -> None:
    account.add("a1")

    def finish(cycle: int) -> None:
        if cycle == 2:
            account.rows["a1"]["status"] = "completed"

    trigger, cycles, hooks = setup(["a1"], poll_interval=3, on_cycle=finish)
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["success"]
    assert events[0]["results"][0]["status"] == "completed"
    assert events[0]["failures"] == {}
    assert [r.url.path for r in account.requests] == ["/api/v1/analysis/a1"] * 3
    assert cycles.waits == [3.0, 3.0]
    assert hooks[0]._async_client is None  # closed


async def test_batch_failure_is_a_failed_event_with_reasons(
    setup: Callable[..., Any], account: Account
) -> None:
    for i in range(30):
        account.add(f"a{i}", created=1_767_225_600 + i)

    def progress(cycle: int) -> None:
        for i in range(30):
            account.rows[f"a{i}"]["status"] = "completed"
        account.rows["a7"].update(status="failed", metadata={"error_message": "Audio is silent"})
        account.rows["a9"].update(status="failed", metadata={"error_message": None})

    trigger, cycles, _ = setup([f"a{i}" for i in range(30)], on_cycle=progress)
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["failed"]
    assert events[0]["failures"] == {"a7": "Audio is silent", "a9": None}
    assert [r["id"] for r in events[0]["results"]] == [f"a{i}" for i in range(30)]
    assert max(cycles.per_cycle()) <= AnalysisCompletedTrigger.max_requests_per_cycle
    gets = [r for r in account.requests if not r.url.path.endswith("/analysis/")]
    assert len(gets) <= 1


async def test_timeout_is_a_timeout_event(setup: Callable[..., Any], account: Account) -> None:
    account.add("a1")
    account.add("a2", "completed")
    trigger, cycles, _ = setup(["a1", "a2"], end_time=time.time() - 1)
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["timeout"]
    assert events[0]["pending_count"] == 1
    assert cycles.waits == []


async def test_the_last_wait_is_cut_to_the_deadline(setup: Callable[..., Any], account: Account) -> None:
    account.add("a1")
    trigger, cycles, _ = setup(["a1"], poll_interval=600, end_time=time.time() + 30)
    cycles.on_cycle = lambda n: account.rows["a1"].update(status="completed")
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["success"]
    assert len(cycles.waits) == 1
    assert 0 < cycles.waits[0] <= 30


@pytest.mark.parametrize(("status", "name"), [(401, "AuthenticationError"), (403, "AuthenticationError")])
async def test_auth_error_ends_the_wait_at_once(
    setup: Callable[..., Any], account: Account, status: int, name: str
) -> None:
    account.always = status
    trigger, _, _ = setup(["a1", "a2"])
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["error"]
    assert name in events[0]["message"]
    assert len(account.requests) == 1
    assert KEY not in json.dumps(events)


async def test_unknown_id_ends_the_wait(setup: Callable[..., Any], account: Account) -> None:
    trigger, _, _ = setup(["missing"])
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["error"]
    assert "NotFoundError" in events[0]["message"]


async def test_transient_failures_do_not_end_the_wait(setup: Callable[..., Any], account: Account) -> None:
    account.add("a1", "completed")
    account.add("a2", "completed")
    account.script = [503, 429, httpx.ConnectError("refused"), 502, httpx.ReadTimeout("slow"), 500]
    trigger, cycles, _ = setup(["a1", "a2"])
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["success"]
    assert len(cycles.waits) >= 6


async def test_a_run_of_transient_failures_past_the_bound_is_an_error(
    setup: Callable[..., Any], account: Account
) -> None:
    account.always = 503
    trigger, cycles, _ = setup(["a1", "a2"])
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["error"]
    limit = AnalysisCompletedTrigger.max_consecutive_failures
    assert f"{limit} poll failures in a row" in events[0]["message"]
    assert len(account.requests) == limit
    assert len(cycles.waits) == limit - 1


async def test_a_success_resets_the_failure_count(setup: Callable[..., Any], account: Account) -> None:
    limit = AnalysisCompletedTrigger.max_consecutive_failures
    account.add("a1")

    def script(cycle: int) -> None:
        # Cycle 1 succeeds; 2 to limit fail; limit + 1 succeeds; limit + 2 to 2 * limit fail; ...
        if cycle in (1, limit + 1):
            account.script = [503] * (limit - 1)
        if cycle == 2 * limit + 1:
            account.rows["a1"]["status"] = "completed"

    trigger, cycles, _ = setup(["a1"], on_cycle=script)
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["success"]
    assert len(cycles.waits) == 2 * limit + 1
    assert len(account.requests) == 2 * limit + 2


async def test_batch_whose_oldest_finished_first_is_read_from_the_listings(
    setup: Callable[..., Any], account: Account
) -> None:
    """Oldest half finished before the first poll: one GET bounds the window, no GET per id."""
    ids = [f"a{i:04d}" for i in range(600)]
    for i, aid in enumerate(ids):
        account.add(aid, "completed" if i < 300 else "processing", created=1_767_225_600 + i)
    for i in range(2000):
        account.add(f"old{i}", "completed", created=1_767_000_000 + i)  # an earlier batch

    def finish(cycle: int) -> None:
        for aid in ids:
            account.rows[aid]["status"] = "completed"

    trigger, cycles, _ = setup(ids, on_cycle=finish)
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["success"]
    gets = [r for r in account.requests if not r.url.path.endswith("/analysis/")]
    assert [g.url.path.rsplit("/", 1)[1] for g in gets] == ["a0000"]
    assert max(cycles.per_cycle()) <= AnalysisCompletedTrigger.max_requests_per_cycle
    offsets = [
        int(r.url.params.get("offset", 0)) for r in account.requests if r.url.path.endswith("/analysis/")
    ]
    assert max(offsets) < 1000  # the earlier batch's pages are never read


@pytest.mark.parametrize(
    ("poll_interval", "seconds_left", "expected"),
    [(30.0, 3600.0, 10.0), (2.0, 3600.0, 2.0), (30.0, 5.0, None)],
    ids=["capped-at-max-splay", "within-poll-interval", "skipped-near-deadline"],
)
async def test_first_poll_is_put_off_by_a_random_part_of_the_interval(
    monkeypatch: pytest.MonkeyPatch, poll_interval: float, seconds_left: float, expected: float | None
) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(trigger_module, "asyncio", SimpleNamespace(sleep=record))
    monkeypatch.setattr(trigger_module.random, "uniform", lambda low, high: high)  # the longest draw
    trigger = AnalysisCompletedTrigger(
        analysis_ids=["a1"],
        callcov_conn_id="callcov_default",
        poll_interval=poll_interval,
        end_time=time.time() + seconds_left,
    )
    await trigger._splay()
    assert waits == ([] if expected is None else [expected])


# -- a long rate limit is waited out (issue 12.5) -----------------------------------------------------------


@pytest.mark.parametrize(("retry_after", "expected_wait"), [("900", 900.0), (None, 61.0)])
async def test_a_long_rate_limit_is_waited_out_not_counted(
    setup: Callable[..., Any],
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    retry_after: str | None,
    expected_wait: float,
) -> None:
    """A 429 for longer than the hook's own retries last, twice the failure bound in a row: still success."""
    import callcov_provider.waiting as waiting

    now = [time.time()]
    monkeypatch.setattr(waiting, "time", SimpleNamespace(time=lambda: now[0]))
    limit = AnalysisCompletedTrigger.max_consecutive_failures
    account.add("a1", "completed")
    account.add("a2", "completed")
    refused = {"left": 2 * limit + 1}
    serve = account.__call__

    def pacing(request: httpx.Request) -> httpx.Response:
        if refused["left"] > 0:
            refused["left"] -= 1
            account.requests.append(request)
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            return httpx.Response(429, json={"detail": "Rate limit exceeded"}, headers=headers)
        return serve(request)

    def advance(_: int) -> None:
        now[0] += cycles.waits[-1]

    trigger, cycles, hooks = setup(
        ["a1", "a2"], poll_interval=5, end_time=now[0] + 6 * 3600, on_cycle=advance
    )
    from callcov_provider.hooks.pacing import forget_pacers

    monkeypatch.setattr(trigger, "_hook", _hook_on(trigger, pacing, cycles, hooks, lambda: now[0]))
    forget_pacers()
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["success"], events
    assert refused["left"] == 0
    # The trigger waited what the API asked (after the hook's own retries, which a 61 s wait allows).
    assert expected_wait in cycles.waits


async def test_the_deadline_still_ends_a_rate_limited_wait(
    setup: Callable[..., Any], account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    import callcov_provider.waiting as waiting

    now = [time.time()]
    monkeypatch.setattr(waiting, "time", SimpleNamespace(time=lambda: now[0]))
    account.always = 429
    trigger, cycles, _ = setup(["a1", "a2"], poll_interval=5, end_time=now[0] + 1000)
    cycles.on_cycle = lambda _: now.__setitem__(0, now[0] + cycles.waits[-1])
    events = await events_of(trigger)
    assert [e["status"] for e in events] == ["timeout"]
    assert sum(cycles.waits) <= 1000 + 61 * 25  # the hook's own retries, then waits cut to the deadline


def _hook_on(
    trigger: AnalysisCompletedTrigger,
    handler: Callable[[httpx.Request], httpx.Response],
    cycles: Cycles,
    hooks: list[CallCovHook],
    clock: Callable[[], float],
) -> Callable[[], CallCovHook]:
    from callcov_provider.hooks.pacing import QuotaPacer

    def hook() -> CallCovHook:
        made = CallCovHook("callcov_default")
        made._pacer = QuotaPacer(clock=clock)  # the pacer's clock is the test's, as the trigger's is
        made.async_transport = httpx.MockTransport(handler)
        made.async_sleep = cycles.sleep
        hooks.append(made)
        return made

    return hook


# -- bounded events (issue 12.9) ---------------------------------------------------------------------------


def test_fifty_thousand_failures_make_an_event_under_a_megabyte() -> None:
    tracker = BatchTracker([f"anl_{i:06d}-{'f' * 30}" for i in range(50_000)])
    for aid in tracker.order:
        tracker.observe(
            Analysis.model_validate(
                {
                    "id": aid,
                    "status": "failed",
                    "metadata": {"error_message": "Unsupported codec " + "x" * 80},
                }
            )
        )
    payload = build_event("failed", tracker, "50000 of 50000 failed").payload
    assert len(json.dumps(payload).encode()) < 1_000_000
    assert payload["counts"] == {"total": 50_000, "completed": 0, "failed": 50_000, "pending": 0}
    assert payload["failures_complete"] is False
    assert 0 < len(payload["failures"]) < 50_000


def test_summaries_too_large_for_an_event_are_left_to_the_completion_method() -> None:
    tracker = BatchTracker([f"anl_{i:04d}" for i in range(FULL_SUMMARY_LIMIT)])
    for aid in tracker.order:
        tracker.observe(
            Analysis.model_validate(
                {"id": aid, "status": "completed", "call": {"agent_id": "a" * 500, "contact_id": "c" * 500}}
            )
        )
    payload = build_event("success", tracker, "done").payload
    assert "results" not in payload
    assert len(json.dumps(payload).encode()) < 1_000_000
