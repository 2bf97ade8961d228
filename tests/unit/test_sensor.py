"""AnalysisCompletedSensor: inputs, poke/reschedule/deferrable waits, timeouts, soft_fail (requests-mock)."""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests_mock as rm

from callcov_provider.exceptions import AnalysisFailedError, CallCovError, InvalidRequestError
from callcov_provider.sensors.analysis import AnalysisCompletedSensor
from callcov_provider.triggers.analysis import AnalysisCompletedTrigger
from callcov_provider.version_compat import AIRFLOW_V_3_0_PLUS, get_base_airflow_version_tuple
from tests.unit.conftest import API


class FakeAccount:
    """
    One account's analyses behind requests-mock: ``GET /analysis/`` (newest first, status filter, agent,
    contact, search, limit, offset) and ``GET /analysis/{id}``; counts what it answers.
    """

    def __init__(self, mock: rm.Mocker) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.lists: list[dict[str, str]] = []
        self.gets: list[str] = []
        mock.get(f"{API}/analysis/", json=self._list)
        mock.get(re.compile(rf"{re.escape(API)}/analysis/[^/?]+$"), json=self._get)

    def add(
        self, aid: str, created: int = 1_767_225_600, status: str = "processing", error: str | None = None
    ) -> None:
        self.rows[aid] = {
            "id": aid,
            "object": "analysis",
            "created": created,
            "status": status,
            "call": {"agent_id": f"agent-{aid}", "contact_id": f"contact-{aid}"},
            "results": {"coaching": {"customer_effort_score": 2}} if status == "completed" else None,
            "metadata": {"error_message": error},
        }

    def set(self, aid: str, status: str, error: str | None = None) -> None:
        self.rows[aid]["status"] = status
        self.rows[aid]["metadata"] = {"error_message": error}

    def _list(self, request: Any, context: Any) -> dict[str, Any]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        self.lists.append(query)
        rows = sorted(self.rows.values(), key=lambda r: -int(r.get("created", 0)))
        if "status_filter" in query:
            rows = [r for r in rows if r["status"] == query["status_filter"]]
        for name in ("agent_id", "contact_id"):
            if name in query:
                rows = [r for r in rows if r["call"][name] == query[name]]
        if "search" in query:
            rows = [r for r in rows if query["search"].lower() in str(r["call"]).lower()]
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
        page = rows[offset : offset + limit]
        return {
            "object": "list",
            "data": page,
            "has_more": offset + len(page) < len(rows),
            "total": len(rows),
        }

    def _get(self, request: Any, context: Any) -> dict[str, Any]:
        aid = unquote(urlsplit(request.url).path.rsplit("/", 1)[1])
        self.gets.append(aid)
        if aid not in self.rows:
            context.status_code = 404
            return {"detail": "Analysis not found"}
        return self.rows[aid]

    @property
    def calls(self) -> int:
        return len(self.lists) + len(self.gets)


@pytest.fixture
def account(connection: Callable[..., None]) -> Iterator[FakeAccount]:
    with rm.Mocker() as mock:
        yield FakeAccount(mock)


class FakeTI:
    def __init__(self, first_reschedule: datetime | None = None) -> None:
        self.first_reschedule = first_reschedule
        self.xcoms: dict[str, Any] = {}
        # What Airflow 2.11's reschedule mode reads to find the first try's start in the database.
        self.dag_id, self.task_id, self.run_id, self.map_index, self.max_tries = "d", "wait", "r", -1, 0

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self.first_reschedule

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def ctx(ti: FakeTI | None = None) -> Any:
    return {"ti": ti or FakeTI()}


