"""SubmitAnalysisOperator (requests-mock on the sync path) and the "CallCov Analysis" extra link."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests_mock as rm

from callcov_provider.exceptions import AnalysisFailedError, CallCovError, DeadlineExceededError
from callcov_provider.idempotency import submission_key, successor_key
from callcov_provider.links import ANALYSIS_URL_XCOM_KEY, CallCovAnalysisLink
from callcov_provider.operators.submit import ANALYSIS_XCOM_KEY, SubmitAnalysisOperator
from callcov_provider.triggers.analysis import AnalysisCompletedTrigger
from callcov_provider.version_compat import AIRFLOW_V_3_3_PLUS
from tests.unit.conftest import API, analysis

SUBMIT_URL = f"{API}/analysis/"
AUDIO_URL = "https://storage.example.test/recordings/call-001.wav"


class FakeTI:
    """The parts of a RuntimeTaskInstance the operators use; records pushed XComs."""

    def __init__(
        self,
        *,
        dag_id: str = "daily",
        task_id: str = "submit",
        run_id: str = "manual__2026-01-01",
        map_index: int = -1,
        try_number: int = 1,
    ) -> None:
        self.dag_id = dag_id
        self.task_id = task_id
        self.run_id = run_id
        self.map_index = map_index
        self.try_number = try_number
        self.stats_tags: dict[str, str] = {}
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class StateStore(dict[str, Any]):
    """A ``task_state_store`` stand-in for the durable wait."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


def ctx(ti: FakeTI | None = None, **extra: Any) -> Any:
    return {"ti": ti or FakeTI(), **extra}


def default_key(run_id: str = "manual__2026-01-01", map_index: int = -1, url: str = AUDIO_URL) -> str:
    """The key ``make_op()``'s submission gets: its task instance, ids and recording (URL without query)."""
    return submission_key(
        "daily", "submit", run_id, map_index, "agent_1", "customer_1", recording=f"url:{url}"
    )


def make_op(**kwargs: Any) -> SubmitAnalysisOperator:
    args: dict[str, Any] = {
        "task_id": "submit",
        "agent_id": "agent_1",
        "contact_id": "customer_1",
        "audio_url": AUDIO_URL,
    }
    args.update(kwargs)
    return SubmitAnalysisOperator(**args)


def body(aid: str, status: str = "processing", error: str | None = None, **extra: Any) -> dict[str, Any]:
    return analysis(
        aid,
        status,
        created=1_767_225_600,
        call={"agent_id": "agent_1", "contact_id": "customer_1"},
        metadata={"error_message": error},
        **extra,
    )


def keys(mock: rm.Mocker) -> list[str]:
    return [r.headers["Idempotency-Key"] for r in mock.request_history if r.method == "POST"]


@pytest.fixture
def api(connection: Callable[..., None]) -> Any:
    with rm.Mocker() as mock:
        yield mock


# -- construction ------------------------------------------------------------------------------------------


def test_every_user_facing_argument_is_templated() -> None:
    params = set(inspect.signature(SubmitAnalysisOperator.__init__).parameters) - {"self", "kwargs"}
    assert params <= set(SubmitAnalysisOperator.template_fields)
    assert "metadata" in SubmitAnalysisOperator.template_fields_renderers


@pytest.mark.parametrize(
    ("field", "value"),
    [("wait_for_completion", "maybe"), ("poll_interval", "soon"), ("timeout", "0"), ("deferrable", "2")],
)
def test_bad_waiting_arguments_name_their_field(api: rm.Mocker, field: str, value: str) -> None:
    from callcov_provider.exceptions import InvalidRequestError

    with pytest.raises(InvalidRequestError, match=field) as info:
        make_op(**{field: value}).execute(ctx())
    assert info.value.field == field
    assert api.request_history == []


def test_nothing_is_looked_up_or_sent_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx
    import requests
    from airflow.providers.common.compat.sdk import BaseHook

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("touched a connection or the network at construction")

    monkeypatch.setattr(BaseHook, "get_connection", explode)
    monkeypatch.setattr(requests.Session, "request", explode)
    monkeypatch.setattr(httpx.AsyncClient, "send", explode)
    from callcov_provider.operators.list_analyses import ListAnalysesOperator
    from callcov_provider.sensors.analysis import AnalysisCompletedSensor

    make_op(wait_for_completion=True, deferrable=True)
    make_op(audio_url=None, audio_file="/nowhere/call.wav", idempotency_key="{{ run_id }}")
    SubmitAnalysisOperator.partial(task_id="mapped").expand_kwargs([{"agent_id": "a", "contact_id": "c"}])
    AnalysisCompletedSensor(task_id="wait", analysis_id=["a", "b"], deferrable=True)
    ListAnalysesOperator(task_id="list", status_filter="{{ params.status }}", limit="{{ params.limit }}")
    AnalysisCompletedTrigger(analysis_ids=["a"], callcov_conn_id="x", poll_interval=1, end_time=0)


