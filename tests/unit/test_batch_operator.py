"""SubmitAnalysisBatchOperator on a mocked API: outcomes, keys, resuming, failures, progress."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests_mock as rm
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.operators.batch import (
    MAX_IN_FLIGHT_LIMIT,
    PROGRESS_STATE_KEY,
    SubmitAnalysisBatchOperator,
    analysis_ids_from,
)
from callcov_provider.sensors.analysis import AnalysisCompletedSensor
from tests.unit.conftest import API, analysis, capture_log_events
from tests.unit.test_operators import FakeTI, StateStore, ctx

SUBMIT_URL = f"{API}/analysis/"


class FakeAPI:
    """Accepts URL submissions, replays a known Idempotency-Key, refuses the contacts it is told to."""

    def __init__(self, refuse: dict[str, tuple[int, dict[str, Any]]] | None = None) -> None:
        self.by_key: dict[str, str] = {}
        self.refuse = refuse or {}
        self.lock = threading.Lock()

    def __call__(self, request: Any, context: Any) -> dict[str, Any]:
        body = json.loads(request.body)
        contact = body["contact_id"]
        if contact in self.refuse:
            context.status_code, answer = self.refuse[contact]
            return answer
        with self.lock:
            key = request.headers["Idempotency-Key"]
            analysis_id = self.by_key.setdefault(key, f"anl_{len(self.by_key) + 1}")
        context.status_code = 201
        return analysis(analysis_id, "processing", call={"agent_id": body["agent_id"], "contact_id": contact})


def url_call(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "agent_id": f"agent_{n % 3}",
        "contact_id": f"c{n}",
        "audio_url": f"https://storage.example.test/day/c{n}.wav?X-Amz-Signature=s{n}",
        **extra,
    }


@pytest.fixture
def api(connection: Callable[..., None]) -> Any:
    connection(max_retries=0)
    with rm.Mocker() as mock:
        yield mock


def make_batch(
    make_hook: Callable[..., CallCovHook], calls: Any, **kwargs: Any
) -> SubmitAnalysisBatchOperator:
    op = SubmitAnalysisBatchOperator(task_id="submit", calls=calls, **kwargs)
    op.__dict__["hook"] = make_hook()
    return op


def posts(mock: rm.Mocker) -> list[Any]:
    return [r for r in mock.request_history if r.method == "POST"]


def test_outcomes_come_in_input_order_with_refusals_reported(
    api: rm.Mocker, make_hook: Callable[..., CallCovHook], tmp_path: Path
) -> None:
    unprocessable = {"detail": [{"loc": ["body", "audio_url"], "msg": "unreachable", "type": "value_error"}]}
    fake = FakeAPI(refuse={"c3": (422, unprocessable)})
    api.post(SUBMIT_URL, json=fake)
    calls = [
        url_call(0),
        {"agent_id": "agent_1", "contact_id": "c1", "audio_file": str(tmp_path / "missing.wav")},
        url_call(2, agentid="typo"),
        url_call(3),
        url_call(4),
    ]
    outcomes = make_batch(make_hook, calls, max_in_flight=3).execute(ctx(FakeTI()))
    assert [o["contact_id"] for o in outcomes] == ["c0", "c1", "c2", "c3", "c4"]
    assert [o["analysis_id"] is not None for o in outcomes] == [True, False, False, False, True]
    assert outcomes[0]["error"] is None
    assert outcomes[0]["status"] == "processing"
    assert "audio_file" in outcomes[1]["error"]
    assert "'agentid'" in outcomes[2]["error"]
    assert "unreachable" in outcomes[3]["error"]
    # Refused locally: never sent. The signed URL's token is in no outcome.
    assert len(posts(api)) == 3
    assert "X-Amz-Signature" not in json.dumps(outcomes)
    assert outcomes[0]["recording"] == "https://storage.example.test/day/c0.wav?<redacted>"


def test_keys_are_stable_across_tries_and_follow_each_call(
    api: rm.Mocker, make_hook: Callable[..., CallCovHook]
) -> None:
    api.post(SUBMIT_URL, json=FakeAPI())
    calls = [url_call(0), url_call(1), url_call(2, idempotency_key="mine-2")]
    make_batch(make_hook, calls).execute(ctx(FakeTI(try_number=1)))
    first = {r.json()["contact_id"]: r.headers["Idempotency-Key"] for r in posts(api)}
    api.reset_mock()
    # A retry whose URLs were re-signed in between: same keys, so the API replays the same analyses.
    resigned = [
        dict(c, audio_url=c["audio_url"].replace("X-Amz-Signature=s", "X-Amz-Signature=t")) for c in calls
    ]
    make_batch(make_hook, resigned).execute(ctx(FakeTI(try_number=2)))
    second = {r.json()["contact_id"]: r.headers["Idempotency-Key"] for r in posts(api)}
    assert first == second
    assert len(set(first.values())) == 3
    assert first["c2"] == "mine-2"
    api.reset_mock()
    make_batch(make_hook, calls).execute(ctx(FakeTI(map_index=1)))
    assert not {r.headers["Idempotency-Key"] for r in posts(api)} & set(first.values()) - {"mine-2"}


def test_a_retry_resumes_from_the_task_state_store(
    api: rm.Mocker, make_hook: Callable[..., CallCovHook]
) -> None:
    fake = FakeAPI()
    api.post(SUBMIT_URL, json=fake)
    calls = [url_call(n) for n in range(6)]
    store = StateStore()
    first = make_batch(make_hook, calls).execute(ctx(FakeTI(), task_state_store=store))
    assert len(store[PROGRESS_STATE_KEY]) == 6
    api.reset_mock()
    # Two calls were added to the chunk before the retry: only those are sent.
    again = make_batch(make_hook, [*calls, url_call(6), url_call(7)]).execute(
        ctx(FakeTI(try_number=2), task_state_store=store)
    )
    assert [r.json()["contact_id"] for r in posts(api)] in (["c6", "c7"], ["c7", "c6"])
    assert [o["analysis_id"] for o in again[:6]] == [o["analysis_id"] for o in first]
    assert len({o["analysis_id"] for o in again}) == 8


def test_transient_failures_fail_the_task_and_the_retry_sends_only_them(
    api: rm.Mocker, make_hook: Callable[..., CallCovHook]
) -> None:
    fake = FakeAPI(refuse={"c2": (503, {"detail": "busy"}), "c4": (503, {"detail": "busy"})})
    api.post(SUBMIT_URL, json=fake)
    calls = [url_call(n) for n in range(5)]
    store = StateStore()
    with pytest.raises(AirflowException, match="2 of 5 calls could not be sent") as info:
        make_batch(make_hook, calls).execute(ctx(FakeTI(), task_state_store=store))
    assert not isinstance(info.value, AirflowFailException)  # the task's retries apply
    assert len(store[PROGRESS_STATE_KEY]) == 3
    fake.refuse.clear()
    api.reset_mock()
    outcomes = make_batch(make_hook, calls).execute(ctx(FakeTI(try_number=2), task_state_store=store))
    assert sorted(r.json()["contact_id"] for r in posts(api)) == ["c2", "c4"]
    assert all(o["analysis_id"] for o in outcomes)
    # Exactly one analysis per call across both tries.
    assert len(fake.by_key) == 5


def test_without_a_state_store_a_retry_replays_under_the_same_keys(
    api: rm.Mocker, make_hook: Callable[..., CallCovHook]
) -> None:
    # Airflow before 3.3: nothing is stored, every call is sent again, and the API replays each one.
    fake = FakeAPI()
    api.post(SUBMIT_URL, json=fake)
    calls = [url_call(n) for n in range(4)]
    first = make_batch(make_hook, calls).execute(ctx(FakeTI()))
    second = make_batch(make_hook, calls).execute(ctx(FakeTI(try_number=2)))
    assert first == second
    assert len(fake.by_key) == 4


def test_an_authentication_error_fails_the_task_at_once(
    api: rm.Mocker, make_hook: Callable[..., CallCovHook]
) -> None:
    api.post(SUBMIT_URL, status_code=401, json={"detail": "Invalid API key"})
    with pytest.raises(AirflowFailException, match="credentials"):
        make_batch(make_hook, [url_call(n) for n in range(20)], max_in_flight=2).execute(ctx(FakeTI()))
    assert len(posts(api)) < 20


def test_a_batch_with_no_call_submitted_fails(api: rm.Mocker, make_hook: Callable[..., CallCovHook]) -> None:
    api.post(SUBMIT_URL, json=FakeAPI())
    with pytest.raises(AirflowFailException, match="none of the 2 calls"):
        make_batch(make_hook, [url_call(0, call_direction="sideways"), {"agent_id": "a"}]).execute(
            ctx(FakeTI())
        )
    assert posts(api) == []


@pytest.mark.parametrize("calls", ["not a list", {"agent_id": "a"}, 42])
def test_calls_must_be_a_list(make_hook: Callable[..., CallCovHook], calls: Any) -> None:
    with pytest.raises(AirflowFailException, match="calls must be a list"):
        make_batch(make_hook, calls).execute(ctx(FakeTI()))


@pytest.mark.parametrize("value", [0, MAX_IN_FLIGHT_LIMIT + 1, "many"])
def test_max_in_flight_is_checked(make_hook: Callable[..., CallCovHook], value: Any) -> None:
    with pytest.raises(AirflowFailException, match="max_in_flight"):
        make_batch(make_hook, [url_call(0)], max_in_flight=value).execute(ctx(FakeTI()))


def test_progress_is_logged(api: rm.Mocker, make_hook: Callable[..., CallCovHook]) -> None:
    api.post(SUBMIT_URL, json=FakeAPI())
    op = make_batch(make_hook, [url_call(n) for n in range(3)])
    with capture_log_events() as events:
        op.execute(ctx(FakeTI()))
    lines = [e["event"] for e in events if str(e["event"]).startswith("CallCov batch:")]
    assert lines
    assert lines[-1].startswith("CallCov batch: 3/3 submitted (0 from earlier tries), 0 refused, 0 not sent;")
    assert "rate-limited answers" in lines[-1]


def test_the_calls_argument_is_templated() -> None:
    assert "calls" in SubmitAnalysisBatchOperator.template_fields


def test_rendered_calls_show_no_url_token_and_the_signed_urls_are_sent(
    api: rm.Mocker, make_hook: Callable[..., CallCovHook]
) -> None:
    import jinja2

    fake = FakeAPI()
    api.post(SUBMIT_URL, json=fake)
    calls = [
        url_call(0, webhook_url="https://user:pw@hooks.example.test/cb?token=whk_secret0#frag"),
        {**url_call(1), "audio_url": "https://storage.example.test/{{ params.day }}/c1.wav?sig=tok_secret1"},
    ]
    op = make_batch(make_hook, calls)
    op.render_template_fields({"params": {"day": "2026-12-03"}}, jinja2.Environment())  # type: ignore[arg-type]
    # What Airflow stores as the rendered field, and shows in the UI.
    shown = json.dumps(op.calls)
    for secret in ("X-Amz-Signature", "whk_secret0", "user:pw", "frag", "tok_secret1"):
        assert secret not in shown
    assert op.calls[1]["audio_url"] == "https://storage.example.test/2026-12-03/c1.wav?<redacted>"
    assert op.calls[0]["webhook_url"] == "https://hooks.example.test/cb?<redacted>"
    # A second rendering (a callback, an email) keeps the originals to submit.
    op.render_template_fields({"params": {"day": "2026-12-03"}}, jinja2.Environment())  # type: ignore[arg-type]

    outcomes = op.execute(ctx(FakeTI()))
    assert [o["error"] for o in outcomes] == [None, None]
    sent = [json.loads(r.body) for r in posts(api)]
    assert sorted(body["audio_url"] for body in sent) == [
        "https://storage.example.test/2026-12-03/c1.wav?sig=tok_secret1",
        "https://storage.example.test/day/c0.wav?X-Amz-Signature=s0",
    ]
    assert any(body.get("webhook_url", "").endswith("?token=whk_secret0#frag") for body in sent)


def test_analysis_ids_from_batch_outcomes() -> None:
    chunk_a = [{"analysis_id": "a1", "error": None}, {"analysis_id": None, "error": "refused"}]
    chunk_b = [{"analysis_id": "b1", "error": None}]
    assert analysis_ids_from([chunk_a, chunk_b]) == ["a1", None, "b1"]
    assert analysis_ids_from(chunk_a) == ["a1", None]
    assert analysis_ids_from(["x", "y"]) == ["x", "y"]
    assert analysis_ids_from("x") == ["x"]


def test_the_sensor_waits_for_a_mapped_batchs_accepted_calls() -> None:
    outcomes = [[{"analysis_id": "a1"}, {"analysis_id": None, "error": "refused"}], [{"analysis_id": "b1"}]]
    sensor = AnalysisCompletedSensor(task_id="wait", analysis_id=outcomes)  # type: ignore[arg-type]
    assert sensor._ids() == ["a1", "b1"]


def test_lineage_names_the_accepted_recordings_and_their_analyses(
    api: rm.Mocker, make_hook: Callable[..., CallCovHook]
) -> None:
    pytest.importorskip("airflow.providers.openlineage")
    api.post(SUBMIT_URL, json=FakeAPI(refuse={"c1": (422, {"detail": "unreadable"})}))
    op = make_batch(make_hook, [url_call(0), url_call(1), url_call(2)])
    outcomes = op.execute(ctx(FakeTI()))
    lineage = op.get_openlineage_facets_on_complete(None)
    # The refused call made nothing; the signed URLs lose their query string.
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("https://storage.example.test", "/day/c0.wav"),
        ("https://storage.example.test", "/day/c2.wav"),
    ]
    assert sorted(d.name for d in lineage.outputs) == sorted(
        f"analyses/{o['analysis_id']}" for o in outcomes if o["analysis_id"]
    )