def reschedule_ctx(monkeypatch: pytest.MonkeyPatch, first_reschedule: datetime) -> Any:
    """
    A context whose task was first scheduled at ``first_reschedule``, for reschedule mode.

    Airflow 3 asks the task instance (``ti.get_first_reschedule_date``); Airflow 2.11 queries the
    metadata database for the first try's start date (``airflow.sensors.base._orig_start_date``), which
    is stood in for here.
    """
    if not AIRFLOW_V_3_0_PLUS:
        import airflow.sensors.base as base_sensor

        monkeypatch.setattr(base_sensor, "_orig_start_date", lambda **_: first_reschedule)
    return ctx(FakeTI(first_reschedule=first_reschedule))


def sensor(**kwargs: Any) -> AnalysisCompletedSensor:
    args: dict[str, Any] = {"task_id": "wait", "analysis_id": "a1", "poke_interval": 5, "timeout": 600}
    args.update(kwargs)
    return AnalysisCompletedSensor(**args)


class LazyIds(Sequence[str]):
    """A lazy, generator-backed sequence, like the XCom of a mapped task: not a ``list``."""

    def __init__(self, ids: list[str | None]) -> None:
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> Any:
        return self._ids[index]

    def __iter__(self) -> Iterator[str]:
        return (aid for aid in self._ids)  # type: ignore[misc]


# -- construction and inputs --------------------------------------------------------------------------


def test_the_sensors_own_arguments_are_templated() -> None:
    base = {"self", "kwargs", "poke_interval", "timeout"}  # validated by BaseSensorOperator at construction
    params = set(inspect.signature(AnalysisCompletedSensor.__init__).parameters) - base
    assert params <= set(AnalysisCompletedSensor.template_fields)
    assert "analysis_id" in AnalysisCompletedSensor.template_fields


def test_nothing_is_looked_up_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import BaseHook

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("looked up a connection at construction")

    monkeypatch.setattr(BaseHook, "get_connection", explode)
    s = sensor(analysis_id="{{ ti.xcom_pull('submit') }}", callcov_conn_id="nope", deferrable=True)
    assert "hook" not in vars(s)


@pytest.mark.parametrize(
    "ids",
    [
        ["a1", "a2", "a3"],
        ("a1", "a2", "a3"),
        LazyIds(["a1", "a2", "a3"]),
    ],
    ids=["list", "tuple", "lazy-sequence"],
)
def test_any_sequence_of_ids_is_accepted(account: FakeAccount, ids: Sequence[str]) -> None:
    for aid in ("a1", "a2", "a3"):
        account.add(aid, status="completed")
    result = sensor(analysis_id=ids).execute(ctx())
    assert [r["id"] for r in result] == ["a1", "a2", "a3"]
    assert result[0] == {
        "id": "a1",
        "status": "completed",
        "agent_id": "agent-a1",
        "contact_id": "contact-a1",
        "error_message": None,
    }
    # Three ids cost three GETs, no more than the listings would (processing, one GET, completed).
    assert account.gets == ["a1", "a2", "a3"]
    assert account.lists == []


def test_one_id_returns_the_full_analysis(account: FakeAccount) -> None:
    account.add("a1", status="completed")
    result = sensor(analysis_id="a1").execute(ctx())
    assert result["id"] == "a1"
    assert result["results"]["coaching"]["customer_effort_score"] == 2
    assert account.lists == []


