"""ListAnalysesOperator: argument checks before any request, paging, the time window, fields, output."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests_mock as rm

from callcov_provider.exceptions import InvalidRequestError
from callcov_provider.operators.list_analyses import ListAnalysesOperator, project, to_datetime
from tests.unit.test_sensor import FakeAccount

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.fixture
def account(connection: Callable[..., None]) -> Iterator[FakeAccount]:
    with rm.Mocker() as mock:
        yield FakeAccount(mock)


def fill(account: FakeAccount, count: int, *, start: int = T0, step: int = 60) -> list[str]:
    """``count`` completed analyses, one every ``step`` seconds from ``start``; ids oldest first."""
    ids = [f"anl_{i:05d}" for i in range(count)]
    for i, aid in enumerate(ids):
        account.add(aid, created=start + i * step, status="completed")
    return ids


def op(**kwargs: Any) -> ListAnalysesOperator:
    return ListAnalysesOperator(task_id="list", **kwargs)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


# -- construction ----------------------------------------------------------------------------------------


def test_every_argument_is_templated() -> None:
    params = set(inspect.signature(ListAnalysesOperator.__init__).parameters) - {"self", "kwargs"}
    assert params <= set(ListAnalysesOperator.template_fields)


def test_nothing_is_looked_up_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests
    from airflow.providers.common.compat.sdk import BaseHook

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("touched a connection or the network at construction")

    monkeypatch.setattr(BaseHook, "get_connection", explode)
    monkeypatch.setattr(requests.Session, "request", explode)
    operator = op(
        status_filter="{{ params.status }}",
        created_after="{{ data_interval_start }}",
        created_before="{{ data_interval_end }}",
        fields=["id"],
        output_uri="s3://bucket/{{ ds }}.jsonl",
    )
    assert "hook" not in vars(operator)


# -- checks before any request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "x"}, "offset"),
        ({"max_results": -1}, "max_results"),
        ({"max_results": "lots"}, "max_results"),
        ({"status_filter": "done"}, "status_filter"),
        ({"agent_id": 7}, "agent_id"),
        (
            {"created_after": "2026-01-02T00:00:00Z", "created_before": "2026-01-01T00:00:00Z"},
            "created_after",
        ),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2026-13-45"}, "created_before"),
        ({"created_before": 1_767_225_600}, "created_before"),
        ({"fields": []}, "fields"),
        ({"fields": [""]}, "fields"),
        ({"fields": ["id", 3]}, "fields"),
        ({"fields": 5}, "fields"),
        ({"fields": {"id": True}}, "fields"),
        ({"fields": ["call..agent_id"]}, "fields"),
        ({"fields": ["call."]}, "fields"),
        ({"output_uri": "  "}, "output_uri"),
    ],
)
def test_every_check_names_its_field_and_sends_nothing(
    account: FakeAccount, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        op(**kwargs).execute({})
    assert info.value.field == field
    assert field in str(info.value)
    assert account.calls == 0


def test_bounds_that_are_allowed(account: FakeAccount) -> None:
    fill(account, 3)
    assert len(op(limit=1000, offset=0).execute({})) == 3
    assert len(op(limit=1).execute({})) == 1
    assert op(max_results=0).execute({}) == []
    assert op(created_after=iso(T0), created_before=iso(T0)).execute({}) == []


def test_to_datetime_reads_datetimes_and_text() -> None:
    naive = datetime(2026, 1, 1, 12, 0)
    assert to_datetime(naive, "x") == naive.replace(tzinfo=UTC)
    aware = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert to_datetime(aware, "x") == aware
    assert to_datetime("2026-01-01T10:00:00+00:00", "x") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert to_datetime("", "x") is None
    assert to_datetime(None, "x") is None


def test_project_keeps_dotted_paths() -> None:
    record = {"id": "a", "call": {"agent_id": "ag", "contact_id": "c"}, "results": None}
    assert project(record, ["id", "call.agent_id", "results.coaching.customer_effort_score"]) == {
        "id": "a",
        "call": {"agent_id": "ag"},
        "results": None,
    }


# -- listing ------------------------------------------------------------------------------------------------


def test_one_page_with_the_apis_filters(account: FakeAccount) -> None:
    fill(account, 5)
    account.add("other", created=T0 + 10_000, status="processing")
    result = op(status_filter="completed", limit=3, offset=1, search="AGENT").execute({})
    assert [r["id"] for r in result] == ["anl_00003", "anl_00002", "anl_00001"]
    assert account.lists == [{"status_filter": "completed", "search": "AGENT", "limit": "3", "offset": "1"}]
    assert json.loads(json.dumps(result)) == result


def test_rendered_text_arguments_work(account: FakeAccount) -> None:
    ids = fill(account, 1500)
    result = op(
        limit="10",
        offset="0",
        fetch_all="True",
        max_results="1200",
        fields="id, status",
        created_after=iso(T0),
    ).execute({})
    assert len(result) == 1200
    assert result[0] == {"id": ids[-1], "status": "completed"}
    assert len(op(fetch_all="false", limit="7").execute({})) == 7
    assert len(account.lists) == 3  # 2 pages of 1000, then one of 7


def test_fetch_all_reads_every_page_of_a_thousand(account: FakeAccount) -> None:
    ids = fill(account, 2500)
    result = op(fetch_all=True, offset=10).execute({})
    assert [r["id"] for r in result] == list(reversed(ids))[10:]
    assert [q["limit"] for q in account.lists] == ["1000"] * 3


def test_max_results_stops_without_reading_another_page(account: FakeAccount) -> None:
    fill(account, 2500)
    result = op(fetch_all=True, max_results=1000).execute({})
    assert len(result) == 1000
    assert len(account.lists) == 1


def test_a_time_window_stops_paging_once_results_are_older(account: FakeAccount) -> None:
    ids = fill(account, 5000)  # one a minute: newest first, 1000 a page
    after = T0 + 3800 * 60
    before = T0 + 4500 * 60
    result = op(fetch_all=True, created_after=iso(after), created_before=iso(before)).execute({})
    assert [r["id"] for r in result] == list(reversed(ids[3800:4500]))
    # Pages 1 and 2 hold creation times down to 3000 minutes: the third page is never read.
    assert len(account.lists) == 2


def test_window_with_datetimes(account: FakeAccount) -> None:
    ids = fill(account, 10)
    start = datetime.fromtimestamp(T0 + 5 * 60, UTC)
    result = op(fetch_all=True, created_after=start, created_before=start + timedelta(minutes=3)).execute({})
    assert [r["id"] for r in result] == [ids[7], ids[6], ids[5]]


def test_fields_keep_only_the_paths_asked_for(account: FakeAccount) -> None:
    fill(account, 2)
    account.add("running", created=T0 + 9999, status="processing")
    result = op(fields=["id", "call.agent_id", "results.coaching.customer_effort_score"]).execute({})
    assert result[0] == {"id": "running", "call": {"agent_id": "agent-running"}, "results": None}
    assert result[1] == {
        "id": "anl_00001",
        "call": {"agent_id": "agent-anl_00001"},
        "results": {"coaching": {"customer_effort_score": 2}},
    }


def test_large_results_suggest_fields_or_output_uri(
    account: FakeAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    import callcov_provider.operators.list_analyses as module
    from tests.unit.conftest import capture_log_events

    fill(account, 20)
    monkeypatch.setattr(module, "LARGE_XCOM_BYTES", 1000)
    with capture_log_events() as logs:
        op(limit=20).execute({})
        small = op(limit=1, fields=["id"])
        small.execute({})
    warnings = [e["event"] for e in logs if e["log_level"] == "warning" and "XCom" in e["event"]]
    assert len(warnings) == 1
    assert "fields=" in warnings[0]
    assert "output_uri=" in warnings[0]


def test_output_uri_writes_json_lines_and_returns_the_uri(account: FakeAccount, tmp_path: Path) -> None:
    ids = fill(account, 1200)
    target = tmp_path / "reports" / "day.jsonl"
    uri = f"file://{target}"
    assert op(fetch_all=True, fields=["id", "status"], output_uri=uri).execute({}) == uri
    lines = target.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(reversed(ids))
    assert json.loads(lines[0]) == {"id": ids[-1], "status": "completed"}


def test_outlets_are_accepted() -> None:
    from airflow.providers.common.compat.sdk import Asset

    asset = Asset("callcov://reports/daily")
    assert op(outlets=[asset]).outlets == [asset]


# -- one flag parser, one default connection id, redacted URLs, lenient pages ----------------------------


@pytest.mark.parametrize(("text", "expected"), [("on", True), ("YES", True), ("off", False), ("0", False)])
def test_fetch_all_reads_every_flag_word(account: FakeAccount, text: str, expected: bool) -> None:
    fill(account, 150)
    assert len(op(fetch_all=text).execute({})) == (150 if expected else 100)


def test_fetch_all_refuses_other_text_naming_it(account: FakeAccount) -> None:
    with pytest.raises(InvalidRequestError) as info:
        op(fetch_all="maybe").execute({})
    assert info.value.field == "fetch_all"
    assert account.lists == []


def test_default_connection_id_is_the_hooks() -> None:
    from callcov_provider.hooks.callcov import CallCovHook

    assert op().callcov_conn_id == CallCovHook.default_conn_name


def test_xcom_never_carries_a_signed_audio_url(account: FakeAccount) -> None:
    fill(account, 3)
    token = "X-Amz-Signature=LISTSIG0123456789"
    for row in account.rows.values():
        row["audio"] = {"url": f"https://bucket.s3.test/{row['id']}.wav?{token}"}
        row["metadata"] = {"error_message": f"see https://bucket.s3.test/x.wav?{token}"}
    records = op(fetch_all=True).execute({})
    assert len(records) == 3
    text = json.dumps(records)
    assert "LISTSIG0123456789" not in text
    assert records[0]["audio"]["url"].endswith(".wav?<redacted>")


def test_an_unreadable_analysis_does_not_fail_the_listing(account: FakeAccount) -> None:
    fill(account, 5)
    account.rows["anl_00002"]["call"] = "agent and contact unknown"
    account.rows["anl_00003"]["status"] = "queued"
    records = op().execute({})
    assert [r["id"] for r in records] == ["anl_00004", "anl_00003", "anl_00001", "anl_00000"]
    assert records[1]["status"] == "queued"