def test_templated_numbers_and_flags_are_coerced(api: rm.Mocker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendered templates arrive as text: ``"True"``, ``"1.5"`` and ``"60"`` still work."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    api.post(SUBMIT_URL, json=body("a1"), status_code=201)
    api.get(f"{API}/analysis/a1", json=body("a1"))
    op = make_op(wait_for_completion="True", deferrable="true", poll_interval="1.5", timeout="60")
    with pytest.raises(TaskDeferred) as info:
        op.execute(ctx())
    _, kwargs = info.value.trigger.serialize()
    assert kwargs["poll_interval"] == 1.5
    assert kwargs["end_time"] == pytest.approx(time.time() + 60, abs=30)


# -- submitting --------------------------------------------------------------------------------------------


def test_returns_the_id_and_pushes_the_link(api: rm.Mocker) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    ti = FakeTI()
    assert make_op().execute(ctx(ti)) == "anl_1"
    assert ti.xcoms == {ANALYSIS_URL_XCOM_KEY: "https://app.callcov.com/analyses/anl_1"}
    sent = api.request_history[0]
    assert sent.json() == {"audio_url": AUDIO_URL, "agent_id": "agent_1", "contact_id": "customer_1"}
    assert len(api.request_history) == 1  # no wait: no GET


def test_link_follows_the_connections_dashboard(api: rm.Mocker, connection: Callable[..., None]) -> None:
    connection(dashboard_url="https://dash.example.test/")
    api.post(SUBMIT_URL, json=body("anl/2"), status_code=201)
    ti = FakeTI()
    make_op().execute(ctx(ti))
    assert ti.xcoms[ANALYSIS_URL_XCOM_KEY] == "https://dash.example.test/analyses/anl%2F2"


def test_default_key_is_stable_across_tries_and_differs_per_map_index_and_run(api: rm.Mocker) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    op = make_op()
    for ti in (
        FakeTI(try_number=1),
        FakeTI(try_number=2),
        FakeTI(try_number=1, map_index=0),
        FakeTI(try_number=3, map_index=0),
        FakeTI(try_number=1, map_index=1),
        FakeTI(try_number=1, run_id="scheduled__2026-01-02"),
    ):
        op.execute(ctx(ti))
    sent = keys(api)
    assert sent[0] == sent[1] == default_key()
    assert sent[2] == sent[3]
    assert len({sent[0], sent[2], sent[4], sent[5]}) == 4


def test_explicit_key_wins(api: rm.Mocker) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    make_op(idempotency_key="batch-2026-01-01-call-7").execute(ctx(FakeTI(try_number=2)))
    assert keys(api) == ["batch-2026-01-01-call-7"]


def test_replayed_failure_on_a_retry_is_resubmitted_once_under_a_successor_key(api: rm.Mocker) -> None:
    api.post(
        SUBMIT_URL,
        [
            {"json": body("old", "failed", "Audio is silent"), "status_code": 200},
            {"json": body("new"), "status_code": 201},
        ],
    )
    ti = FakeTI(try_number=2)
    assert make_op().execute(ctx(ti)) == "new"
    first = default_key()
    assert keys(api) == [first, successor_key(first, "old")]
    assert ti.xcoms[ANALYSIS_URL_XCOM_KEY].endswith("/analyses/new")


def test_resubmission_happens_exactly_once_per_retry(api: rm.Mocker) -> None:
    api.post(SUBMIT_URL, json=body("gone", "failed", "Audio is silent"), status_code=200)
    with pytest.raises(AnalysisFailedError, match="Audio is silent") as info:
        make_op().execute(ctx(FakeTI(try_number=2)))
    assert len(keys(api)) == 2
    assert info.value.failures == {"gone": "Audio is silent"}


def test_a_failed_answer_on_the_first_try_fails_the_task(api: rm.Mocker) -> None:
    api.post(SUBMIT_URL, json=body("bad", "failed", "Unsupported codec"), status_code=201)
    with pytest.raises(AnalysisFailedError, match="bad: Unsupported codec"):
        make_op().execute(ctx(FakeTI(try_number=1)))
    assert len(api.request_history) == 1


def test_refused_submission_fails_without_retries(api: rm.Mocker) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    api.post(SUBMIT_URL, json={"detail": "agent_id is unknown"}, status_code=400)
    with pytest.raises(AirflowFailException, match="agent_id is unknown"):
        make_op().execute(ctx())


def test_local_check_names_the_field_and_sends_nothing(api: rm.Mocker) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    with pytest.raises(AirflowFailException, match="call_direction"):
        make_op(call_direction="sideways").execute(ctx())
    assert api.request_history == []


# -- waiting in the triggerer -----------------------------------------------------------------------------


def test_defers_with_the_trigger_and_an_absolute_deadline(
    api: rm.Mocker, connection: Callable[..., None]
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    connection(conn_id="cc")

    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    api.get(f"{API}/analysis/anl_1", json=body("anl_1"))
    op = make_op(
        wait_for_completion=True, deferrable=True, poll_interval=7, timeout=600, callcov_conn_id="cc"
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        op.execute(ctx())
    after = time.time()
    trigger = info.value.trigger
    assert isinstance(trigger, AnalysisCompletedTrigger)
    path, kwargs = trigger.serialize()
    assert path == "callcov_provider.triggers.analysis.AnalysisCompletedTrigger"
    assert set(kwargs) == {"analysis_ids", "callcov_conn_id", "poll_interval", "end_time"}
    assert kwargs["analysis_ids"] == ["anl_1"]
    assert kwargs["callcov_conn_id"] == "cc"
    assert kwargs["poll_interval"] == 7.0
    assert before + 600 <= kwargs["end_time"] <= after + 600
    assert info.value.method_name == "execute_complete"
    # Airflow's own deferral timeout trails the trigger's deadline, so the trigger's event wins.
    assert info.value.timeout is not None
    assert info.value.timeout > timedelta(seconds=600)
    # The status was checked once before deferring.
    assert [r.method for r in api.request_history] == ["POST", "GET"]


def test_defer_kwargs_survive_a_json_round_trip(api: rm.Mocker) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    api.get(f"{API}/analysis/anl_1", json=body("anl_1"))
    with pytest.raises(TaskDeferred) as info:
        make_op(wait_for_completion=True, deferrable=True).execute(ctx())
    _, kwargs = info.value.trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs


@pytest.mark.parametrize("when", ["submit answer", "first check"])
def test_an_analysis_already_finished_is_not_deferred(api: rm.Mocker, when: str) -> None:
    done = body("anl_1", "completed", results={"coaching": {"customer_effort_score": 2}})
    api.post(SUBMIT_URL, json=done if when == "submit answer" else body("anl_1"), status_code=201)
    api.get(f"{API}/analysis/anl_1", json=done)
    ti = FakeTI()
    assert make_op(wait_for_completion=True, deferrable=True).execute(ctx(ti)) == "anl_1"
    assert ti.xcoms[ANALYSIS_XCOM_KEY]["status"] == "completed"
    assert ti.xcoms[ANALYSIS_XCOM_KEY]["results"]["coaching"]["customer_effort_score"] == 2


def test_an_analysis_that_failed_before_deferring_fails_the_task(api: rm.Mocker) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    api.get(f"{API}/analysis/anl_1", json=body("anl_1", "failed", "Audio is silent"))
    with pytest.raises(AnalysisFailedError, match="Audio is silent"):
        make_op(wait_for_completion=True, deferrable=True).execute(ctx())


def event(status: str, aid: str = "anl_1", **extra: Any) -> dict[str, Any]:
    return {
        "status": status,
        "message": f"the {status} message",
        "results": [{"id": aid, "status": "completed", "agent_id": None, "contact_id": None}],
        "failures": {},
        **extra,
    }


def test_execute_complete_success_pushes_the_analysis(api: rm.Mocker) -> None:
    api.get(f"{API}/analysis/anl_1", json=body("anl_1", "completed"))
    ti = FakeTI()
    assert make_op(wait_for_completion=True).execute_complete(ctx(ti), event("success")) == "anl_1"
    assert ti.xcoms[ANALYSIS_XCOM_KEY]["id"] == "anl_1"
    assert ti.xcoms[ANALYSIS_XCOM_KEY]["status"] == "completed"


def test_execute_complete_failed_names_the_reason(api: rm.Mocker) -> None:
    failed = event("failed", failures={"anl_1": "Audio is silent"})
    with pytest.raises(AnalysisFailedError, match="anl_1: Audio is silent"):
        make_op().execute_complete(ctx(), failed)
    assert api.request_history == []


def test_execute_complete_timeout_and_error(api: rm.Mocker) -> None:
    with pytest.raises(DeadlineExceededError, match="anl_1"):
        make_op(timeout=90).execute_complete(ctx(), event("timeout"))
    with pytest.raises(CallCovError, match="the error message") as info:
        make_op().execute_complete(ctx(), event("error"))
    assert not isinstance(info.value, (AnalysisFailedError, DeadlineExceededError))
    assert api.request_history == []


def test_resume_execution_goes_through_execute_complete(api: rm.Mocker) -> None:
    api.get(f"{API}/analysis/anl_1", json=body("anl_1", "completed"))
    ti = FakeTI()
    op = make_op(wait_for_completion=True, deferrable=True)
    assert op.resume_execution("execute_complete", {"event": event("success")}, ctx(ti)) == "anl_1"
    assert ti.xcoms[ANALYSIS_XCOM_KEY]["status"] == "completed"


# -- waiting in the worker (durable) ----------------------------------------------------------------------


class FakeTime:
    """Stands in for the submit module's ``time``: a clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    import callcov_provider.operators.submit as submit_module

    fake = FakeTime()
    monkeypatch.setattr(submit_module, "time", fake)
    return fake


@pytest.fixture
def no_sleep(clock: FakeTime) -> list[float]:
    return clock.waits


def test_worker_wait_polls_until_completed_and_stores_the_id(api: rm.Mocker, no_sleep: list[float]) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    api.get(
        f"{API}/analysis/anl_1",
        [{"json": body("anl_1")}, {"json": body("anl_1")}, {"json": body("anl_1", "completed")}],
    )
    ti, store = FakeTI(), StateStore()
    op = make_op(wait_for_completion=True, deferrable=False, poll_interval=5)
    assert op.execute(ctx(ti, task_state_store=store)) == "anl_1"
    # Airflow 3.3+ stores the id for a later try to reconnect to; below 3.3 the compat stand-in of
    # ResumableJobMixin has no task state store and stores nothing.
    assert store == ({"callcov_analysis_id": "anl_1"} if AIRFLOW_V_3_3_PLUS else {})
    assert ti.xcoms[ANALYSIS_XCOM_KEY]["status"] == "completed"
    assert no_sleep == [5, 5]
    assert [r.method for r in api.request_history] == ["POST", "GET", "GET", "GET"]


def test_worker_wait_reconnects_to_the_stored_analysis(api: rm.Mocker, no_sleep: list[float]) -> None:
    api.get(f"{API}/analysis/anl_1", [{"json": body("anl_1")}, {"json": body("anl_1", "completed")}])
    ti = FakeTI(try_number=2)
    op = make_op(wait_for_completion=True, deferrable=False)
    if not AIRFLOW_V_3_3_PLUS:
        # The first try's submission, replayed by the API under the same idempotency key.
        api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    assert op.execute(ctx(ti, task_state_store=StateStore(callcov_analysis_id="anl_1"))) == "anl_1"
    if AIRFLOW_V_3_3_PLUS:
        assert not any(r.method == "POST" for r in api.request_history)
    else:
        # Below 3.3 nothing is stored between tries: the retry submits again, under the same key as
        # the first try, so the API hands back the analysis that try created instead of a second one.
        assert keys(api) == [default_key()]
    assert ti.xcoms[ANALYSIS_URL_XCOM_KEY].endswith("/analyses/anl_1")


def test_worker_wait_resubmits_after_a_stored_failure(api: rm.Mocker, no_sleep: list[float]) -> None:
    api.get(f"{API}/analysis/old", json=body("old", "failed", "Audio is silent"))
    api.post(
        SUBMIT_URL,
        [{"json": body("old", "failed", "Audio is silent")}, {"json": body("new"), "status_code": 201}],
    )
    api.get(f"{API}/analysis/new", json=body("new", "completed"))
    store = StateStore(callcov_analysis_id="old")
    op = make_op(wait_for_completion=True, deferrable=False)
    assert op.execute(ctx(FakeTI(try_number=2), task_state_store=store)) == "new"
    # Below 3.3 the store is not used: the retry's submission replays the failed analysis and steps past
    # it under a successor key all the same.
    assert store["callcov_analysis_id"] == ("new" if AIRFLOW_V_3_3_PLUS else "old")
    assert len(keys(api)) == 2


def test_worker_wait_fails_with_the_reason(api: rm.Mocker, no_sleep: list[float]) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    api.get(f"{API}/analysis/anl_1", json=body("anl_1", "failed", "Audio is silent"))
    with pytest.raises(AnalysisFailedError, match="Audio is silent"):
        make_op(wait_for_completion=True, deferrable=False).execute(ctx(task_state_store=StateStore()))


def test_worker_wait_runs_out_of_time(api: rm.Mocker, clock: FakeTime) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    api.get(f"{API}/analysis/anl_1", json=body("anl_1"))
    op = make_op(wait_for_completion=True, deferrable=False, poll_interval=100, timeout=250)
    with pytest.raises(DeadlineExceededError, match="anl_1"):
        op.execute(ctx(task_state_store=StateStore()))
    # Checks at 0, 100, 200 and (the last wait cut to the deadline) 250 seconds.
    assert clock.waits == [100, 100, 50]
    assert [r.method for r in api.request_history] == ["POST", "GET", "GET", "GET", "GET"]


def test_worker_wait_without_a_state_store_still_works(api: rm.Mocker, no_sleep: list[float]) -> None:
    api.post(SUBMIT_URL, json=body("anl_1", "completed"), status_code=201)
    api.get(f"{API}/analysis/anl_1", json=body("anl_1", "completed"))
    assert make_op(wait_for_completion=True, deferrable=False).execute(ctx()) == "anl_1"


# -- the extra link ---------------------------------------------------------------------------------------


def test_link_returns_the_stored_url_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import XCom

    asked: list[dict[str, Any]] = []
    stored: dict[str, Any] = {}

    def get_value(**kwargs: Any) -> Any:
        asked.append(kwargs)
        return stored.get(kwargs["key"])

    monkeypatch.setattr(XCom, "get_value", staticmethod(get_value))
    link = CallCovAnalysisLink()
    op = make_op()
    assert link.get_link(op, ti_key="tikey") == ""  # type: ignore[arg-type]
    stored[ANALYSIS_URL_XCOM_KEY] = "https://app.callcov.com/analyses/anl_1"
    assert link.get_link(op, ti_key="tikey") == "https://app.callcov.com/analyses/anl_1"  # type: ignore[arg-type]
    assert asked[-1] == {"key": ANALYSIS_URL_XCOM_KEY, "ti_key": "tikey"}


def test_link_is_on_the_operator_and_in_the_provider_info() -> None:
    from callcov_provider.get_provider_info import get_provider_info

    assert any(isinstance(link, CallCovAnalysisLink) for link in SubmitAnalysisOperator.operator_extra_links)
    assert CallCovAnalysisLink.name == "CallCov Analysis"
    assert "callcov_provider.links.CallCovAnalysisLink" in get_provider_info()["extra-links"]
    assert [link.name for link in make_op().operator_extra_links] == ["CallCov Analysis"]


def test_the_default_key_follows_the_recording(api: rm.Mocker, tmp_path: Any) -> None:
    api.post(SUBMIT_URL, json=body("anl_1"), status_code=201)
    signed = [f"{AUDIO_URL}?X-Amz-Signature={n}&X-Amz-Date=2026120{n}" for n in (1, 2)]
    for url in signed:
        make_op(audio_url=url).execute(ctx(FakeTI()))
    make_op(audio_url=AUDIO_URL.replace("call-001", "call-002")).execute(ctx(FakeTI()))
    first = tmp_path / "call.wav"
    first.write_bytes(b"RIFF" + b"\x00" * 64)
    make_op(audio_url=None, audio_file=str(first)).execute(ctx(FakeTI()))
    make_op(audio_url=None, audio_file=str(first)).execute(ctx(FakeTI()))
    first.write_bytes(b"RIFF" + b"\x01" * 64)  # the recording was replaced under the same name
    make_op(audio_url=None, audio_file=str(first)).execute(ctx(FakeTI()))
    sent = keys(api)
    # A re-signed URL names the same recording: the same key, so the API replays the first analysis.
    assert sent[0] == sent[1] == default_key()
    assert sent[2] != sent[0]
    # The same bytes replay; replaced bytes get a new key (a new analysis, not a 409).
    assert sent[3] == sent[4]
    assert sent[5] not in (sent[3], sent[4])


def test_a_409_is_resubmitted_under_a_key_for_the_new_request(api: rm.Mocker) -> None:
    conflict = {"error": {"code": "idempotency_conflict", "message": "Key reused with a different request"}}
    api.post(
        SUBMIT_URL, [{"json": conflict, "status_code": 409}, {"json": body("anl_2"), "status_code": 201}]
    )
    assert make_op(metadata={"queue": "billing"}).execute(ctx(FakeTI())) == "anl_2"
    sent = keys(api)
    assert sent[0] == default_key()
    assert sent[1] not in (sent[0], None)