def test_none_entries_are_skipped_with_a_warning(account: FakeAccount) -> None:
    from tests.unit.conftest import capture_log_events

    account.add("a1", status="completed")
    account.add("a3", status="completed")
    with capture_log_events() as logs:
        result = sensor(analysis_id=LazyIds(["a1", None, "a3", ""])).execute(ctx())
    assert [r["id"] for r in result] == ["a1", "a3"]
    warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert any("2 of 4" in w for w in warnings), warnings


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "names no analysis"),
        ("  ", "names no analysis"),
        ({"a": 1}, "sequence of ids"),
        (42, "sequence of ids"),
    ],
)
def test_unusable_analysis_id_names_the_field(account: FakeAccount, value: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as info:
        sensor(analysis_id=value).execute(ctx())
    assert info.value.field == "analysis_id"
    assert account.calls == 0


@pytest.mark.parametrize("deferrable", [True, False])
@pytest.mark.parametrize("value", [[], [None, ""]])
def test_a_batch_with_no_ids_left_has_nothing_to_wait_for(
    account: FakeAccount, value: list[Any], deferrable: bool
) -> None:
    # Every submission of the batch failed its own task: the report downstream still runs.
    assert sensor(analysis_id=value, deferrable=deferrable).execute(ctx()) == []
    assert account.calls == 0


# -- poke and reschedule ------------------------------------------------------------------------------


def test_poke_is_false_until_every_analysis_finished(account: FakeAccount) -> None:
    for aid in ("a1", "a2"):
        account.add(aid)
    s = sensor(analysis_id=["a1", "a2"])
    assert s.poke(ctx()) is False
    account.set("a1", "completed")
    assert s.poke(ctx()) is False
    account.set("a2", "failed", "Audio is silent")
    with pytest.raises(AnalysisFailedError, match="a2: Audio is silent"):
        s.poke(ctx())
    assert set(account.gets) <= {"a1", "a2"}


def test_failures_name_every_failed_id_and_reason(account: FakeAccount) -> None:
    account.add("a1", status="failed", error="Audio is silent")
    account.add("a2", status="completed")
    account.add("a3", status="failed", error="Unsupported codec")
    with pytest.raises(AnalysisFailedError) as info:
        sensor(analysis_id=["a1", "a2", "a3"]).execute(ctx())
    assert info.value.failures == {"a1": "Audio is silent", "a3": "Unsupported codec"}
    assert "a1: Audio is silent" in str(info.value)
    assert "a3: Unsupported codec" in str(info.value)


def test_failures_are_returned_when_not_failing_on_them(account: FakeAccount) -> None:
    account.add("a1", status="failed", error="Audio is silent")
    account.add("a2", status="completed")
    result = sensor(analysis_id=["a1", "a2"], fail_on_failed=False).execute(ctx())
    assert [(r["id"], r["status"], r["error_message"]) for r in result] == [
        ("a1", "failed", "Audio is silent"),
        ("a2", "completed", None),
    ]
    single = sensor(analysis_id="a1", fail_on_failed=False).execute(ctx())
    assert single["status"] == "failed"
    assert single["metadata"]["error_message"] == "Audio is silent"


class FakeClock:
    """Stands in for the base sensor module's ``time``: monotonic time moves only when slept on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time() + self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def sensor_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    # Airflow's BaseSensorOperator lives in the task SDK on Airflow 3, in airflow.sensors.base on 2.11.
    if AIRFLOW_V_3_0_PLUS:
        import airflow.sdk.bases.sensor as base_sensor
    else:
        import airflow.sensors.base as base_sensor

    clock = FakeClock()
    monkeypatch.setattr(base_sensor, "time", clock)
    return clock


def test_poke_mode_waits_then_succeeds(account: FakeAccount, sensor_clock: FakeClock) -> None:
    account.add("a1")
    account.add("a2")
    pokes = 0
    s = sensor(analysis_id=["a1", "a2"], poke_interval=10, timeout=600)
    original = s.poke

    def poke(context: Any) -> Any:
        nonlocal pokes
        pokes += 1
        if pokes == 3:
            account.set("a1", "completed")
            account.set("a2", "completed")
        return original(context)

    s.poke = poke  # type: ignore[method-assign]
    result = s.execute(ctx())
    assert [r["status"] for r in result] == ["completed", "completed"]
    assert sensor_clock.waits == [10, 10]


@pytest.mark.parametrize("soft_fail", [False, True])
def test_poke_mode_times_out_through_airflow(
    account: FakeAccount, sensor_clock: FakeClock, soft_fail: bool
) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException

    account.add("a1")
    s = sensor(analysis_id="a1", poke_interval=10, timeout=25, soft_fail=soft_fail)
    with pytest.raises(AirflowSkipException if soft_fail else AirflowSensorTimeout) as info:
        s.execute(ctx())
    if not soft_fail:
        assert not isinstance(info.value, AirflowSkipException)
    assert len(account.gets) == 4  # at 0, 10, 20 and 30 seconds
    assert sensor_clock.waits == [10, 10, 10]


@pytest.mark.parametrize("soft_fail", [False, True])
def test_reschedule_mode_times_out_through_airflow(
    account: FakeAccount, soft_fail: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException

    account.add("a1")
    first = datetime.now(UTC) - timedelta(hours=1)
    s = sensor(analysis_id="a1", mode="reschedule", timeout=60, soft_fail=soft_fail)
    with pytest.raises(AirflowSkipException if soft_fail else AirflowSensorTimeout):
        s.execute(reschedule_ctx(monkeypatch, first))
    assert account.gets == ["a1"]


def test_reschedule_mode_reschedules_before_the_timeout(
    account: FakeAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not in the compat layer; airflow.exceptions has it on every version (re-exported from the SDK on 3.x).
    from airflow.exceptions import AirflowRescheduleException

    account.add("a1")
    s = sensor(analysis_id="a1", mode="reschedule", poke_interval=60, timeout=3600)
    with pytest.raises(AirflowRescheduleException):
        s.execute(reschedule_ctx(monkeypatch, datetime.now(UTC) - timedelta(minutes=5)))


# -- deferrable ---------------------------------------------------------------------------------------


def test_deferrable_pokes_once_then_defers_with_the_trigger(account: FakeAccount) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    for aid in ("a1", "a2", "a3"):
        account.add(aid)
    s = sensor(analysis_id=LazyIds(["a1", None, "a2", "a3"]), deferrable=True, poke_interval=15, timeout=900)
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        s.execute(ctx())
    after = time.time()
    trigger = info.value.trigger
    assert isinstance(trigger, AnalysisCompletedTrigger)
    _, kwargs = trigger.serialize()
    assert set(kwargs) == {"analysis_ids", "callcov_conn_id", "poll_interval", "end_time"}
    assert kwargs["analysis_ids"] == ["a1", "a2", "a3"]
    assert kwargs["callcov_conn_id"] == "callcov_default"
    assert kwargs["poll_interval"] == 15.0
    assert before + 900 <= kwargs["end_time"] <= after + 900
    assert info.value.method_name == "execute_complete"
    assert info.value.timeout > timedelta(seconds=900)
    # Poked once before deferring: three ids, read one by one (no more than a list sweep would cost).
    assert account.gets == ["a1", "a2", "a3"]
    assert account.calls == 3


def test_deferrable_returns_at_once_when_already_finished(account: FakeAccount) -> None:
    account.add("a1", status="completed")
    result = sensor(analysis_id="a1", deferrable=True).execute(ctx())
    assert result["status"] == "completed"


def test_flags_may_be_rendered_text(account: FakeAccount, sensor_clock: FakeClock) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout, TaskDeferred

    account.add("a1")
    with pytest.raises(TaskDeferred):
        sensor(analysis_id="a1", deferrable="True").execute(ctx())
    # "False" is text, and truthy: it must still mean a wait in the worker, here timing out there.
    with pytest.raises(AirflowSensorTimeout):
        sensor(analysis_id="a1", deferrable="False", poke_interval=10, timeout=5).execute(ctx())
    account.set("a1", "failed", "Audio is silent")
    result = sensor(analysis_id="a1", fail_on_failed="false").execute(ctx())
    assert result["status"] == "failed"


def summaries(*rows: tuple[str, str, str | None]) -> list[dict[str, Any]]:
    return [
        {"id": aid, "status": status, "agent_id": f"agent-{aid}", "contact_id": None, "error_message": error}
        for aid, status, error in rows
    ]


def ev(status: str, results: list[dict[str, Any]], failures: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"status": status, "message": f"{status} message", "results": results, "failures": failures or {}}


def test_execute_complete_success_one_id_reads_the_full_analysis(account: FakeAccount) -> None:
    account.add("a1", status="completed")
    result = sensor(analysis_id="a1").execute_complete(
        ctx(), ev("success", summaries(("a1", "completed", None)))
    )
    assert result["results"]["coaching"]["customer_effort_score"] == 2
    assert account.gets == ["a1"]


def test_execute_complete_success_many_ids_is_the_compact_list(account: FakeAccount) -> None:
    rows = summaries(("a1", "completed", None), ("a2", "completed", None))
    result = sensor(analysis_id=["a1", "a2"]).execute_complete(ctx(), ev("success", rows))
    assert result == rows
    assert account.calls == 0


def test_execute_complete_failed_names_every_failure(account: FakeAccount) -> None:
    rows = summaries(("a1", "failed", "Audio is silent"), ("a2", "completed", None), ("a3", "failed", None))
    failures = {"a1": "Audio is silent", "a3": None}
    with pytest.raises(AnalysisFailedError) as info:
        sensor(analysis_id=["a1", "a2", "a3"]).execute_complete(ctx(), ev("failed", rows, failures))
    assert info.value.failures == failures
    assert "a1: Audio is silent" in str(info.value)
    assert "a3: no reason given" in str(info.value)
    assert "2 analyses failed" in str(info.value)


def test_execute_complete_failed_is_returned_when_not_failing_on_it(account: FakeAccount) -> None:
    rows = summaries(("a1", "failed", "Audio is silent"), ("a2", "completed", None))
    s = sensor(analysis_id=["a1", "a2"], fail_on_failed=False)
    assert s.execute_complete(ctx(), ev("failed", rows, {"a1": "Audio is silent"})) == rows
    account.add("a1", status="failed", error="Audio is silent")
    single = sensor(analysis_id="a1", fail_on_failed=False)
    result = single.execute_complete(ctx(), ev("failed", rows[:1], {"a1": "Audio is silent"}))
    assert result["status"] == "failed"
    assert result["metadata"]["error_message"] == "Audio is silent"


def test_execute_complete_reads_a_large_batch_back_in_the_same_shape(account: FakeAccount) -> None:
    """Above 1,000 ids the event carries no summaries: the result is read back, agent and contact kept."""
    ids = [f"a{i:04d}" for i in range(1500)]
    for i, aid in enumerate(ids):
        account.add(
            aid,
            created=1_767_225_600 + i,
            status="failed" if aid == "a0007" else "completed",
            error="Audio is silent" if aid == "a0007" else None,
        )
    event = {
        "status": "failed",
        "message": "1 of 1500 failed",
        "failures": {"a0007": "Audio is silent"},
        "failures_complete": True,
    }
    result = sensor(analysis_id=["stale"], fail_on_failed=False).execute_complete(
        ctx(), event, analysis_ids=ids
    )
    assert [r["id"] for r in result] == ids
    assert result[7] == {
        "id": "a0007",
        "status": "failed",
        "agent_id": "agent-a0007",
        "contact_id": "contact-a0007",
        "error_message": "Audio is silent",
    }
    assert {r["status"] for r in result[:7] + result[8:]} == {"completed"}
    assert all(r["agent_id"] == f"agent-{r['id']}" for r in result)
    assert account.calls <= 10  # read back from the listings, not one GET per id
    with pytest.raises(AnalysisFailedError, match="a0007: Audio is silent"):
        sensor(analysis_id=ids).execute_complete(ctx(), event, analysis_ids=ids)


def test_execute_complete_timeout_is_airflows_sensor_timeout(account: FakeAccount) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    with pytest.raises(AirflowSensorTimeout, match="timeout message"):
        sensor(analysis_id=["a1", "a2"]).execute_complete(ctx(), ev("timeout", []))


@pytest.mark.parametrize("soft_fail", [False, True])
def test_deferred_timeout_goes_through_airflows_conversion(account: FakeAccount, soft_fail: bool) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException

    s = sensor(analysis_id=["a1", "a2"], deferrable=True, soft_fail=soft_fail)
    event = ev("timeout", summaries(("a1", "processing", None), ("a2", "completed", None)))
    with pytest.raises(AirflowSkipException if soft_fail else AirflowSensorTimeout) as info:
        s.resume_execution("execute_complete", {"event": event}, ctx())
    if not soft_fail:
        assert not isinstance(info.value, AirflowSkipException)


def test_airflows_own_deferral_timeout_as_each_version_handles_it(account: FakeAccount) -> None:
    """
    Airflow's own deferral timeout, the backstop behind the trigger's deadline (which normally ends the
    wait first, through ``execute_complete`` and the same path on every version), is turned into an
    exception by Airflow's ``BaseSensorOperator.resume_execution``, which differs by version:

    * 2.11: no ``TaskDeferralTimeout`` yet: a ``TaskDeferralError`` (an ordinary, retryable failure), or
      a skip under ``soft_fail``;
    * 3.0 to 3.1.7: ``AirflowSensorTimeout``, with or without ``soft_fail`` (the conversion happens outside
      the ``soft_fail`` handler);
    * 3.1.8 and later: ``AirflowSensorTimeout``, or a skip under ``soft_fail``.
    """
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException

    fail = ("__fail__", {"error": "Trigger timeout"}, ctx())
    strict_error: type[Exception] = AirflowSensorTimeout
    if not AIRFLOW_V_3_0_PLUS:
        from airflow.exceptions import TaskDeferralError

        strict_error = TaskDeferralError
    with pytest.raises(strict_error) as info:
        sensor(deferrable=True).resume_execution(*fail)
    if not AIRFLOW_V_3_0_PLUS:
        assert not isinstance(info.value, AirflowSensorTimeout)
    soft_fail_skips = not AIRFLOW_V_3_0_PLUS or get_base_airflow_version_tuple() >= (3, 1, 8)
    with pytest.raises(AirflowSkipException if soft_fail_skips else AirflowSensorTimeout):
        sensor(deferrable=True, soft_fail=True).resume_execution(*fail)


def test_execute_complete_error_is_a_callcov_error(account: FakeAccount) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    with pytest.raises(CallCovError, match="error message") as info:
        sensor(analysis_id=["a1"]).execute_complete(ctx(), ev("error", []))
    assert not isinstance(info.value, AnalysisFailedError)
    assert not isinstance(info.value, AirflowSensorTimeout)


# -- one shape at every size, from the ids waited on -----------------------------------------------------


@pytest.mark.parametrize("size", [3, 1500])
def test_every_mode_returns_the_same_shape_at_every_size(account: FakeAccount, size: int) -> None:
    import asyncio

    from callcov_provider.triggers.analysis import build_event

    ids = [f"a{i:04d}" for i in range(size)]
    for i, aid in enumerate(ids):
        account.add(aid, created=1_767_225_600 + i, status="completed")
    with_repeats = [*ids, ids[0], ids[1]]
    poked = sensor(analysis_id=with_repeats).execute(ctx())
    # The deferrable path: the event a trigger would send for this batch, then the completion method.
    from callcov_provider.waiting import Waiter

    waiter = Waiter(with_repeats, budget=None)
    waiter.restore(
        {
            "v": 1,
            "tracker": {
                "finished": {r["id"]: ["completed", r["agent_id"], r["contact_id"], None] for r in poked}
            },
        }
    )
    event = build_event("success", waiter.tracker, "done").payload
    deferred = sensor(analysis_id=["not", "these"]).execute_complete(ctx(), event, analysis_ids=with_repeats)
    assert poked == deferred
    assert [r["id"] for r in poked] == ids  # one item per distinct id, in input order
    assert all(r["agent_id"] == f"agent-{r['id']}" and r["contact_id"] for r in poked)
    del asyncio


def test_deferring_hands_the_waited_ids_to_the_completion_method(account: FakeAccount) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from callcov_provider.waiting import DEFERRAL_TIMEOUT_MARGIN

    account.add("a1")
    account.add("a2")
    s = sensor(analysis_id=LazyIds(["a1", None, "a2"]), deferrable=True, timeout=900)
    with pytest.raises(TaskDeferred) as info:
        s.execute(ctx())
    assert info.value.kwargs == {"analysis_ids": ["a1", "a2"]}
    assert info.value.timeout == timedelta(seconds=900 + DEFERRAL_TIMEOUT_MARGIN)


# -- bounded failure reports -------------------------------------------------------------------------------


def test_many_failures_make_a_short_message_and_stay_reachable(account: FakeAccount) -> None:
    ids = [f"a{i:05d}" for i in range(5000)]
    for i, aid in enumerate(ids):
        account.add(aid, created=1_767_225_600 + i, status="failed", error="Unsupported codec " + "x" * 300)
    # The trigger's event names the first failures only; the completion method lists the rest itself.
    event = {
        "status": "failed",
        "message": "5000 of 5000 failed",
        "failures_complete": False,
        "failures": {ids[0]: "Unsupported codec"},
    }
    with pytest.raises(AnalysisFailedError) as info:
        sensor(analysis_id=ids).execute_complete(ctx(), event, analysis_ids=ids)
    assert len(info.value.failures) == 5000
    message = str(info.value)
    assert len(message.encode()) < 10_000
    assert "5000 analyses failed" in message
    assert 'ListAnalysesOperator(status_filter="failed")' in message


# -- reschedule mode carries what a poke learnt ------------------------------------------------------------


class StateStore(dict[str, Any]):
    """Airflow 3.3's ``task_state_store``: ``get(key, default)``, ``set(key, json)``, ``delete(key)``."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key, default)

    def set(self, key: str, value: Any) -> None:
        import json

        self[key] = json.loads(json.dumps(value))  # what the store keeps is JSON

    def delete(self, key: str) -> None:
        self.pop(key, None)


@pytest.mark.parametrize("size", [45, 300])
def test_reschedule_mode_finishes_a_batch_the_listings_cannot_see(account: FakeAccount, size: int) -> None:
    """The API omits `created`: every id is read one by one, 20 a poke, and the pokes add up."""
    ids = [f"a{i:03d}" for i in range(size)]
    for aid in ids:
        account.add(aid, status="completed")
        del account.rows[aid]["created"]
    store = StateStore()
    pokes = 0
    while True:
        pokes += 1
        # Each reschedule poke is a new process: a new sensor, only the store survives.
        result = sensor(analysis_id=ids, mode="reschedule").poke(ctx() | {"task_state_store": store})
        if result:
            break
        assert pokes <= -(-size // 20) + 3
    assert [r["id"] for r in result.xcom_value] == ids
    assert store == {}  # cleared once done


# -- one failure rule in every mode ------------------------------------------------------------------------


def test_poke_mode_outlasts_failed_cycles_until_the_failure_rule_ends_it(
    account: FakeAccount, connection: Callable[..., None]
) -> None:
    from callcov_provider.waiting import MAX_CONSECUTIVE_FAILURES, WaitFailedError

    connection(max_retries=0)
    account.add("a1", status="completed")
    account.add("a2", status="completed")
    broken = {"on": True}

    def flaky(request: Any, context: Any) -> Any:
        context.status_code = 503
        return {"detail": "down"}

    with rm.Mocker() as mock:
        mock.get(re.compile(".*"), json=flaky)
        s = sensor(analysis_id=["a1", "a2"])
        for _ in range(MAX_CONSECUTIVE_FAILURES - 1):
            assert s.poke(ctx()) is False
    assert broken["on"]
    result = s.poke(ctx())  # the API is back: the wait goes on
    assert [r["status"] for r in result.xcom_value] == ["completed", "completed"]
    with rm.Mocker() as mock:
        mock.get(re.compile(".*"), json=flaky)
        s = sensor(analysis_id=["a1", "a2"])
        with pytest.raises(WaitFailedError, match=f"{MAX_CONSECUTIVE_FAILURES} poll failures in a row"):
            for _ in range(MAX_CONSECUTIVE_FAILURES):
                s.poke(ctx())


def test_a_429_in_poke_mode_is_waited_out_not_counted(
    account: FakeAccount, connection: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    import callcov_provider.waiting as waiting
    from callcov_provider.hooks.pacing import forget_pacers

    connection(max_retries=0)
    now = [time.time()]
    monkeypatch.setattr(waiting, "time", type("T", (), {"time": staticmethod(lambda: now[0])}))
    account.add("a1", status="completed")
    limited = {"count": 0}

    def rate_limited(request: Any, context: Any) -> Any:
        limited["count"] += 1
        context.status_code = 429
        context.headers["Retry-After"] = "900"
        return {"detail": "Rate limit exceeded"}

    s = sensor(analysis_id="a1")
    hook_sleeps: list[float] = []
    s.hook.sleep = hook_sleeps.append
    with rm.Mocker() as mock:
        mock.get(re.compile(".*"), json=rate_limited)
        for _ in range(30):  # far more pokes than the failure rule allows failures
            assert s.poke(ctx()) is False
            now[0] += 30
    # The pokes did not ask again, nor block on the hook's gate, before the time the API named.
    assert limited["count"] == 1
    assert hook_sleeps == []
    forget_pacers()
    now[0] += 900
    assert s.poke(ctx()).xcom_value["status"] == "completed"


def test_reschedule_mode_counts_failed_pokes_across_processes(
    account: FakeAccount, connection: Callable[..., None]
) -> None:
    from callcov_provider.waiting import MAX_CONSECUTIVE_FAILURES, WaitFailedError

    connection(max_retries=0)
    store = StateStore()

    def down(request: Any, context: Any) -> Any:
        context.status_code = 503
        return {"detail": "down"}

    with rm.Mocker() as mock:
        mock.get(re.compile(".*"), json=down)
        for _ in range(MAX_CONSECUTIVE_FAILURES - 1):
            poke = sensor(analysis_id=["a1", "a2"], mode="reschedule").poke(
                ctx() | {"task_state_store": store}
            )
            assert poke is False
        with pytest.raises(WaitFailedError):
            sensor(analysis_id=["a1", "a2"], mode="reschedule").poke(ctx() | {"task_state_store": store})
    assert store["callcov_wait"]["failures_in_row"] == 0  # a retry of the task starts its count afresh


def test_an_event_with_summaries_names_every_failure_without_reading_back(account: FakeAccount) -> None:
    from callcov_provider.triggers.analysis import EVENT_FAILURES_MAX, build_event
    from callcov_provider.waiting import Waiter

    ids = [f"a{i:03d}" for i in range(2 * EVENT_FAILURES_MAX)]
    waiter = Waiter(ids)
    waiter.restore({"v": 1, "tracker": {"finished": {aid: ["failed", "ag", "c", "silent"] for aid in ids}}})
    event = build_event("failed", waiter.tracker, "all failed").payload
    assert len(event["failures"]) == EVENT_FAILURES_MAX
    with pytest.raises(AnalysisFailedError) as info:
        sensor(analysis_id=ids).execute_complete(ctx(), event, analysis_ids=ids)
    assert info.value.failures == dict.fromkeys(ids, "silent")
    assert account.calls == 0
