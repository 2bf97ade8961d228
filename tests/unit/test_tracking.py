"""BatchTracker: the request plan for waiting on a batch, driven against an in-memory account."""

from __future__ import annotations

import pytest

from callcov_provider.models import Analysis, AnalysisList
from callcov_provider.tracking import BatchTracker, GetRequest, ListRequest, PollRequest, PollResponse


class FakeAccount:
    """Analyses of one account, listed newest first as the API does; counts the requests it answers."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, object]] = {}
        self.requests: list[PollRequest] = []

    def add(self, aid: str, created: int, status: str = "processing", error: str | None = None) -> None:
        self.rows[aid] = {
            "id": aid,
            "created": created,
            "status": status,
            "call": {"agent_id": f"agent-{aid}", "contact_id": f"contact-{aid}"},
            "metadata": {"error_message": error},
        }

    def set(self, aid: str, status: str, error: str | None = None) -> None:
        self.rows[aid]["status"] = status
        self.rows[aid]["metadata"] = {"error_message": error}

    def answer(self, request: PollRequest) -> PollResponse:
        self.requests.append(request)
        if isinstance(request, GetRequest):
            return Analysis.model_validate(self.rows[request.analysis_id])
        # Newest first; rows without `created` (an API that omits it) keep their insertion order.
        ordered = sorted(self.rows.values(), key=lambda r: -int(r.get("created", 0)))  # type: ignore[call-overload]
        matching = [r for r in ordered if r["status"] == request.status_filter]
        page = matching[request.offset : request.offset + request.limit]
        return AnalysisList.model_validate(
            {"data": page, "has_more": request.offset + len(page) < len(matching), "total": len(matching)}
        )


def run_cycle(tracker: BatchTracker, account: FakeAccount, budget: int | None = None) -> int:
    made = 0
    while budget is None or made < budget:
        request = tracker.next_request()
        if request is None:
            break
        tracker.feed(account.answer(request))
        made += 1
    return made


def test_single_id_is_one_get_per_cycle() -> None:
    account = FakeAccount()
    account.add("a1", 100)
    tracker = BatchTracker(["a1"])
    assert run_cycle(tracker, account) == 1
    assert not tracker.done
    account.set("a1", "completed")
    assert run_cycle(tracker, account) == 1
    assert tracker.done
    assert account.requests == [GetRequest("a1"), GetRequest("a1")]
    assert tracker.summaries()[0]["status"] == "completed"


def test_batch_still_processing_costs_one_list_request() -> None:
    account = FakeAccount()
    for i in range(50):
        account.add(f"a{i}", 1000 + i)
    tracker = BatchTracker([f"a{i}" for i in range(50)])
    assert run_cycle(tracker, account) == 1
    assert account.requests == [ListRequest("processing", 0)]
    assert len(tracker.pending) == 50


def test_batch_resolves_from_listings_without_gets() -> None:
    account = FakeAccount()
    ids = [f"a{i}" for i in range(30)]
    for i, aid in enumerate(ids):
        account.add(aid, 1000 + i)
    account.add("other-old", 10, status="completed")  # older than the batch: never needed
    tracker = BatchTracker(ids)
    run_cycle(tracker, account)
    for aid in ids[:20]:
        account.set(aid, "completed")
    account.set("a25", "failed", "Audio is silent")
    run_cycle(tracker, account)
    assert not any(isinstance(r, GetRequest) for r in account.requests)
    assert len(tracker.finished) == 21
    assert tracker.failures() == {"a25": "Audio is silent"}
    for aid in ids:
        if aid not in tracker.finished:
            account.set(aid, "completed")
    run_cycle(tracker, account)
    assert tracker.done
    summaries = tracker.summaries()
    assert [s["id"] for s in summaries] == ids
    assert summaries[25] == {
        "id": "a25",
        "status": "failed",
        "agent_id": "agent-a25",
        "contact_id": "contact-a25",
        "error_message": "Audio is silent",
    }


def test_requests_per_cycle_do_not_grow_with_the_batch_under_a_budget() -> None:
    for size in (10, 5000):
        account = FakeAccount()
        ids = [f"a{i}" for i in range(size)]
        for i, aid in enumerate(ids):
            account.add(aid, 1000 + i)
        tracker = BatchTracker(ids)
        cycles = 0
        while not tracker.done:
            made = run_cycle(tracker, account, budget=5)
            assert made <= 5
            cycles += 1
            for aid in ids[: len(ids) * cycles // 4]:
                account.set(aid, "completed")
            assert cycles < 50
        assert all(s["status"] == "completed" for s in tracker.summaries())


def test_already_finished_batch_bounds_its_scan_with_one_get() -> None:
    account = FakeAccount()
    for i in range(3000):
        account.add(f"old{i}", i, status="completed")  # a long history before the batch
    ids = [f"a{i}" for i in range(5)]
    for i, aid in enumerate(ids):
        account.add(aid, 100_000 + i, status="completed")
    tracker = BatchTracker(ids)
    run_cycle(tracker, account)
    assert tracker.done
    lists = [r for r in account.requests if isinstance(r, ListRequest)]
    # processing (empty), then one page of completed, where all are found: the failed listing and the
    # history are never read.
    assert [r.status_filter for r in lists] == ["processing", "completed"]
    assert sum(isinstance(r, GetRequest) for r in account.requests) == 1


def test_unlisted_ids_fall_back_to_single_gets() -> None:
    account = FakeAccount()
    account.add("a1", 500, status="completed")
    account.add("a2", 10, status="completed")  # far older than the first id, below the window
    for i in range(1200):
        account.add(f"x{i}", 100 + i % 300, status="completed")
    tracker = BatchTracker(["a1", "a2"])
    run_cycle(tracker, account)
    assert tracker.done
    assert GetRequest("a2") in account.requests


def test_duplicate_ids_are_waited_on_once_and_empty_batch_is_refused() -> None:
    tracker = BatchTracker(["a", "b", "a"])
    assert tracker.order == ["a", "b"]
    with pytest.raises(ValueError, match="at least one"):
        BatchTracker([])


def test_feed_without_request_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        BatchTracker(["a", "b"]).feed(AnalysisList())


# -- a sweep never costs more than single GETs of the pending ids -------------------------------------------


def test_a_sweep_never_costs_more_than_reading_the_pending_ids_one_by_one() -> None:
    """A day-old batch in an account with 20,000 newer analyses: listing it costs 22 requests a sweep."""
    account = FakeAccount()
    ids = [f"a{i:03d}" for i in range(300)]
    for i, aid in enumerate(ids):
        account.add(aid, 1000 + i)
    for i in range(20_000):
        account.add(f"newer{i}", 100_000 + i, status="completed")
    tracker = BatchTracker(ids)
    costs: list[tuple[int, int]] = []  # (pending at the sweep's start, requests the sweep made)

    def sweep() -> None:
        pending = len(tracker.pending)
        costs.append((pending, run_cycle(tracker, account)))

    sweep()
    for aid in ids[:290]:
        account.set(aid, "completed")
    sweep()  # 290 of 300 finished: the listings are the cheaper read
    assert len(tracker.pending) == 10
    for _ in range(3):  # the last ten still running: the processing page tells, one request a sweep
        sweep()
        assert costs[-1] == (10, 1)
    for aid in ids[290:]:
        account.set(aid, "completed")
    while not tracker.done:
        sweep()
        assert len(costs) < 9
    assert all(made <= pending for pending, made in costs), costs
    assert costs[1][1] > 20  # the listings were read while they were cheaper than 300 GETs
    assert sum(made for _, made in costs[5:]) <= 10 + 9  # not 22 a sweep for the last ten ids


def test_a_list_sweep_is_cut_when_it_has_spent_as_many_requests_as_ids_are_pending() -> None:
    account = FakeAccount()
    ids = [f"a{i}" for i in range(8)]
    for i, aid in enumerate(ids):
        account.add(aid, 1000 + i, status="completed")
    for i in range(30_000):
        account.add(f"newer{i}", 100_000 + i, status="completed")
    tracker = BatchTracker(ids)
    assert run_cycle(tracker, account) <= 8
    while not tracker.done:
        assert run_cycle(tracker, account) <= len(ids)
    assert len(account.requests) <= 2 * len(ids)


# -- carrying a sweep's findings to the next (reschedule mode) ---------------------------------------------


def test_state_round_trips_through_json_and_resumes_where_it_stopped() -> None:
    import json

    account = FakeAccount()
    ids = [f"a{i}" for i in range(60)]
    for aid in ids:
        account.rows[aid] = {
            "id": aid,
            "status": "failed" if aid == "a3" else "completed",
            "call": {"agent_id": "ag", "contact_id": f"c-{aid}"},
            "metadata": {"error_message": "silent" if aid == "a3" else None},
        }
    # The API omits `created`: the listings cannot be bounded, every id is read one by one.
    sweeps = 0
    state: object = None
    while True:
        tracker = BatchTracker(ids)  # a new process each time, as a reschedule poke is
        tracker.restore(json.loads(json.dumps(state)))
        run_cycle(tracker, account)
        state = tracker.state()
        sweeps += 1
        if tracker.done:
            break
        assert sweeps <= -(-len(ids) // 20) + 3
    assert tracker.failures() == {"a3": "silent"}
    assert tracker.summaries()[5] == {
        "id": "a5",
        "status": "completed",
        "agent_id": "ag",
        "contact_id": "c-a5",
        "error_message": None,
    }


def test_rotation_reads_other_ids_each_sweep_when_nothing_is_carried() -> None:
    account = FakeAccount()
    ids = [f"a{i}" for i in range(100)]
    for aid in ids:
        account.rows[aid] = {"id": aid, "status": "completed"}
    seen: set[str] = set()
    for rotation in range(5):
        account.requests.clear()
        run_cycle(BatchTracker(ids, rotation=rotation), account)
        seen |= {r.analysis_id for r in account.requests if isinstance(r, GetRequest)}
    assert seen == set(ids)


def test_unreadable_state_is_ignored() -> None:
    tracker = BatchTracker(["a", "b"])
    for junk in (None, [], {"finished": {"a": ["bogus", None, None, None]}}, {"finished": "x", "floor": "y"}):
        tracker.restore(junk)
    assert tracker.pending == {"a", "b"}
