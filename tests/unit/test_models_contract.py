"""
The models read what the documentation leaves open leniently, skip only what cannot be read at all, and
never carry a URL's query string into XCom, logs or reprs.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
from typing import Any

import pytest
import requests_mock as rm

from callcov_provider.hooks.callcov import CallCovHook
from callcov_provider.models import Analysis, AnalysisList, AnalysisStatus, AnalysisSummary, ApiUrl
from callcov_provider.redaction import redact_url
from tests.unit.conftest import API, COMPLETED_002, SIGNED_QUERY, SIGNED_URL

SIGNATURE = "SIGTOKEN8d1e77"


def variant(index: int) -> dict[str, Any]:
    """A completed analysis in one of the shapes the pages do not rule out."""
    body = copy.deepcopy(COMPLETED_002)
    body["id"] = f"anl_{index:04d}"
    kind = index % 7
    if kind == 0:
        body["transcript"]["segments"] = [{"speaker": 0, "start": 0.0, "end": 1.0, "text": "Hi"}]
    elif kind == 1:
        body["results"]["coaching"]["customer_effort_score"] = 2.5
    elif kind == 2:
        body["results"]["compliance"]["purpose_declaration"]["details"] = {"reason": "not stated", "at": 12}
    elif kind == 3:
        body["results"]["quality"]["empathetic_language"]["examples"] = {"count": 2, "quotes": ["I see"]}
    elif kind == 4:
        body["created"] = 1705334400.25
    elif kind == 5:
        body["status"] = "queued"
    else:
        body["results"]["quality"]["greeting"] = {"present": "sometimes", "words": 3}
    return body


def test_a_full_page_of_undocumented_shapes_parses_every_item() -> None:
    body = {"object": "list", "data": [variant(i) for i in range(1000)], "has_more": False, "total": 1000}
    listing = AnalysisList.model_validate_json(json.dumps(body))
    assert len(listing.data) == 1000
    assert listing.item_count == 1000
    assert listing.skipped_ids == ()
    by_id = {a.id: a for a in listing.data}
    speaker = by_id["anl_0000"].transcript.segments[0]  # type: ignore[union-attr]
    assert speaker.speaker == 0
    assert by_id["anl_0001"].results.coaching.customer_effort_score == 2.5  # type: ignore[union-attr]
    assert by_id["anl_0007"].results.coaching.customer_effort_score == 1  # type: ignore[union-attr]
    assert isinstance(by_id["anl_0007"].results.coaching.customer_effort_score, int)  # type: ignore[union-attr]
    purpose = by_id["anl_0002"].results.compliance.purpose_declaration  # type: ignore[union-attr]
    assert purpose.details == {"reason": "not stated", "at": 12}  # type: ignore[union-attr]
    assert by_id["anl_0004"].created_timestamp == 1705334400.25
    queued = by_id["anl_0005"]
    assert queued.status.value == "queued"
    assert not queued.is_finished
    # A section that does not fit its model is kept as the API sent it, not refused.
    assert by_id["anl_0006"].results.quality.greeting == {"present": "sometimes", "words": 3}  # type: ignore[union-attr]
    # And goes to XCom unchanged.
    assert by_id["anl_0005"].to_xcom()["status"] == "queued"
    assert by_id["anl_0006"].to_xcom()["results"]["quality"]["greeting"]["present"] == "sometimes"


def test_documented_fields_keep_their_types() -> None:
    body = {"data": [{"id": "a", "status": "completed", "created": "soon"}]}
    assert AnalysisList.model_validate(body).data == []
    with pytest.raises(ValueError, match="single word"):
        Analysis.model_validate({"id": "a", "status": "not a status at all"})
    good = Analysis.model_validate({"id": "a", "status": "completed", "created": 1705334400})
    assert isinstance(good.created, int)


def test_an_undocumented_status_is_not_finished_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="callcov_provider.models")
    first = Analysis.model_validate({"id": "a1", "status": "transcoding_test_only"})
    second = Analysis.model_validate({"id": "a2", "status": "transcoding_test_only"})
    other = Analysis.model_validate({"id": "a3", "status": "archived_test_only"})
    assert first.status is second.status
    assert not first.is_finished
    assert not other.is_finished
    assert not first.status.is_documented
    assert AnalysisStatus.COMPLETED.is_documented
    warnings = [r.getMessage() for r in caplog.records if "undocumented analysis status" in r.getMessage()]
    assert len(warnings) == 2
    assert "'transcoding_test_only'" in warnings[0]
    assert "'archived_test_only'" in warnings[1]
    # It survives pickling (Airflow ships values between processes), and a request filter stays strict.
    assert pickle.loads(pickle.dumps(first.status)) is first.status
    assert pickle.loads(pickle.dumps(AnalysisStatus.FAILED)) is AnalysisStatus.FAILED
    with pytest.raises(ValueError):
        AnalysisStatus("transcoding_test_only")
    assert [s.value for s in AnalysisStatus] == ["processing", "completed", "failed"]


def test_an_unreadable_item_is_skipped_with_a_warning_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="callcov_provider.models")
    data = [variant(i) for i in range(5)]
    data[1]["created"] = "yesterday"
    data[3] = {"status": "completed", "audio": {"url": SIGNED_URL}}
    listing = AnalysisList.model_validate({"object": "list", "data": data, "has_more": True, "total": 9})
    assert [a.id for a in listing.data] == ["anl_0000", "anl_0002", "anl_0004"]
    assert listing.item_count == 5
    assert listing.skipped_ids == ("'anl_0001'", "at position 3 (no readable id)")
    assert listing.has_more is True
    messages = [r.getMessage() for r in caplog.records if "Skipped analysis" in r.getMessage()]
    assert len(messages) == 2
    assert "'anl_0001'" in messages[0]
    assert "created" in messages[0]
    assert "position 3" in messages[1]
    assert all(SIGNATURE not in m and "yesterday" not in m for m in messages)


def test_the_hook_returns_the_readable_items_of_a_page(connection: Any) -> None:
    connection()
    data = [variant(0), {"id": "broken", "status": "completed", "created": [1]}, variant(2)]
    with rm.Mocker() as mock:
        mock.get(f"{API}/analysis/", json={"object": "list", "data": data, "has_more": False, "total": 3})
        listing = CallCovHook().list_analyses()
    assert [a.id for a in listing.data] == ["anl_0000", "anl_0002"]
    assert listing.skipped_ids == ("'broken'",)


# -- URLs ------------------------------------------------------------------------------------------------


def signed_analysis() -> Analysis:
    body = copy.deepcopy(COMPLETED_002)
    body["status"] = "failed"
    body["audio"]["url"] = SIGNED_URL
    body["metadata"]["webhook_url"] = f"https://user:pw@hooks.example.test/cb?token={SIGNATURE}#frag"
    body["metadata"]["error_message"] = f"could not read {SIGNED_URL}"
    body["download"] = {"mirror": f"https://mirror.example.test/x.wav?{SIGNED_QUERY}"}
    return Analysis.model_validate(body)


def test_redact_url_removes_query_fragment_and_user_info() -> None:
    assert redact_url(SIGNED_URL) == "https://storage.example.test/recordings/call-001.wav?<redacted>"
    assert redact_url("https://u:p@h.test/a#frag") == "https://h.test/a"


def test_api_urls_never_reach_xcom_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    model = signed_analysis()
    assert model.audio is not None
    assert isinstance(model.audio.url, ApiUrl)
    # The full URL stays available to code that downloads the recording.
    assert model.audio.url.get_secret_value() == SIGNED_URL
    outputs = {
        "xcom": json.dumps(model.to_xcom()),
        "summary": json.dumps(model.summary()),
        "repr": repr(model),
        "str": str(model),
        "url": f"{model.audio.url} {model.audio.url!r}",
        "listing": json.dumps([item.to_xcom() for item in AnalysisList(data=[model]).data]),
        "error": str(model.error_message),
    }
    logging.getLogger("test").warning("analysis %s / %r", model, model.audio)
    outputs["log"] = caplog.text
    for where, text in outputs.items():
        assert SIGNATURE not in text, where
        assert "pw@" not in text, where
    # A plain dump redacts the URL fields; to_xcom also every URL in free text and unknown fields.
    dumped = model.model_dump(mode="json")
    assert dumped["audio"]["url"] == "https://storage.example.test/recordings/call-001.wav?<redacted>"
    assert dumped["metadata"]["webhook_url"] == "https://hooks.example.test/cb?<redacted>"
    xcom = model.to_xcom()
    assert xcom["audio"]["url"] == "https://storage.example.test/recordings/call-001.wav?<redacted>"
    assert xcom["metadata"]["webhook_url"] == "https://hooks.example.test/cb?<redacted>"
    assert xcom["download"]["mirror"] == "https://mirror.example.test/x.wav?<redacted>"
    assert model.summary()["error_message"] == (
        "could not read https://storage.example.test/recordings/call-001.wav?<redacted>"
    )


def test_compact_summary_is_one_type() -> None:
    model = Analysis.model_validate(COMPLETED_002)
    assert AnalysisSummary.of(model).to_xcom() == model.summary()
    assert AnalysisSummary.unfinished("x").to_xcom() == {
        "id": "x",
        "status": "processing",
        "agent_id": None,
        "contact_id": None,
        "error_message": None,
    }
    assert AnalysisSummary.finished("y", failure="bad audio").status == "failed"
    assert AnalysisSummary.finished("z").status == "completed"


def test_one_filter_type() -> None:
    from callcov_provider.exceptions import InvalidRequestError
    from callcov_provider.filters import ListFilters
    from callcov_provider.hooks import validation

    filters = ListFilters.checked(
        status_filter=AnalysisStatus.FAILED, agent_id="a1", contact_id="", search=None
    )
    assert filters.params() == {"status_filter": "failed", "agent_id": "a1"}
    assert validation.list_params(status_filter="failed", agent_id="a1", limit=5) == {
        "status_filter": "failed",
        "agent_id": "a1",
        "limit": 5,
        "offset": 0,
    }
    with pytest.raises(InvalidRequestError) as info:
        ListFilters.checked(status_filter="queued")
    assert info.value.field == "status_filter"
    with pytest.raises(InvalidRequestError) as text_info:
        ListFilters.checked(search=5)
    assert text_info.value.field == "search"


def test_models_have_a_json_schema() -> None:
    # FastAPI (the emulator, a user's app) builds OpenAPI documents from these models.
    schema = AnalysisList.model_json_schema()
    url = schema["$defs"]["AudioInfo"]["properties"]["url"]
    assert {"type": "string"} in url["anyOf"]
